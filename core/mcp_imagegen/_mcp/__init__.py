"""The MCP surface (internal): tools and resources over the image service.

Thin by design: arguments become service calls, results become MCP content.
Every anticipated failure becomes a tool error (``isError``) or a JSON-RPC
error with the error's own message; anything unexpected is logged with its
traceback and reported to the client without internals.

Modules: :mod:`.server` (the server and its lifespan), one module per tool
group (:mod:`.generation`, :mod:`.gallery`, :mod:`.backends`),
:mod:`.resources`, :mod:`.content` (previews, links, structured results, the
inline cap), :mod:`.fields` (argument schemas from the configuration) and
:mod:`.tools` (what the tool modules share).
"""

from mcp_imagegen._mcp.server import ImageGenServer, build_mcp_server

__all__ = ["ImageGenServer", "build_mcp_server"]
