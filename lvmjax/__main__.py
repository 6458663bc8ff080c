"""`python -m lvmjax`: the command line."""

import sys

from lvmjax.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
