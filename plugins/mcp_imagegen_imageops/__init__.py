"""mcp-imagegen built-in plugin ``imageops``: Pillow post-processing steps.

Step types: ``resize``, ``convert``, ``watermark``, ``metadata`` and
``strip_metadata`` (see docs/postprocessing.md). Every step does its Pillow work
in a worker thread, decodes with the core's bomb-guarded decoder, and returns an
image whose ``mime_type``, ``width`` and ``height`` match its bytes.
"""
