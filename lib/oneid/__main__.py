"""``python -m oneid``: the ``oneid`` console script (used by deploy/submit.sh)."""

import sys

from oneid.cli import main

if __name__ == "__main__":
    sys.exit(main())
