"""spark-submit entry point, same arguments as `oneid generate`."""

import sys

from oneid.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
