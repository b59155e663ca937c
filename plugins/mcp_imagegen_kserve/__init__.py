"""mcp-imagegen built-in plugin: the ``kserve`` backend (KServe V1/V2, Triton).

The entry point is :mod:`mcp_imagegen_kserve.plugin`; the backend class is
:class:`mcp_imagegen_kserve.backend.KServeBackend`.
"""
