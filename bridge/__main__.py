"""`python -m bridge` runs the same CLI as the `bkm-bridge` console script."""

from bridge.cli.app import main

if __name__ == "__main__":
    main()
