"""`bkm-bridge praksis|submit|status|config check`: registered by bridge.cli. (Filled in by the KUHR client work.)"""

import typer


def register(app: typer.Typer) -> None:
    del app
