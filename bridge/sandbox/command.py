"""`bkm-bridge sandbox`: registered by bridge.cli. (Filled in by the sandbox work.)"""

import typer


def register(app: typer.Typer) -> None:
    del app
