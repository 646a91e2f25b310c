"""How fast `bkm-bridge convert` is, against the floor of what any converter must do.

Builds (with the legacy writer, into a temp folder) N single-regning files and one file with
M regninger, then measures in one run, pinned to one core:

- `convert DIR --out OUT` in-process through the CLI's own code path, and as a subprocess
  `python -m bridge convert …` (the difference is interpreter start-up and imports);
- the floor over the same files: lxml parse + the same XSD validation + `json.dumps` of a small
  dict + writing the file, nothing else; and the ratio bridge/floor;
- the big file: wall time and peak RSS of converting it in a subprocess.

Prints figures next to their targets; asserts nothing. Usage:

    python bench/bench_convert.py [--files 2000] [--regninger 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from lxml import etree

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bridge.core.legacy.namespaces import BKM_NS  # noqa: E402
from bridge.core.legacy.writer import Sender, write_bkm_xml  # noqa: E402
from bridge.core.model import Behandlerkrav, Regning  # noqa: E402
from bridge.core.timezone import OSLO  # noqa: E402

PRAKSIS_ID = "1"
FIRST_NAMES = ["Åse", "Øystein", "Kjærsti", "Per", "Bjørn", "Ingrid", "Håkon", "Siv"]
LAST_NAMES = ["Ærlig", "Østbø", "Åsen", "Hansen", "Bråten", "Løvås", "Nilsen", "Sæther"]
# Amounts as in the bundled takst table (the seed's), so the pre-control finds nothing and the
# benchmark measures conversion, not warning output. 2cd always comes with 2ad, as it must.
TAKSTER = [("2ad", Decimal("15.00")), ("2cd", Decimal("255.00")), ("L1", Decimal("26.00"))]


# --------------------------------------------------------------------------- corpus


def _regning(n: int) -> Regning:
    """A realistic GP regning; `n` varies the guid, number, patient, time and takster."""
    takster = [
        {"belop": belop, "kode": kode, "antall": 1}
        for i, (kode, belop) in enumerate(TAKSTER[: 1 + n % 3])
    ]
    belop = sum((t["belop"] * t["antall"] for t in takster), Decimal("0.00"))
    return Regning.model_validate(
        {
            "guid": str(uuid.UUID(int=0x5EED << 64 | n, version=4)),
            "betaltEgenandel": bool(n % 2),
            "korrigeringBetaltEgenandel": False,
            "kreditering": False,
            "regningsnummer": str(100000 + n),
            "tidspunkt": datetime(2026, 1, 5, 8, 0, tzinfo=OSLO) + timedelta(minutes=7 * n),
            "merknad": "Kontroll etter behandling på legevakt" if n % 5 == 0 else None,
            "pasient": {
                "etternavn": LAST_NAMES[n % len(LAST_NAMES)],
                "fornavn": FIRST_NAMES[n % len(FIRST_NAMES)],
                "kjonn": "12"[n % 2],
                "identifikasjon": {"id": f"{47908700000 + n:011d}"[-11:], "type": "FNR"},
            },
            "diagnoser": [{"kodeverk": "2.16.578.1.12.4.1.1.7170", "kode": "L73"}],
            "utforendeBehandler": {"id": "9144900", "type": "HPR"},
            "takster": takster,
            "belop": belop,
        }
    )


def _krav(regninger: list[Regning]) -> Behandlerkrav:
    return Behandlerkrav(
        navnEPJ="BenchEPJ",
        regninger=regninger,
        antallRegninger=len(regninger),
        belop=sum((r.belop for r in regninger), Decimal("0.00")),
    )


def build_corpus(folder: Path, files: int) -> float:
    """Write `files` single-regning claims; returns the writer's files/s (without disk I/O)."""
    folder.mkdir(parents=True, exist_ok=True)
    kravs = [_krav([_regning(n)]) for n in range(files)]
    sender = Sender()
    gen_date = datetime(2026, 1, 7, 15, 30, tzinfo=OSLO)
    start = time.perf_counter()
    written = [
        write_bkm_xml(krav, sender=sender, msg_id=str(uuid.UUID(int=n)), gen_date=gen_date)
        for n, krav in enumerate(kravs)
    ]
    rate = files / (time.perf_counter() - start)
    for n, data in enumerate(written):
        (folder / f"krav-{n:05d}.xml").write_bytes(data)
    return rate


