"""The artefacts under test: the sdist and the wheel built from it, as pip builds them.

CI builds them once, installs that wheel and runs this suite against it; it names them in
BKM_BRIDGE_SDIST and BKM_BRIDGE_WHEEL so these tests look at exactly what it installed.
Elsewhere (a developer's checkout) they are built here from the source tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from support.paths import ROOT  # the checkout, or CI's unpacked sdist


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path

    def sdist_names(self) -> set[str]:
        """Paths of the files in the sdist, without its top folder (`bkm_bridge-X/`)."""
        with tarfile.open(self.sdist) as archive:
            return {m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()}

    def wheel_names(self) -> set[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return set(archive.namelist())


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def build_dist(out: Path) -> Dist:
    """An sdist of ROOT, and the wheel built from that sdist, into `out`."""
    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(ROOT)])
    sdist = next(out.glob("bkm_bridge-*.tar.gz"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(sdist)])
    return Dist(sdist, next(out.glob("bkm_bridge-*.whl")))


def dist_under_test(out: Path) -> Dist:
    sdist, wheel = os.environ.get("BKM_BRIDGE_SDIST"), os.environ.get("BKM_BRIDGE_WHEEL")
    if sdist and wheel:
        return Dist(Path(sdist), Path(wheel))
    return build_dist(out)
