"""The watcher under a burst: latency from "file complete" to the `mottatt` receipt, throughput,
and (with --reliability) the kill/restart harness of issue 5 at full size.

The daemon runs as it does in production, a subprocess `python -m bridge watch INBOX`, against a
standalone sandbox served from this process (so the sandbox outlives daemon kills and counts
every submission by regning guid).

Latency: 'file complete' is the moment this process closed the file it wrote, plus the quiet
period; the `mottatt` moment is the mtime of the JSON receipt the first time it is seen (the
inbox is scanned every 20 ms) with a behandlerkravmeldingId and a status beyond `venter`. The
sandbox clock runs in real time, so a receipt stays at `sendt` for at least 11 s after mottatt
and its mtime is the mottatt write, not a later status.

Reliability: a burst of files, then the daemon is SIGKILLed at random moments (seeded RNG,
printed) and restarted each time; a last start runs until every receipt is final and is then
stopped with SIGTERM. Optionally the sandbox injects 5xx, dropped connections, lost responses
and phases of latency beyond the client's read timeout. `run_reliability` is also what
`tests/test_watch_reliability.py` runs, at a smaller size.

Prints figures next to their targets; asserts nothing. Usage:

    python bench/bench_watch.py [--files 1000] [--quiet 0.5] [--concurrency 8]
    python bench/bench_watch.py --reliability [--files 1000] [--kills 5] [--seed N]
                                 [--kill-window S] [--faults off|on|both]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bridge.core.legacy.writer import Sender, write_bkm_xml  # noqa: E402
from bridge.core.model import Behandlerkrav, Regning  # noqa: E402
from bridge.core.timezone import OSLO  # noqa: E402

PRAKSIS_ID = "1004326178"  # the sandbox's default praksis for MsgHead sender orgnr 999999999
# A receipt's `kontrollresultat` once KUHR's control has judged every regning (its overall
# `status` then moves on to the payment words, e.g. sendt_til_utbetaling after the 16:00 run).
CONTROL_RESULTS = frozenset({"godkjent", "delvis_godkjent", "avvist"})
RECEIPT_SUFFIX = ".kvittering.json"
APPREC_SUFFIX = ".apprec.xml"
LOCK_FILE = ".bkm-bridge.lock"
SEED_CLOCK = datetime(2026, 1, 6, 15, 30, tzinfo=OSLO)

Say = Callable[[str], None]


# --------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Claim:
    name: str
    data: bytes
    guid: str
    patient: str
    msg_id: str  # MsgHead MsgInfo/MsgId (the AppRec's OriginalMsgId/Id)


def build_claims(count: int, *, tag: int = 0) -> list[Claim]:
    """`count` single-regning claims with distinct regning guids (`tag` keeps sets apart),
    dated 2026-01-05 from 08:00 one minute apart, for MsgHead sender orgnr 999999999."""
    sender = Sender()
    claims = []
    for n in range(count):
        guid = str(uuid.UUID(int=(0xB5C0 << 96) | (tag << 32) | n, version=4))
        patient = f"{47908000000 + tag * 10000 + n:011d}"
        regning = Regning.model_validate(
            {
                "guid": guid,
                "betaltEgenandel": True,
                "korrigeringBetaltEgenandel": False,
                "kreditering": False,
                "regningsnummer": str(500000 + n),
                "tidspunkt": datetime(2026, 1, 5, 8, 0, tzinfo=OSLO) + timedelta(minutes=n),
                "pasient": {
                    "etternavn": "Østbø",
                    "fornavn": "Åse",
                    "kjonn": "2",
                    "identifikasjon": {"id": patient, "type": "FNR"},
                },
                "diagnoser": [{"kodeverk": "2.16.578.1.12.4.1.1.7170", "kode": "L73"}],
                "utforendeBehandler": {"id": "9144900", "type": "HPR"},
                "takster": [{"belop": Decimal("155.00"), "kode": "2ad", "antall": 1}],
                "belop": Decimal("155.00"),
            }
        )
        krav = Behandlerkrav(
            navnEPJ="BenchEPJ", regninger=[regning], antallRegninger=1, belop=regning.belop
        )
        msg_id = str(uuid.UUID(int=(tag << 32) | n, version=4))
        data = write_bkm_xml(krav, sender=sender, msg_id=msg_id)
        claims.append(Claim(f"krav-{tag:02d}-{n:05d}.xml", data, guid, patient, msg_id))
    return claims


def write_burst(folder: Path, claims: list[Claim]) -> dict[str, float]:
    """Write every claim as an EPJ does (create, write, close); returns name → close time."""
    closed: dict[str, float] = {}
    for claim in claims:
        with open(folder / claim.name, "wb") as handle:
            handle.write(claim.data)
        closed[claim.name] = time.time()
    return closed


# --------------------------------------------------------------------------- receipts


def receipt_path(folder: Path, name: str) -> Path:
    return folder / f"{name}{RECEIPT_SUFFIX}"


def apprec_path(folder: Path, name: str) -> Path:
    return folder / f"{Path(name).stem}{APPREC_SUFFIX}"


def read_receipt(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_final(receipt: dict[str, Any] | None) -> bool:
    return (
        receipt is not None
        and receipt.get("tilstand") == "controlled"
        and receipt.get("kontrollresultat") in CONTROL_RESULTS
    )


def is_mottatt(receipt: dict[str, Any] | None) -> bool:
    return (
        receipt is not None
        and receipt.get("status") not in (None, "venter")
        and bool(receipt.get("behandlerkravmeldingId"))
    )


def receipt_overview(folder: Path, names: list[str]) -> Counter[str]:
    """How many files have which receipt status right now ('-' for no receipt yet)."""
    counts: Counter[str] = Counter()
    for name in names:
        receipt = read_receipt(receipt_path(folder, name))
        counts[receipt.get("status", "?") if receipt else "-"] += 1
    return counts


# --------------------------------------------------------------------------- daemon


@dataclass
class DaemonSetup:
    inbox: Path
    state_dir: Path
    sandbox_dir: Path
    log_file: Path
    quiet: float
    env_extra: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.upper().startswith("BKM_BRIDGE_")  # nothing from the caller's settings
        }
        return {
            **env,
            "PYTHONPATH": pythonpath,
            "BKM_BRIDGE_KUHR__SANDBOX_STATE_DIR": str(self.sandbox_dir),
            **self.env_extra,
        }

    def start(self) -> subprocess.Popen[bytes]:
        with open(self.log_file, "ab") as log:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bridge",
                    "watch",
                    str(self.inbox),
                    "--state-dir",
                    str(self.state_dir),
                    "--quiet-seconds",
                    str(self.quiet),
                ],
                stdout=log,
                stderr=log,
                env=self.env(),
                cwd=self.state_dir,  # no stray ./bkm-bridge.toml is picked up
            )

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
        """Until this process holds the inbox's folder lock (intake is running)."""
        lock = self.inbox / LOCK_FILE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {proc.returncode}; see {self.log_file}")
            try:
                if f"pid={proc.pid}\n" in lock.read_text(encoding="utf-8"):
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"the daemon did not start within {timeout} s; see {self.log_file}")

    def local_status(self) -> dict[str, Any]:
        """`bkm-bridge status --local --json`: what the journal says about every file."""
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "bridge",
                "status",
                "--local",
                "--json",
                "--limit",
                "1000000",
                "--state-dir",
                str(self.state_dir),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=self.env(),
            cwd=self.state_dir,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"status --local failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return json.loads(proc.stdout)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def stop_gracefully(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> tuple[int, float]:
    """SIGTERM; (exit code, seconds until it exited). Killed if it overstays `timeout`."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        code = -9
    return code, time.monotonic() - started


# --------------------------------------------------------------------------- faults


class FaultWeather(threading.Thread):
    """Keeps the sandbox's faults on: `error_rate` 5xx, `drop_rate` dropped connections and
    `lost_response_rate` lost answers all the time, and every `period` s a draw decides whether
    the next period is slow (latency beyond the client's read timeout, so every call in it
    times out). A constant latency would time out every call; phases let retries get through.

    The faults are set again only when the phase changes: every POST /faults reseeds the
    sandbox's fault RNG, and reseeding every period would give the first request of every
    period the same fate."""

    def __init__(
        self,
        admin_url: str,
        *,
        seed: int,
        slow_ms: float,
        error_rate: float = 0.2,
        drop_rate: float = 0.1,
        lost_response_rate: float = 0.05,
        slow_share: float = 0.25,
        period: float = 1.5,
    ) -> None:
        super().__init__(name="fault-weather", daemon=True)
        self.admin_url = admin_url
        self.rng = random.Random(seed)
        self.slow_ms = slow_ms
        self.base = {
            "error_rate": error_rate,
            "drop_rate": drop_rate,
            "lost_response_rate": lost_response_rate,
        }
        self.slow_share = slow_share
        self.period = period
        self.slow_periods = 0
        self.periods = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        current: bool | None = None
        with httpx.Client(timeout=10) as client:
            while not self._stop_event.is_set():
                # The second period is always slow, so every run has timeouts in it.
                slow = self.periods == 1 or self.rng.random() < self.slow_share
                self.periods += 1
                self.slow_periods += slow
                if slow != current:
                    faults = {**self.base, "latency_ms": self.slow_ms if slow else 0}
                    client.post(f"{self.admin_url}/faults", json=faults).raise_for_status()
                    current = slow
                self._stop_event.wait(self.period)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


# --------------------------------------------------------------------------- reliability


@dataclass
class KillRecord:
    run: int
    after_ready: float  # seconds between "daemon ready" and SIGKILL
    receipts: dict[str, int]  # receipt statuses at the moment of the kill
    unfinished: int  # files without a final receipt at that moment


@dataclass
class ReliabilityRun:
    """What a kill/restart run left behind, for the caller to judge."""

    seed: int
    inbox: Path
    claims: list[Claim]
    kills: list[KillRecord]
    stats: dict[str, Any]  # the sandbox's GET stats after the run
    receipts: dict[str, dict[str, Any] | None]  # file name → its JSON receipt
    apprecs: dict[str, bytes | None]  # file name → its AppRec
    journal: dict[str, Any]  # `status --local --json`
    final_exit_code: int  # of the last daemon, stopped with SIGTERM once all was final
    final_stop_seconds: float
    settle_seconds: float  # last start → every receipt final
    seconds: float
    leftover_temp_files: list[str]  # receipt temp files a killed daemon left in the inbox
    daemon_log: str
    fault_periods: tuple[int, int] = (0, 0)  # (slow, all) periods of the fault weather

    @property
    def files(self) -> int:
        return len(self.claims)


def run_reliability(
    workdir: Path,
    *,
    files: int,
    kills: int,
    seed: int,
    faults: bool = False,
    quiet: float = 0.2,
    kill_window: tuple[float, float] = (0.1, 2.5),
    settle_timeout: float = 600.0,
    concurrency: int | None = None,
    say: Say = print,
) -> ReliabilityRun:
    """Drop `files` claims in a burst, SIGKILL the daemon `kills` times at random moments
    (restarting it each time), then let a last daemon finish and stop it with SIGTERM."""
    from bridge.sandbox import SandboxSettings, start_sandbox

    rng = random.Random(seed)
    inbox, state_dir, sandbox_dir = workdir / "inbox", workdir / "state", workdir / "sandbox"
    for folder in (inbox, state_dir, sandbox_dir):
        folder.mkdir(parents=True, exist_ok=True)
    read_timeout = 0.8
    extra = {
        "BKM_BRIDGE_KUHR__BACKOFF_BASE": "0.1",
        "BKM_BRIDGE_KUHR__BACKOFF_MAX": "1.0",
    }
    if faults:
        extra["BKM_BRIDGE_KUHR__READ_TIMEOUT"] = str(read_timeout)
    if concurrency:
        extra["BKM_BRIDGE_WATCH__CONCURRENCY"] = str(concurrency)
    setup = DaemonSetup(inbox, state_dir, sandbox_dir, workdir / "daemon.log", quiet, extra)
    claims = build_claims(files, tag=seed % 100)
    names = [c.name for c in claims]
    # Without faults the sandbox clock is the real time, so reconciling a killed submission
    # finds it in KUHR's overview (the plan); with faults it is the seed's clock, months behind
    # this machine's, so the overview search by date misses and KUHR's DUPLIKAT_KRAV answer to
    # the resend is what finds it (the safety net).
    clock = SEED_CLOCK if faults else datetime.now(OSLO)
    started = time.monotonic()
    weather: FaultWeather | None = None
    with start_sandbox(
        state_dir=sandbox_dir, clock=clock, speed=60.0, settings=SandboxSettings(seed=seed)
    ) as sandbox:
        admin = sandbox.info["admin_url"]
        if faults:
            weather = FaultWeather(admin, seed=seed, slow_ms=read_timeout * 2500)
            weather.start()
        records: list[KillRecord] = []
        proc: subprocess.Popen[bytes] | None = None
        try:
            for run in range(kills):
                proc = setup.start()
                setup.wait_ready(proc)
                if run == 0:
                    write_burst(inbox, claims)
                delay = rng.uniform(*kill_window)
                time.sleep(delay)
                kill(proc)
                counts = dict(receipt_overview(inbox, names))
                unfinished = sum(not is_final(read_receipt(receipt_path(inbox, n))) for n in names)
                records.append(KillRecord(run + 1, delay, counts, unfinished))
                say(f"  kill {run + 1}/{kills} {delay:.2f} s after start: receipts {counts}")
            proc = setup.start()
            last_start = time.monotonic()
            setup.wait_ready(proc)
            if kills == 0:
                write_burst(inbox, claims)
            deadline = last_start + settle_timeout
            pending = list(names)
            while pending and time.monotonic() < deadline and proc.poll() is None:
                pending = [n for n in pending if not is_final(read_receipt(receipt_path(inbox, n)))]
                if pending:
                    time.sleep(0.2)
            settle = time.monotonic() - last_start
            code, stop_seconds = stop_gracefully(proc)
            say(
                f"  last run: {files - len(pending)}/{files} final after {settle:.1f} s, "
                f"SIGTERM → exit {code} in {stop_seconds:.1f} s"
            )
        finally:
            if proc is not None and proc.poll() is None:  # the run broke off: leave no daemon
                kill(proc)
            if weather is not None:
                weather.stop()
        stats = httpx.get(f"{admin}/stats", timeout=30).json()
    receipts = {n: read_receipt(receipt_path(inbox, n)) for n in names}
    apprecs = {}
    for name in names:
        try:
            apprecs[name] = apprec_path(inbox, name).read_bytes()
        except OSError:
            apprecs[name] = None
    leftovers = sorted(p.name for p in inbox.iterdir() if p.name.endswith(".tmp"))
    return ReliabilityRun(
        seed=seed,
        inbox=inbox,
        claims=claims,
        kills=records,
        stats=stats,
        receipts=receipts,
        apprecs=apprecs,
        journal=setup.local_status(),
        final_exit_code=code,
        final_stop_seconds=stop_seconds,
        settle_seconds=settle,
        seconds=time.monotonic() - started,
        leftover_temp_files=leftovers,
        daemon_log=setup.log_file.read_text(encoding="utf-8", errors="replace"),
        fault_periods=(weather.slow_periods, weather.periods) if weather else (0, 0),
    )


def summarize(result: ReliabilityRun) -> list[tuple[str, str, str]]:
    """Rows (what, figure, target) of a reliability run."""
    by_guid = result.stats.get("by_guid", {})
    guids = [c.guid for c in result.claims]
    once = sum(1 for g in guids if by_guid.get(g) == 1)
    more = sum(1 for g in guids if by_guid.get(g, 0) > 1)
    final = sum(1 for r in result.receipts.values() if is_final(r))
    apprecs = sum(1 for a in result.apprecs.values() if a)
    unfinished = {
        k: n
        for k, n in result.journal.get("antall", {}).items()
        if k in ("seen", "converted", "submitting", "failed")
    }
    faults = result.stats.get("faults", {})
    return [
        ("files / kills / seed", f"{result.files} / {len(result.kills)} / {result.seed}", ""),
        ("regninger sent exactly once", f"{once}/{result.files}", f"{result.files}"),
        ("regninger sent more than once", f"{more}", "0"),
        (
            "submissions received / accepted",
            f"{result.stats.get('submissions_received')} / "
            f"{result.stats.get('submissions_accepted')}",
            f"accepted = {result.files}",
        ),
        ("final receipts / AppRecs", f"{final} / {apprecs}", f"{result.files} / {result.files}"),
        ("journal left unfinished", json.dumps(unfinished) or "{}", "{}"),
        (
            "faults: 5xx / dropped / lost / delayed",
            f"{faults.get('errors', 0)} / {faults.get('dropped', 0)} / "
            f"{faults.get('lost_responses', 0)} / {faults.get('delayed', 0)}",
            f"slow periods {result.fault_periods[0]}/{result.fault_periods[1]}",
        ),
        ("last start → all final", f"{result.settle_seconds:.1f} s", ""),
        (
            "SIGTERM → exit",
            f"{result.final_stop_seconds:.1f} s (code {result.final_exit_code})",
            "",
        ),
        ("receipt temp files left by kills", str(len(result.leftover_temp_files)), ""),
        ("wall time", f"{result.seconds:.1f} s", ""),
    ]


# --------------------------------------------------------------------------- latency


@dataclass
class LatencyRun:
    files: int
    quiet: float
    latencies: list[float]  # seconds beyond the quiet period, per file that reached mottatt
    burst_seconds: float  # writing the burst
    span_seconds: float  # first file complete → last mottatt
    missing: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    daemon_cpu_seconds: float | None


def run_latency(
    workdir: Path,
    *,
    files: int,
    quiet: float,
    concurrency: int | None,
    timeout: float = 600.0,
    say: Say = print,
) -> LatencyRun:
    from bridge.sandbox import start_sandbox

    inbox, state_dir, sandbox_dir = workdir / "inbox", workdir / "state", workdir / "sandbox"
    for folder in (inbox, state_dir, sandbox_dir):
        folder.mkdir(parents=True, exist_ok=True)
    extra = {"BKM_BRIDGE_WATCH__CONCURRENCY": str(concurrency)} if concurrency else {}
    setup = DaemonSetup(inbox, state_dir, sandbox_dir, workdir / "daemon.log", quiet, extra)
    warmup = build_claims(1, tag=99)
    claims = build_claims(files, tag=1)
    with start_sandbox(state_dir=sandbox_dir, clock=datetime.now(OSLO), speed=1.0):
        proc = setup.start()
        try:
            setup.wait_ready(proc)
            # One file first: imports, schema compilation, token and JWKS are not the burst's.
            write_burst(inbox, warmup)
            _wait_mottatt(inbox, [warmup[0].name], timeout=60)
            load_before = os.getloadavg()
            cpu_before = _cpu_seconds(proc.pid)
            say(f"  writing {files} files …")
            start = time.monotonic()
            closed = write_burst(inbox, claims)
            burst = time.monotonic() - start
            seen = _wait_mottatt(inbox, [c.name for c in claims], timeout=timeout)
            load_after = os.getloadavg()
            cpu_after = _cpu_seconds(proc.pid)
        finally:
            stop_gracefully(proc)
    latencies = sorted(seen[n] - closed[n] - quiet for n in seen)
    span = max(seen.values()) - (min(closed.values()) + quiet) if seen else float("nan")
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return LatencyRun(
        files, quiet, latencies, burst, span, files - len(seen), load_before, load_after, cpu
    )


def _wait_mottatt(inbox: Path, names: list[str], *, timeout: float) -> dict[str, float]:
    """name → mtime of its receipt when first seen at mottatt (scanning every 20 ms)."""
    wanted = {f"{n}{RECEIPT_SUFFIX}": n for n in names}
    seen: dict[str, float] = {}
    checked: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(wanted) and time.monotonic() < deadline:
        with os.scandir(inbox) as entries:
            for entry in entries:
                name = wanted.get(entry.name)
                if name is None or name in seen:
                    continue
                try:
                    mtime_ns = entry.stat().st_mtime_ns
                except OSError:
                    continue
                if checked.get(name) == mtime_ns:
                    continue
                checked[name] = mtime_ns
                if is_mottatt(read_receipt(Path(entry.path))):
                    seen[name] = mtime_ns / 1e9
        time.sleep(0.02)
    return seen


def _cpu_seconds(pid: int) -> float | None:
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except Exception:  # psutil missing or the process gone: leave the figure out
        return None


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(share * (len(values) - 1))))
    return values[index]


def print_rows(rows: list[tuple[str, str, str]]) -> None:
    for what, figure, target in rows:
        tail = f"   target {target}" if target else ""
        print(f"{what:<42}{figure:>22}{tail}")


def latency_rows(run: LatencyRun) -> list[tuple[str, str, str]]:
    ms = [v * 1000 for v in run.latencies]
    rate = (run.files - run.missing) / run.span_seconds if run.span_seconds > 0 else float("nan")
    cpu = f"{run.daemon_cpu_seconds:.1f} s" if run.daemon_cpu_seconds is not None else "n/a"
    return [
        ("files / quiet period", f"{run.files} / {run.quiet:g} s", ""),
        ("latency beyond quiet, p50", f"{_percentile(ms, 0.50):.0f} ms", "<= 300 ms"),
        ("latency beyond quiet, p90", f"{_percentile(ms, 0.90):.0f} ms", ""),
        ("latency beyond quiet, p99", f"{_percentile(ms, 0.99):.0f} ms", "<= 1000 ms"),
        ("latency beyond quiet, max", f"{max(ms, default=float('nan')):.0f} ms", ""),
        ("mean", f"{statistics.fmean(ms) if ms else float('nan'):.0f} ms", ""),
        ("writing the burst", f"{run.burst_seconds:.2f} s", ""),
        ("throughput to mottatt", f"{rate:.0f} files/s", ""),
        ("files without mottatt receipt", str(run.missing), "0"),
        ("daemon CPU during the burst", cpu, ""),
        (
            "load average before → after",
            f"{run.load_before[0]:.2f} → {run.load_after[0]:.2f}",
            f"{os.cpu_count()} CPUs",
        ),
    ]


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--quiet", type=float, default=0.5, help="quiet period (s)")
    parser.add_argument("--concurrency", type=int, default=None, help="watch.concurrency")
    parser.add_argument("--reliability", action="store_true", help="the kill/restart harness")
    parser.add_argument("--kills", type=int, default=5, help="with --reliability")
    parser.add_argument("--seed", type=int, default=None, help="with --reliability")
    parser.add_argument(
        "--kill-window",
        type=float,
        default=None,
        help="with --reliability: kill at most this many s after a start (default files/50, "
        "at least 2.5, so the kills spread over the run)",
    )
    parser.add_argument(
        "--faults",
        choices=("off", "on", "both"),
        default="both",
        help="with --reliability: run without faults, with them, or both (default)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep it")
    args = parser.parse_args(argv)

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench-watch-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; work in {workdir}")
    try:
        if args.reliability:
            seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
            modes = {"off": [False], "on": [True], "both": [False, True]}[args.faults]
            window = args.kill_window or max(2.5, args.files / 50)
            for faults in modes:
                label = "with faults" if faults else "without faults"
                print(
                    f"\nreliability {label}: {args.files} files, {args.kills} kills within "
                    f"{window:g} s of each start, seed {seed}"
                )
                result = run_reliability(
                    workdir / ("faults" if faults else "clean"),
                    files=args.files,
                    kills=args.kills,
                    seed=seed,
                    faults=faults,
                    quiet=args.quiet,
                    kill_window=(0.1, window),
                    concurrency=args.concurrency,
                )
                print_rows(summarize(result))
        else:
            print(f"\nlatency: burst of {args.files} files, quiet period {args.quiet:g} s")
            run = run_latency(
                workdir, files=args.files, quiet=args.quiet, concurrency=args.concurrency
            )
            print_rows(latency_rows(run))
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
