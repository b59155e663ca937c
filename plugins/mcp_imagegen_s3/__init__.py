"""mcp-imagegen built-in plugin: s3."""
