"""mcp-imagegen built-in plugin: imageops."""