def build_big_file(path: Path, regninger: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(write_bkm_xml(_krav([_regning(n) for n in range(regninger)])))


# --------------------------------------------------------------------------- measurements


@dataclass
class ChildRun:
    returncode: int
    seconds: float
    peak_rss_mb: float
    stderr: str


def run_child(args: list[str]) -> ChildRun:
    """`python -m bridge ARGS` with its wall time and its own peak RSS (os.wait4 on POSIX)."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            peak = usage.ru_maxrss / 1024  # kilobytes on Linux
        else:  # pragma: no cover - Windows: sample the RSS while it runs
            peak = _sample_peak_rss(proc)
            seconds = time.perf_counter() - start
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    return ChildRun(proc.returncode, seconds, peak, text)


def _sample_peak_rss(proc: subprocess.Popen[bytes]) -> float:
    import psutil

    peak = 0
    watched = psutil.Process(proc.pid)
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, watched.memory_info().rss)
        time.sleep(0.005)
    return peak / 1024 / 1024


def _user_cpu() -> float:
    """This process's CPU time in user mode (the kernel's file creations are system time)."""
    return os.times().user


def bridge_in_process(sources: Path, out: Path) -> tuple[float, float]:
    """(wall, user CPU) seconds for `convert SOURCES --out OUT` through the CLI's own code path."""
    from bridge.cli.app import app

    args = ["convert", str(sources), "--out", str(out), "--praksis-id", PRAKSIS_ID]
    with contextlib.redirect_stdout(io.StringIO()):
        start, cpu = time.perf_counter(), _user_cpu()
        code = app(args, standalone_mode=False)
        seconds, cpu = time.perf_counter() - start, _user_cpu() - cpu
    if code not in (None, 0):
        print(f"  (convert exited {code})")
    return seconds, cpu


def _bkm_schema() -> etree.XMLSchema:
    """The libxml2 validator of the same XSD file the bridge's registry serves for BKM."""
    from bridge.core.legacy.schemas import default_registry

    source = default_registry().source(BKM_NS)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(source), parser))


def floor(sources: list[Path], out: Path) -> tuple[float, float]:
    """(wall, user CPU) seconds for the least any converter does: parse, validate, dump a small
    dict, write."""
    schema = _bkm_schema()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    tag = f"{{{BKM_NS}}}BehandlerKrav"
    out.mkdir(parents=True, exist_ok=True)
    start, cpu = time.perf_counter(), _user_cpu()
    for source in sources:
        root = etree.fromstring(source.read_bytes(), parser)
        krav = root if root.tag == tag else next(root.iter(tag))
        valid = schema.validate(krav)
        text = json.dumps({"praksisId": PRAKSIS_ID, "fil": source.name, "gyldig": valid})
        (out / f"{source.stem}.json").write_text(text, encoding="utf-8")
    return time.perf_counter() - start, _user_cpu() - cpu


# --------------------------------------------------------------------------- report


def _settle_disk() -> None:
    """Let the disk write out earlier phases' files before the next phase is timed."""
    if hasattr(os, "sync"):
        os.sync()


