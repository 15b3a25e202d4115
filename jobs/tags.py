"""spark-submit entry point, same arguments as `oneid tags`."""

import sys

from oneid.cli import main

if __name__ == "__main__":
    sys.exit(main(["tags", *sys.argv[1:]]))
