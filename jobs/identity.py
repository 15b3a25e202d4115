"""spark-submit entry point, same arguments as `oneid identity`."""

import sys

from oneid.cli import main

if __name__ == "__main__":
    sys.exit(main(["identity", *sys.argv[1:]]))
