"""spark-submit entry point, same arguments as `oneid publish`."""

import sys

from oneid.cli import main

if __name__ == "__main__":
    sys.exit(main(["publish", *sys.argv[1:]]))
