"""spark-submit entry point, same arguments as `oneid audiences`."""

import sys

from oneid.cli import main

if __name__ == "__main__":
    sys.exit(main(["audiences", *sys.argv[1:]]))
