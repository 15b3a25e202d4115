"""spark-submit entry point, same arguments as `oneid standardize`."""

import sys

from oneid.cli import main

if __name__ == "__main__":
    sys.exit(main(["standardize", *sys.argv[1:]]))
