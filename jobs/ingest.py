"""spark-submit entry point, same arguments as `oneid ingest`."""

import sys

from oneid.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
