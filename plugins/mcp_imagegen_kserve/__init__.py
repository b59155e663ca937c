"""mcp-imagegen built-in plugin: kserve."""
