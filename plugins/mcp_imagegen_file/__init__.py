"""mcp-imagegen built-in plugin: file."""
