"""The module an installed Windows service runs: `python.exe -m bridge.winservice --config FILE`.

A stable name for the command line registered with the Service Control Manager (installations
made by earlier versions keep working); the service itself is bridge.daemon.winservice.
"""

import sys

from bridge.daemon.winservice import main

if __name__ == "__main__":
    sys.exit(main())
