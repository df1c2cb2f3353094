"""The local server: a corpus owner's service over HTTP (Unix socket, or loopback TCP with a token)."""
