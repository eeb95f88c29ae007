"""Federation: talking to upstream MCP servers with the gateway's own credentials."""
