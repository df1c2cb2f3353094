"""docmem as an MCP server (the official ``mcp`` SDK): stdio (``docmem mcp``) and streamable
HTTP (``docmem serve --mcp``). The tools are thin: each is one call of the service."""
