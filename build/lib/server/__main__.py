"""`python -m server …`: the command line lives in server.runtime.cli."""

import sys

from server.runtime.cli import main

if __name__ == "__main__":
    sys.exit(main())
