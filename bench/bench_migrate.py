"""How fast `bkm-bridge migrate` moves an archive, and what memory it needs as the archive grows.

Builds single-regning claim files with `bench_convert.build_corpus` (the legacy writer), then
runs the command as an operator would, `python -m bridge migrate …` in a subprocess, and
prints (asserting nothing):

- end to end against the embedded sandbox (no --follow): files/s from the first file seen to
  the last `mottatt` (journal timestamps), and the whole command's wall time including
  start-up (sandbox, conversion processes) and the report;
- dry run (`--dry-run --out`): files/s, from the difference between a full and a tenth-size
  run (start-up cancels out), and the whole command's wall time;
- peak RSS of the migrate process alone, of it with its sending processes (a real run over
  a large archive sends from one process per core, bridge.migrate.senders), of its embedded
  sandbox's process, and of all of them with the conversion workers (psutil, sampled every
  50 ms), at two archive sizes, and the growth between them;
- the machine's load average before and after each run (the machine may be shared).

Usage:

    python bench/bench_migrate.py [--files 20000] [--big 100000] [--small 10000] [--keep DIR]
        [--concurrency 8] [--workers N] [--senders N] [--skip-e2e] [--skip-big]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from bench_convert import build_corpus  # noqa: E402

PRAKSIS_ID = "1004326178"  # the sandbox's praksis for the writer's sender orgnr


@dataclass
class Run:
    code: int
    wall: float
    peak_main_mb: float
    peak_senders_mb: float  # the migrate process with its sending processes, at one moment
    peak_total_mb: float
    peak_sandbox_mb: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    summary: dict
    stderr: str


def migrate(args: list[str], env: dict[str, str]) -> Run:
    """`python -m bridge migrate ARGS --json`, sampling the RSS of it and its workers."""
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "migrate", *args, "--json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peaks = [0, 0, 0, 0]
    done = threading.Event()
    kinds: dict[int, str] = {}  # child pid → "sandbox" (it listens) or "sender" (it calls)
    checked = [0.0]

    def sample() -> None:
        main = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                rss = main.memory_info().rss
                children = main.children(recursive=True)
            except psutil.Error:
                break
            sizes = {c.pid: _rss(c) for c in children}
            if time.monotonic() >= checked[0] + 1.0:
                checked[0] = time.monotonic()  # reading sockets costs: once a second
                for child in children:
                    if child.pid not in kinds and (kind := _kind(child)) is not None:
                        kinds[child.pid] = kind
            sandbox = sum(size for pid, size in sizes.items() if kinds.get(pid) == "sandbox")
            senders = sum(size for pid, size in sizes.items() if kinds.get(pid) == "sender")
            peaks[0] = max(peaks[0], rss)
            peaks[1] = max(peaks[1], rss + sum(sizes.values()))
            peaks[2] = max(peaks[2], sandbox)
            peaks[3] = max(peaks[3], rss + senders)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    try:
        summary = json.loads(out)
    except ValueError:
        summary = {}
    return Run(
        proc.returncode,
        wall,
        peaks[0] / 2**20,
        peaks[3] / 2**20,
        peaks[1] / 2**20,
        peaks[2] / 2**20,
        load_before,
        os.getloadavg(),
        summary,
        err,
    )


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def _kind(process: psutil.Process) -> str | None:
    """ "sandbox" for the process that listens, "sender" for one talking TCP to it (the
    sending processes; conversion workers have no sockets), None if it is neither yet."""
    try:
        connections = process.net_connections(kind="tcp")
    except psutil.Error:
        return None
    if any(c.status == psutil.CONN_LISTEN for c in connections):
        return "sandbox"
    if any(c.status == psutil.CONN_ESTABLISHED for c in connections):
        return "sender"
    return None


def mottatt_rate(journal: Path) -> tuple[float, int]:
    """(files/s from the first `seen` to the last `submitted` event, files submitted)."""
    with sqlite3.connect(journal) as db:
        first = db.execute("SELECT MIN(at) FROM events WHERE state = 'seen'").fetchone()[0]
        last, n = db.execute(
            "SELECT MAX(at), COUNT(DISTINCT version_id) FROM events WHERE state = 'submitted'"
        ).fetchone()
    if not n or first is None or last is None or last <= first:
        return 0.0, n or 0
    return n / (last - first), n


def load_text(run: Run) -> str:
    return f"load {run.load_before[0]:.1f} → {run.load_after[0]:.1f}"


def row(label: str, value: str, target: str = "") -> None:
    print(f"{label:<44} {value:>24}   {target}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20_000, help="end-to-end archive size")
    parser.add_argument("--small", type=int, default=10_000, help="smaller size for memory")
    parser.add_argument("--big", type=int, default=100_000, help="larger size (dry run)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--senders", type=int, default=None, help="default: the command's")
    parser.add_argument("--keep", type=Path, help="build the corpora here and keep them")
    parser.add_argument("--skip-e2e", action="store_true", help="dry runs only")
    parser.add_argument("--skip-big", action="store_true", help="no --big dry run")
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-migrate-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "BKM_BRIDGE_WATCH__STATE_DIR": str(work / "state"),
    }
    env.pop("BKM_BRIDGE_CONFIG", None)
    env.pop("BKM_BRIDGE_KUHR__SANDBOX_STATE_DIR", None)
    extra = ["--praksis-id", PRAKSIS_ID]
    if args.workers:
        extra += ["--workers", str(args.workers)]
    sending = ["--senders", str(args.senders)] if args.senders else []
    sizes = sorted({args.small, args.files, *([] if args.skip_big else [args.big])})
    corpora = {}
    for size in sizes:
        folder = work / f"arkiv-{size}"
        if not folder.exists():
            started = time.perf_counter()
            build_corpus(folder, size)
            print(f"built {size:,} files in {time.perf_counter() - started:.0f} s: {folder}")
        corpora[size] = folder
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print()

    try:
        if not args.skip_e2e:
            e2e = {}
            for size in sorted({args.small, args.files}):
                shutil.rmtree(work / "state", ignore_errors=True)
                shutil.rmtree(work / "kvitteringer", ignore_errors=True)
                # The deletions (and the previous run's writes) reach the disk now, not during
                # the measured run: on this machine's ext4, mounted with `discard`, a smaller
                # run's clean-up otherwise slowed the next run's journal syncs.
                os.sync()
                receipts = ["--receipts", str(work / "kvitteringer")]
                concurrency = ["--concurrency", str(args.concurrency)]
                e2e[size] = migrate(
                    [str(corpora[size]), *receipts, *concurrency, *sending, *extra], env
                )
                run = e2e[size]
                rate, sent = mottatt_rate(work / "state" / "migrate-sandbox.db")
                outcomes = run.summary.get("outcomes", {})
                print(f"end to end, {size:,} files, embedded sandbox ({load_text(run)})")
                if run.code not in (0, 1) or sent != size:
                    print(f"  exit {run.code}, outcomes {outcomes}\n{run.stderr[-2000:]}")
                row("  files/s to mottatt (first seen → last)", f"{rate:,.0f}", "target ≥ 300/s")
                row("  whole command", f"{run.wall:,.1f} s ({size / run.wall:,.0f}/s)")
                row("  peak RSS, migrate process", f"{run.peak_main_mb:,.0f} MB")
                row(
                    "  peak RSS, with its sending processes",
                    f"{run.peak_senders_mb:,.0f} MB",
                    "≤ 250 MB",
                )
                row("  peak RSS, its embedded sandbox process", f"{run.peak_sandbox_mb:,.0f} MB")
                row("  peak RSS, all together (sandbox too)", f"{run.peak_total_mb:,.0f} MB")
            if len(e2e) == 2:
                small, large = (e2e[s] for s in sorted(e2e))
                growth = large.peak_senders_mb / small.peak_senders_mb - 1
                row(
                    f"  RSS growth {min(e2e):,} → {max(e2e):,} files",
                    f"{growth:+.0%}",
                    "(migrate and its sending processes)",
                )
            print()

        dry = {}
        for size in sizes:
            out = work / "json"
            shutil.rmtree(out, ignore_errors=True)
            dry[size] = migrate([str(corpora[size]), "--dry-run", "--out", str(out), *extra], env)
        tenth = max(1, args.files // 10)
        shutil.rmtree(work / "json", ignore_errors=True)
        if tenth not in corpora:
            build_corpus(work / f"arkiv-{tenth}", tenth)
            corpora[tenth] = work / f"arkiv-{tenth}"
        out = work / "json"
        short = migrate([str(corpora[tenth]), "--dry-run", "--out", str(out), *extra], env)
        full = dry[args.files]
        extra_seconds = full.wall - short.wall
        print(f"dry run --out, {args.files:,} files ({load_text(full)})")
        if extra_seconds > 0.05:
            marginal = f"{(args.files - tenth) / extra_seconds:,.0f}"
        else:  # the two runs took the same time: start-up and noise hide the per-file cost
            marginal = f"not measurable ({extra_seconds:+.2f} s); use a larger --files"
        row("  files/s (full run − tenth-size run)", marginal, "target ≥ 2,000/s")
        row("  whole command", f"{full.wall:,.1f} s ({args.files / full.wall:,.0f}/s)")
        for size in sizes:
            run = dry[size]
            row(
                f"  peak RSS at {size:,} files",
                f"{run.peak_main_mb:,.0f} MB ({run.peak_total_mb:,.0f} MB)",
                "migrate process (with workers)",
            )
        if args.small in dry and not args.skip_big and args.big in dry:
            growth = dry[args.big].peak_main_mb / dry[args.small].peak_main_mb - 1
            row(f"  RSS growth {args.small:,} → {args.big:,} files", f"{growth:+.0%}", "≤ +20%")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
