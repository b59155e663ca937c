"""``python -m mcp_imagegen``: the same command as ``mcp-imagegen``."""

import sys

from mcp_imagegen._cli import main

sys.exit(main())
