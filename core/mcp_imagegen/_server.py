"""Re-export of the MCP surface, now the :mod:`mcp_imagegen._mcp` package.

Kept only so existing ``from mcp_imagegen._server import ...`` lines work until
they are moved to ``mcp_imagegen._mcp``; then this module goes.
"""

from mcp_imagegen._mcp import ImageGenServer, build_mcp_server

__all__ = ["ImageGenServer", "build_mcp_server"]
