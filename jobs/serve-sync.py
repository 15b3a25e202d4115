"""spark-submit entry point, same arguments as `oneid serve-sync`."""

import sys

from oneid.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve-sync", *sys.argv[1:]]))
