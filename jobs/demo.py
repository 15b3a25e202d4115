"""spark-submit entry point, same arguments as `oneid demo`."""

import sys

from oneid.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