def _rounds(
    corpus: Path, sources: list[Path], out_root: Path, rounds: int
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Rounds alternate bridge and floor, each into a fresh folder under `out_root` after the
    disk has written out what came before (os.sync): one phase's write-back must not land in
    the other's time."""
    bridge_runs, floor_runs = [], []
    for r in range(rounds):
        _settle_disk()
        bridge_runs.append(bridge_in_process(corpus, out_root / f"out-bridge-{r}"))
        _settle_disk()
        floor_runs.append(floor(sources, out_root / f"out-floor-{r}"))
    return bridge_runs, floor_runs


def _creation_cost(folder: Path, files: int) -> float:
    """Kernel seconds per new small file in a fresh folder (this VM's disk varies 20-fold)."""
    folder.mkdir()
    _settle_disk()
    before = os.times().system
    for i in range(files):
        (folder / f"{i}.json").write_bytes(b"{}")
    return (os.times().system - before) / files


def _median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The run with the median wall time (its CPU time with it)."""
    return sorted(runs)[len(runs) // 2]


def _spread(runs: list[tuple[float, float]]) -> str:
    walls = sorted(wall for wall, _ in runs)
    return f"(median of {len(runs)}: {walls[0]:.2f}–{walls[-1]:.2f})"


def _row(
    label: str, figure: str, detail: str = "", target: str = "", met: bool | None = None
) -> None:
    verdict = "" if met is None else f"  target {target}: {'met' if met else 'NOT met'}"
    print(f"  {label:<32}{figure:>14}  {detail}{verdict}")


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        if keep.exists():
            shutil.rmtree(keep)
        keep.mkdir(parents=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000, help="single-regning files")
    parser.add_argument("--regninger", type=int, default=10000, help="regninger in the big file")
    parser.add_argument("--keep", type=Path, help="build and keep everything in this folder")
    parser.add_argument("--rounds", type=int, default=3, help="bridge/floor rounds (median)")
    args = parser.parse_args(argv)
    # The package's bytecode, as `pip install` leaves it: an editable install run with
    # PYTHONDONTWRITEBYTECODE=1 (as on CI) would otherwise compile it in every subprocess.
    compileall.compile_dir(REPO / "bridge", quiet=1)

    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})  # the subprocesses inherit it
        pinned = f"pinned to CPU {cpu}"
    else:  # pragma: no cover - not Linux
        pinned = "NOT pinned (no sched_setaffinity here)"

    with _workdir(args.keep) as work:
        print(
            f"bench_convert: {args.files} single-regning files and one file with "
            f"{args.regninger} regninger; {pinned}; work dir {work}"
        )
        corpus = work / "corpus"
        writer_rate = build_corpus(corpus, args.files)
        sources = sorted(corpus.glob("*.xml"))
        big = work / "big" / "stor-krav.xml"
        start = time.perf_counter()
        build_big_file(big, args.regninger)
        big_build = time.perf_counter() - start
        corpus_mb = sum(p.stat().st_size for p in sources) / 1e6
        _row("writer, bytes only", f"{writer_rate:,.0f} files/s", f"{corpus_mb:.1f} MB", "≥ 5,000",
             writer_rate >= 5000)  # fmt: skip
        big_mb = big.stat().st_size / 1e6
        _row("big file, models + writer", f"{big_build:.2f} s", f"{big_mb:.1f} MB")

        # Warm up imports, schema compilation and the mapping table on a copy of one file.
        warm = work / "warm"
        warm.mkdir()
        shutil.copy(sources[0], warm / sources[0].name)
        bridge_in_process(warm, work / "out-warm")
        floor([warm / sources[0].name], work / "out-warm-floor")

        n = len(sources)
        bridge_runs, floor_runs = _rounds(corpus, sources, work, args.rounds)
        bridge_s, bridge_cpu = _median(bridge_runs)
        floor_s, floor_cpu = _median(floor_runs)
        _settle_disk()
        child = run_child(
            ["convert", str(corpus), "--out", str(work / "out-sub"), "--praksis-id", PRAKSIS_ID]
        )
        written = len(list((work / "out-bridge-0").glob("*.json")))
        bridge_rate = n / bridge_s
        _row("convert --out, in-process", f"{bridge_rate:,.0f} files/s",
             f"{bridge_s:.2f} s {_spread(bridge_runs)}, {written}/{n} written",
             "≥ 2,000 on one core",
             bridge_rate >= 2000)  # fmt: skip
        _row("convert --out, subprocess", f"{n / child.seconds:,.0f} files/s",
             f"{child.seconds:.2f} s with start-up, exit {child.returncode}, "
             f"peak RSS {child.peak_rss_mb:.0f} MB")  # fmt: skip
        _row("floor: parse+XSD+dump+write", f"{n / floor_s:,.0f} files/s",
             f"{floor_s:.2f} s {_spread(floor_runs)}")  # fmt: skip
        ratio = bridge_s / floor_s
        _row("ratio bridge/floor", f"{ratio:.2f}", "", "≤ 3", ratio <= 3)
        # The same in user-mode CPU: the work without the kernel's file creations (the bridge
        # creates each file atomically, a temp file and a rename; the floor creates it once).
        _row("user CPU: bridge", f"{n / bridge_cpu:,.0f} files/s", f"{bridge_cpu:.2f} s")
        _row("user CPU: floor", f"{n / floor_cpu:,.0f} files/s", f"{floor_cpu:.2f} s")
        _row("user CPU: ratio bridge/floor", f"{bridge_cpu / floor_cpu:.2f}")
        _row("new file on the work disk", f"{_creation_cost(work / 'probe', n) * 1e6:,.0f} µs",
             "kernel time per created file, this run")  # fmt: skip
        ram = Path("/dev/shm")
        if ram.is_dir() and os.access(ram, os.W_OK):
            # The same rounds with the output in RAM (tmpfs): what the bridge's own work costs
            # when creating a file is cheap, as on a disk that is not this VM's.
            with tempfile.TemporaryDirectory(dir=ram, prefix="bench-convert-") as in_ram:
                ram_bridge, ram_floor = _rounds(corpus, sources, Path(in_ram), args.rounds)
            ram_s, ram_floor_s = _median(ram_bridge)[0], _median(ram_floor)[0]
            _row("convert --out, output in RAM", f"{n / ram_s:,.0f} files/s",
                 f"{ram_s:.2f} s {_spread(ram_bridge)}", "≥ 2,000 on one core",
                 n / ram_s >= 2000)  # fmt: skip
            _row("floor, output in RAM", f"{n / ram_floor_s:,.0f} files/s",
                 f"{ram_floor_s:.2f} s {_spread(ram_floor)}")  # fmt: skip
            _row("ratio bridge/floor, RAM", f"{ram_s / ram_floor_s:.2f}", "", "≤ 3",
                 ram_s / ram_floor_s <= 3)  # fmt: skip

        _settle_disk()
        big_run = run_child(
            ["convert", str(big), "--out", str(work / "out-big"), "--praksis-id", PRAKSIS_ID]
        )
        _row(f"{args.regninger:,}-regning file", f"{big_run.seconds:.2f} s",
             f"peak RSS {big_run.peak_rss_mb:.0f} MB, exit {big_run.returncode}",
             "≤ 2 s and < 300 MB", big_run.seconds <= 2 and big_run.peak_rss_mb < 300)  # fmt: skip
        for run in (child, big_run):
            if run.returncode != 0:
                print("  problems reported:\n" + run.stderr[:2000])


if __name__ == "__main__":
    main()
