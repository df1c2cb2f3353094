"""The paging agent: MemGPT's memory hierarchy and heartbeat loop over archival storage."""
