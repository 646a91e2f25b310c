"""Production folders: where an EPJ takes every AppRec as Helfo's answer.

A sandbox or DEV run must never put an AppRec there: an EPJ would mark the regninger as
approved by Helfo although nothing was sent. A folder counts as production when

- it holds the marker file `.bkm-bridge-produksjon` (written by every prod `watch` into each
  folder it watches and its receipts folder; an admin may also create it by hand), in the
  receipt's own folder or in the watched folder above it, or
- it is one of the `production_folders` the caller names: the `[watch] folders` and
  `receipts_dir` of a settings file that says `environment = "prod"`, while the run itself
  was switched to sandbox or dev (`--env sandbox`, the dry run of service/README §1.4).

Such a run still writes the JSON receipt (which says SANDBOX/TESTMILJØ), but no AppRec.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("bridge.receipts")

PRODUCTION_MARKER = ".bkm-bridge-produksjon"
_MARKER_TEXT = (
    "Denne mappen brukes av bkm-bridge i produksjon (Helfo). En kjøring mot sandkassen eller\n"
    "Helfos testmiljø skriver ingen AppRec hit, så journalsystemet aldri tar et testsvar\n"
    "for Helfos svar. Ikke slett filen.\n"
    "This folder is used by bkm-bridge in production; sandbox and dev runs write no AppRec here.\n"
)


def production_reason(
    folder: Path, root: Path | None, production_folders: Iterable[Path] = ()
) -> str | None:
    """Why `folder` (where an AppRec would go; `root`: the watched folder above it) is a
    production folder, or None when it is not."""
    for place in dict.fromkeys(p for p in (folder, root) if p is not None):
        if (place / PRODUCTION_MARKER).is_file():
            return f"it holds {PRODUCTION_MARKER}"
    here = _absolute(folder)
    for configured in production_folders:
        base = _absolute(configured)
        if here == base or base in here.parents:
            return "the settings file names it as a production folder"
    return None


def mark_production_folders(folders: Iterable[Path]) -> None:
    """A prod run: put the marker into each folder (best effort; a failure is logged)."""
    for folder in dict.fromkeys(folders):
        marker = folder / PRODUCTION_MARKER
        try:
            if not marker.is_file():
                marker.write_text(_MARKER_TEXT, encoding="utf-8")
        except OSError as err:
            log.warning(
                "cannot write %s (%s); sandbox and dev runs will not recognise %s as a "
                "production folder unless the settings file names it",
                marker,
                err.strerror or type(err).__name__,
                folder,
            )


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))
