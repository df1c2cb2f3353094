"""docmem: MemGPT-style virtual context management over document collections."""

__version__ = "0.1.0"
