"""spark-submit entry point, same arguments as `oneid realtime`."""

import sys

from oneid.cli import main

if __name__ == "__main__":
    sys.exit(main(["realtime", *sys.argv[1:]]))
