"""Where the data shipped with bkm-bridge lives: the schemas (`xsd/`) and mapping tables
(`mappings/`).

Both folders sit at the top of the repository, and the wheel installs them as the packages
`bridge.xsd` and `bridge.mappings` (pyproject's `package-dir`). They are found through
`importlib.resources`, so the same code serves a wheel, an editable install and a zipped
install. lxml and xmlschema need real files (an XSD includes its neighbours by file name), so a
folder inside a zip is copied out once per process into a temporary folder.

A folder that cannot be found is an installation problem, never the clinic's file: every
command reports `InstallationError` plainly and exits 2.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import bridge
from bridge.errors import UsageError

# What each shipped folder must hold for the bridge to read a single claim.
_SHIPPED = {
    "xsd": ("the XML schemas", "*.xsd"),
    "mappings": ("the XML→JSON mapping tables", "bkm-*.csv"),
}


class InstallationError(UsageError):
    """bkm-bridge's own files are missing or unreadable: the installation is incomplete."""


def shipped_folder(name: str) -> Path:
    """The shipped folder `name` ("xsd" or "mappings") as a real directory.

    Raises InstallationError, naming where it looked, when the folder or its files are missing.
    """
    return _real_folder(name)


def check_installation() -> None:
    """Raise InstallationError unless every shipped folder is present and holds its files."""
    for name in _SHIPPED:
        shipped_folder(name)


@cache
def _real_folder(name: str) -> Path:
    what, pattern = _SHIPPED[name]
    package = f"bridge.{name}"
    try:
        folder = resources.files(package)
    except ModuleNotFoundError:
        raise InstallationError(_missing(what, package, _expected_location(name))) from None
    path = folder if isinstance(folder, Path) else _copy_out(folder, name)
    if not any(path.glob(pattern)):
        raise InstallationError(_missing(what, package, str(path)))
    return path


def _expected_location(name: str) -> str:
    return str(Path(bridge.__file__).resolve().parent / name)


def _missing(what: str, package: str, where: str) -> str:
    return (
        f"bkm-bridge is not installed completely: {what} ({package}) are missing; looked in "
        f"{where}. Reinstall bkm-bridge from its wheel or offline bundle (pip install --force-"
        "reinstall …); in a source checkout, install it with pip install -e ."
    )


def _copy_out(folder: Traversable, name: str) -> Path:
    """Copy a folder that lives inside a zip into a temporary directory, removed at exit."""
    target = Path(tempfile.mkdtemp(prefix=f"bkm-bridge-{name}-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    for entry in folder.iterdir():
        if entry.is_file():
            (target / entry.name).write_bytes(entry.read_bytes())
    return target


# --------------------------------------------------------------------------- state


def default_state_dir() -> Path:
    """The platform's per-user state folder (for a person at a console; a service sets
    `[watch] state_dir`)."""
    import platformdirs

    return Path(platformdirs.user_state_dir("bkm-bridge", appauthor=False))


def state_dir(configured: Path | None) -> Path:
    """`[watch] state_dir`, else the per-user state folder."""
    return configured or default_state_dir()


def watch_journal_file(state: Path, environment: str) -> Path:
    """The watcher's journal: one per KUHR environment (a sandbox run never marks a PROD
    claim as sent)."""
    return state / f"journal-{environment}.db"


def migrate_journal_file(state: Path, environment: str) -> Path:
    """A migration's journal, beside the watcher's: a watcher sharing the state folder could
    otherwise pick up a zip member it cannot read."""
    return state / f"migrate-{environment}.db"
