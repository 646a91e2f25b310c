"""Paired runs of `convert DIR --out` in two checkouts of bkm-bridge, alternating, so a busy
machine's drift hits both sides alike (before/after a change such as a restructure).

Each checkout runs with its own virtualenv (`CHECKOUT/.venv`), in a subprocess pinned to one
CPU, over the same corpus (built once with the legacy writer of the second checkout); each
round times one warm in-process `convert` and reports wall and user CPU seconds. Prints the
medians and the ratio after/before; asserts nothing. Usage:

    python bench/bench_paired.py BEFORE_CHECKOUT AFTER_CHECKOUT [--files 800] [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Runs inside each checkout's interpreter: the CLI's convert, warm (one untimed run first).
_CHILD = r"""
import contextlib, io, os, shutil, sys, time
try:
    from bridge.cli.app import app
except ImportError:  # checkouts before the layered package
    from bridge.cli import app
src, out = sys.argv[1], sys.argv[2]
def run():
    shutil.rmtree(out, ignore_errors=True)
    with contextlib.redirect_stdout(io.StringIO()):
        app(["convert", src, "--out", out, "--praksis-id", "1000005649"], standalone_mode=False)
run()
wall, cpu = time.perf_counter(), os.times().user
run()
print(time.perf_counter() - wall, os.times().user - cpu)
"""


def _python(checkout: Path) -> Path:
    python = checkout / ".venv" / "bin" / "python"
    if not python.exists():
        sys.exit(f"{python} not found: make the checkout's virtualenv first")
    return python


def _build_corpus(checkout: Path, folder: Path, files: int) -> None:
    """The corpus, written by bench_convert's own builder in `checkout`."""
    code = (
        "import sys; sys.path.insert(0, 'bench'); from pathlib import Path;"
        f"import bench_convert as b; b.build_corpus(Path({str(folder)!r}), {files})"
    )
    subprocess.run([_python(checkout), "-c", code], cwd=checkout, check=True)


def _one(checkout: Path, corpus: Path, out: Path) -> tuple[float, float]:
    done = subprocess.run(
        ["taskset", "-c", "1", _python(checkout), "-c", _CHILD, str(corpus), str(out)],
        cwd=out.parent,
        check=True,
        capture_output=True,
        text=True,
    )
    wall, cpu = done.stdout.split()
    return float(wall), float(cpu)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--files", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-paired-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus"
        corpus.mkdir()
        _build_corpus(args.after.resolve(), corpus, args.files)
        runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for side, checkout in (("before", args.before), ("after", args.after)):
                runs[side].append(_one(checkout.resolve(), corpus, work / f"out-{side}"))
    load = os.getloadavg()[0]
    print(f"bench_paired: {args.files} files, {args.rounds} alternating rounds, load {load:.1f}")
    medians = {}
    for side, values in runs.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        spread = f"{min(v[0] for v in values):.3f}–{max(v[0] for v in values):.3f}"
        medians[side] = (wall, cpu)
        print(f"  {side:<7} wall {wall:.3f} s (spread {spread})   user CPU {cpu:.3f} s")
    (bw, bc), (aw, ac) = medians["before"], medians["after"]
    print(f"  ratio after/before: wall {aw / bw:.2f}, user CPU {ac / bc:.2f}")


if __name__ == "__main__":
    main()
