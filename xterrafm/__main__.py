"""``python -m xterrafm``: the same command line as the ``xterrafm`` console script."""

from __future__ import annotations

import sys

from xterrafm.cli import main

if __name__ == "__main__":
    sys.exit(main())
