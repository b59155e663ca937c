"""mcp-imagegen built-in plugin: placeholder."""
