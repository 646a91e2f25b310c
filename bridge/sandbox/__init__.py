"""The KUHR sandbox: a real HTTP stand-in for Helfo's KUHR Krav API on loopback.

`start_sandbox(...)` serves one in a background thread; `create_app(settings)` builds the
FastAPI app alone. Both are imported lazily so that `import bridge.sandbox` (done by the CLI)
does not load FastAPI or uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.sandbox.app import create_app
    from bridge.sandbox.server import RunningSandbox, SandboxStartError, start_sandbox
    from bridge.sandbox.settings import SandboxSettings

__all__ = ["RunningSandbox", "SandboxSettings", "SandboxStartError", "create_app", "start_sandbox"]

_WHERE = {
    "create_app": "bridge.sandbox.app",
    "start_sandbox": "bridge.sandbox.server",
    "RunningSandbox": "bridge.sandbox.server",
    "SandboxStartError": "bridge.sandbox.server",
    "SandboxSettings": "bridge.sandbox.settings",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
