"""The watcher as production runs it: the three figures of what the bridge controls (issue 20),
and (with --reliability) the kill/restart harness of issue 5 at full size.

Default mode, in one run against a standalone sandbox in a process of its own (`python -m bridge
sandbox`, real-time clock) and the daemon as a subprocess (`python -m bridge watch INBOX`, its
default settings):
1. single files: `--single` files dropped one at a time; per file, from the moment this process
   closed it to the moment its first JSON receipt (the `sendt` one) appeared, seen through
   inotify. Targets p50 ≤ 100 ms, p99 ≤ 250 ms.
2. burst: `--files` files written at once; files/s from the first close to the last `sendt`
   receipt, against what the sandbox alone serves in the same run to a lean client (primitives
   for the JWE, HTTP/1.1 by hand, as many requests in flight as the bridge keeps: 4) sending the
   same number of claims. Target ≥ 90 %. `--rounds` alternate the two.
3. the daemon's CPU per claim over the burst (psutil; the sandbox is another process) against
   the floor measured in the same run: per claim, read + parse + XSD + JWE + one HTTP request +
   one fsync, one at a time in a process of its own. Target ≤ 2×.

Reliability: a burst of files, then the daemon is SIGKILLed at random moments (seeded RNG,
printed) and restarted each time; a last start runs until every receipt is final and is then
stopped with SIGTERM. Optionally the sandbox injects 5xx, dropped connections, lost responses
and phases of latency beyond the client's read timeout. `run_reliability` is also what
`tests/daemon/test_watch_reliability.py` runs, at a smaller size.

Prints figures next to their targets; asserts nothing. Usage:

    python bench/bench_watch.py [--single 200] [--files 1000] [--rounds 2] [--keep DIR]
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
    quiet: float | None  # None: the settings' default (production's)
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
                    *(["--quiet-seconds", str(self.quiet)] if self.quiet is not None else []),
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


# --------------------------------------------------------------------------- intake figures

# The targets for what the bridge controls (see bench/README.md).
SINGLE_P50_TARGET = 0.100  # s, writer's close → `sendt` receipt on disk
SINGLE_P99_TARGET = 0.250
RATE_SHARE_TARGET = 0.90  # burst files/s ÷ what the sandbox alone serves
CPU_RATIO_TARGET = 2.0  # the bridge's CPU per claim ÷ the floor's
HTTP_IN_FLIGHT = 4  # kuhr.max_concurrency's default: requests the bridge keeps in flight


class StandaloneSandbox:
    """`python -m bridge sandbox --state-dir DIR` in a process of its own, as an operator runs
    it: its CPU is never the bridge's, and the bench's own threads do not share its lock."""

    def __init__(self, state_dir: Path, log_file: Path, *, speed: float = 1.0) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        clock = datetime.now(OSLO).isoformat(timespec="seconds")
        with open(log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "sandbox", "--state-dir", str(state_dir),
                 "--no-access-log", "--clock", clock, "--speed", str(speed)],
                stdout=log, stderr=log, env=_clean_env(), cwd=state_dir,
            )  # fmt: skip
        info_path = state_dir / "sandbox.json"
        deadline = time.monotonic() + 60
        while not info_path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start; see {log_file}")
            time.sleep(0.05)
        time.sleep(0.2)  # written before it answers? it answers first; be sure it is complete
        self.info_path = info_path
        self.info: dict[str, Any] = json.loads(info_path.read_text(encoding="utf-8"))

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.info['admin_url']}/stats?by_guid=false", timeout=30).json()

    def stop(self) -> None:
        stop_gracefully(self.proc)


def _clean_env() -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("BKM_BRIDGE_")}
    return {**env, "PYTHONPATH": pythonpath}


class ReceiptClock:
    """The moment each JSON receipt first appears in the inbox (the rename of its temp file),
    seen through inotify in the bench's process. A claim's first receipt is its `sendt` one
    (no `venter` receipt is written on the way); `sendt()` checks that it says so."""

    def __init__(self, inbox: Path) -> None:
        from watchdog.events import FileMovedEvent, FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        self.inbox = inbox
        self.first: dict[str, float] = {}
        self._changed = threading.Condition()
        clock = self

        class Handler(FileSystemEventHandler):
            def on_moved(self, event: FileSystemEvent) -> None:
                name = os.path.basename(os.fsdecode(event.dest_path))
                if name.endswith(RECEIPT_SUFFIX):
                    at = time.time()
                    with clock._changed:
                        clock.first.setdefault(name[: -len(RECEIPT_SUFFIX)], at)
                        clock._changed.notify_all()

        self._observer = Observer()
        self._observer.schedule(Handler(), str(inbox), event_filter=[FileMovedEvent])
        self._observer.start()

    def wait(self, names: list[str], timeout: float) -> dict[str, float]:
        """name → when its first receipt appeared, for those that did within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while any(n not in self.first for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.5))
            return {n: self.first[n] for n in names if n in self.first}

    def sendt(self, names: list[str]) -> list[str]:
        """Those whose receipt is at `sendt` or later (not a failure) with KUHR's id."""
        return [n for n in names if is_mottatt(read_receipt(receipt_path(self.inbox, n)))]

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(10)


def claim_texts(claims: list[Claim]) -> dict[str, str]:
    """The JSON BKM the bridge would send for each claim (its praksis resolved as the daemon
    resolves it): what the floor and the sandbox-alone client encrypt and send."""
    from bridge.core.convert import ConvertContext, convert
    from bridge.core.model import Behandlerkravmelding, dump_json

    context = ConvertContext()
    texts = {}
    for claim in claims:
        result = convert(claim.data, context)
        assert result.behandlerkrav is not None, result.problems
        melding = Behandlerkravmelding(praksisId=PRAKSIS_ID, behandlerkrav=result.behandlerkrav)
        texts[claim.name] = dump_json(melding, indent=None)
    return texts


def write_claim_set(folder: Path, claims: list[Claim], *, xml: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in claim_texts(claims).items():
        (folder / f"{name}.json").write_text(text, encoding="utf-8")
    if xml:
        for claim in claims:
            (folder / claim.name).write_bytes(claim.data)


def run_worker(
    kind: str, info_path: Path, claims_dir: Path, extra: str, *, script: str = __file__
) -> dict[str, Any]:
    """A worker in a process of its own (`SCRIPT --worker KIND …`, this bench's by default:
    the sandbox alone, or the floor); its figures are the last line it prints, as JSON."""
    proc = subprocess.run(
        [sys.executable, str(Path(script).resolve()), "--worker", kind, str(info_path),
         str(claims_dir), extra],
        capture_output=True, text=True, timeout=600, env=_clean_env(),
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@dataclass
class Burst:
    files: int
    sendt: int
    seconds: float  # first file closed → last receipt appeared
    cpu_seconds: float | None  # the daemon's CPU over that time
    status_polls: int  # status look-ups the sandbox served meanwhile

    @property
    def rate(self) -> float:
        return self.sendt / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_per_claim(self) -> float | None:
        return self.cpu_seconds / self.sendt if self.cpu_seconds and self.sendt else None


@dataclass
class IntakeRun:
    single: list[float]  # s, close → sendt receipt, per file
    single_missing: int
    alone: list[dict[str, Any]]  # the sandbox alone, per round (worker's figures)
    bursts: list[Burst]
    floor: dict[str, Any]
    load: tuple[float, float]


def run_intake(
    workdir: Path,
    *,
    single: int,
    burst: int,
    rounds: int,
    gap: float,
    say: Say = print,
) -> IntakeRun:
    """The three figures of what the bridge controls, in one run (see bench/README.md)."""
    inbox, state_dir, sandbox_dir = workdir / "inbox", workdir / "state", workdir / "sandbox"
    for folder in (inbox, state_dir):
        folder.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    warmup = build_claims(1, tag=90)
    singles = build_claims(single, tag=91)
    bursts = [build_claims(burst, tag=92 + r) for r in range(rounds)]
    say("  preparing the claims of the floor and of the sandbox-alone client …")
    floor_dir = workdir / "floor"
    write_claim_set(floor_dir, build_claims(burst, tag=80), xml=True)
    alone_dirs = []
    for r in range(rounds):
        alone_dirs.append(workdir / f"alone-{r}")
        write_claim_set(alone_dirs[-1], build_claims(burst, tag=70 + r), xml=False)
    os.sync()

    sandbox = StandaloneSandbox(sandbox_dir, workdir / "sandbox.log")
    setup = DaemonSetup(inbox, state_dir, sandbox_dir, workdir / "daemon.log", None)
    proc: subprocess.Popen[bytes] | None = None
    clock = ReceiptClock(inbox)
    try:
        say("  floor: parse + XSD + JWE + one HTTP request + one fsync per claim …")
        floor = run_worker("floor", sandbox.info_path, floor_dir, str(workdir / "floor-out"))
        proc = setup.start()
        setup.wait_ready(proc)
        write_burst(inbox, warmup)
        if not clock.wait([warmup[0].name], timeout=60):
            raise RuntimeError(f"the warm-up file got no receipt; see {setup.log_file}")
        say(f"  single files: {single}, one at a time …")
        closed: dict[str, float] = {}
        latencies: list[float] = []
        for claim in singles:
            closed.update(write_burst(inbox, [claim]))
            seen = clock.wait([claim.name], timeout=30)
            if claim.name in seen:
                latencies.append(seen[claim.name] - closed[claim.name])
            time.sleep(gap)
        good = set(clock.sendt([c.name for c in singles]))
        latencies = sorted(
            clock.first[c.name] - closed[c.name]
            for c in singles
            if c.name in good and c.name in clock.first
        )
        _settle(inbox, [c.name for c in singles], say)
        alone_runs: list[dict[str, Any]] = []
        results: list[Burst] = []
        for r in range(rounds):
            say(f"  round {r + 1}/{rounds}: the sandbox alone, {burst} claims, "
                f"{HTTP_IN_FLIGHT} in flight …")  # fmt: skip
            alone_runs.append(
                run_worker("alone", sandbox.info_path, alone_dirs[r], str(HTTP_IN_FLIGHT))
            )
            say(f"  round {r + 1}/{rounds}: a burst of {burst} files through the bridge …")
            results.append(_burst(inbox, bursts[r], clock, proc, sandbox))
            _settle(inbox, [c.name for c in bursts[r]], say)
    finally:
        clock.stop()
        if proc is not None:
            stop_gracefully(proc)
        sandbox.stop()
    return IntakeRun(
        latencies,
        single - len(latencies),
        alone_runs,
        results,
        floor,
        (load_before, os.getloadavg()[0]),
    )


def _burst(
    inbox: Path,
    claims: list[Claim],
    clock: ReceiptClock,
    proc: subprocess.Popen[bytes],
    sandbox: StandaloneSandbox,
) -> Burst:
    polls_before = sandbox.stats().get("details_requests", 0)
    cpu_before = _cpu_seconds(proc.pid)
    closed = write_burst(inbox, claims)
    names = [c.name for c in claims]
    seen = clock.wait(names, timeout=600)
    cpu_after = _cpu_seconds(proc.pid)
    polls = sandbox.stats().get("details_requests", 0) - polls_before
    sendt = clock.sendt(list(seen))
    span = max(seen.values()) - min(closed.values()) if seen else float("nan")
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return Burst(len(claims), len(sendt), span, cpu, polls)


def _settle(inbox: Path, names: list[str], say: Say, timeout: float = 180.0) -> None:
    """Until these claims have their control result (so that the next phase is not measured
    with their status polls running), or `timeout`."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending and time.monotonic() < deadline:
        pending = [n for n in pending if not is_final(read_receipt(receipt_path(inbox, n)))]
        if pending:
            time.sleep(0.5)
    if pending:
        say(f"  ({len(pending)} claims still without a control result; going on)")


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
    """(what, figure, target); a third column in parentheses is context, not a target."""
    for what, figure, target in rows:
        if not target:
            tail = ""
        elif target.startswith("("):
            tail = f"   {target}"
        else:
            tail = f"   target {target}"
        print(f"{what:<46}{figure:>26}{tail}")


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def intake_rows(run: IntakeRun) -> list[tuple[str, str, str]]:
    ms = [v * 1000 for v in run.single]
    p50, p99 = _percentile(ms, 0.50), _percentile(ms, 0.99)
    rows = [
        (
            "1. single file: close → sendt receipt",
            f"p50 {p50:.0f} ms, p99 {p99:.0f} ms",
            f"p50 ≤ {SINGLE_P50_TARGET * 1000:.0f} ms, p99 ≤ {SINGLE_P99_TARGET * 1000:.0f} ms: "
            + _verdict(p50 <= SINGLE_P50_TARGET * 1000 and p99 <= SINGLE_P99_TARGET * 1000),
        ),
        (
            "   p90 / max / files without a sendt receipt",
            f"{_percentile(ms, 0.90):.0f} / {max(ms, default=float('nan')):.0f} ms / "
            f"{run.single_missing}",
            "",
        ),
    ]
    shares, ratios = [], []
    floor_cpu = run.floor["cpu"] / run.floor["count"]
    for index, (alone, burst) in enumerate(zip(run.alone, run.bursts, strict=True)):
        alone_rate = alone["count"] / alone["elapsed"]
        share = burst.rate / alone_rate
        shares.append(share)
        per_claim = burst.cpu_per_claim
        if per_claim is not None:
            ratios.append(per_claim / floor_cpu)
        rows.append(
            (
                f"   round {index + 1}: bridge / sandbox alone",
                f"{burst.rate:.0f} / {alone_rate:.0f} files/s",
                f"({burst.sendt}/{burst.files} sendt, {burst.status_polls} status polls "
                f"meanwhile; the lean client's CPU "
                f"{alone['client_cpu'] / alone['count'] * 1000:.2f} ms/claim)",
            )
        )
        rows.append(
            (
                f"   round {index + 1}: bridge CPU per claim",
                f"{per_claim * 1000:.2f} ms" if per_claim is not None else "n/a",
                "",
            )
        )
    share = statistics.median(shares)
    rows.insert(
        2,
        (
            "2. burst: files/s ÷ the sandbox alone",
            f"{share * 100:.0f} %",
            f"≥ {RATE_SHARE_TARGET * 100:.0f} %: {_verdict(share >= RATE_SHARE_TARGET)} "
            f"(median of {len(shares)} rounds)",
        ),
    )
    ratio = statistics.median(ratios) if ratios else float("nan")
    rows.insert(
        3,
        (
            "3. bridge CPU per claim ÷ floor",
            f"{ratio:.2f}× (floor {floor_cpu * 1000:.2f} ms)",
            f"≤ {CPU_RATIO_TARGET:g}×: {_verdict(ratio <= CPU_RATIO_TARGET)}",
        ),
    )
    rows.append(
        (
            "   floor's parts (per claim)",
            f"{run.floor['cpu'] / run.floor['count'] * 1000:.2f} ms CPU",
            f"({run.floor['count']} claims, HTTP {run.floor['statuses']})",
        )
    )
    rows.append(
        (
            "load average before → after",
            f"{run.load[0]:.2f} → {run.load[1]:.2f}",
            f"({os.cpu_count()} CPUs)",
        )
    )
    return rows


# --------------------------------------------------------------------------- lean clients


def _lean_session(info: dict[str, Any]) -> tuple[str, Callable[[bytes], bytes], str, int]:
    """(access token, encrypt(plaintext) → compact JWE, host, port): a Maskinporten token by
    the JWT grant and KUHR's key from its JWKS, fetched once, outside any measurement."""
    from bench_sandbox import _lean_encrypter
    from jwcrypto import jwk, jwt

    key = jwk.JWK(**info["private_jwk"])
    now = int(time.time())
    assertion = jwt.JWT(
        header={"alg": "RS256", "kid": key["kid"]},
        claims={
            "iss": info["client_id"],
            "aud": info["maskinporten"]["audience"],
            "scope": "nav:kuhr/krav",
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        },
    )
    assertion.make_signed_token(key)
    with httpx.Client() as http:
        token = http.post(
            info["maskinporten"]["token_url"],
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion.serialize(),
            },
        ).json()["access_token"]
        jwks = http.get(info["jwks_url"], headers={"Authorization": f"Bearer {token}"}).json()
    host, port = info["base_url"].removeprefix("http://").rsplit(":", 1)
    return token, _lean_encrypter(jwk.JWK(**jwks["keys"][0])), host, int(port)


def _request_head(token: str, host: str, port: int) -> str:
    return (
        "POST /kuhr/krav/v1/process/sendinnbehandlerkravmelding HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/jose\r\nContent-Length: {length}\r\n\r\n"
    )


def worker_alone(info_path: Path, claims_dir: Path, in_flight: int) -> dict[str, Any]:
    """The sandbox alone: every claim of `claims_dir` encrypted and POSTed by a client that
    costs as little CPU as it can (primitives, HTTP/1.1 by hand), `in_flight` at a time."""
    import asyncio

    info = json.loads(info_path.read_text(encoding="utf-8"))
    token, encrypt, host, port = _lean_session(info)
    head = _request_head(token, host, port)
    texts = [p.read_bytes() for p in sorted(claims_dir.glob("*.json"))]
    queue = iter(texts)
    statuses: dict[int, int] = {}

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for text in queue:
            body = encrypt(text)
            writer.write(head.replace("{length}", str(len(body))).encode() + body)
            headers = await reader.readuntil(b"\r\n\r\n")
            length = int(headers.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            status = int(headers[9:12])
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    async def main() -> dict[str, Any]:
        streams = [await asyncio.open_connection(host, port) for _ in range(in_flight)]
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(connection(r, w) for r, w in streams))
        return {
            "elapsed": time.perf_counter() - started,
            "count": len(texts),
            "statuses": statuses,
            "client_cpu": time.process_time() - cpu,
        }

    return asyncio.run(main())


def worker_floor(info_path: Path, claims_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The floor: per claim what any bridge must do for it, and nothing else: read the file,
    parse it (hardened parser), validate it with the BKM XSD (libxml2), encrypt its JSON BKM
    (RSA-OAEP-256 + A256GCM), POST it over a kept-alive connection, write KUHR's answer to a
    file and fsync it. One claim at a time; CPU of this process only."""
    import socket

    from bench_convert import _bkm_schema
    from lxml import etree

    from bridge.core.legacy.namespaces import BKM_NS

    info = json.loads(info_path.read_text(encoding="utf-8"))
    token, encrypt, host, port = _lean_session(info)
    head = _request_head(token, host, port)
    schema = _bkm_schema()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    tag = f"{{{BKM_NS}}}BehandlerKrav"
    claims = [
        (path, (claims_dir / f"{path.name}.json").read_bytes())
        for path in sorted(claims_dir.glob("*.xml"))
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    connection = socket.create_connection((host, port))
    answers = connection.makefile("rb")
    statuses: dict[int, int] = {}
    started, cpu = time.perf_counter(), time.process_time()
    for path, text in claims:
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.read(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        root = etree.fromstring(data, parser)
        krav = root if root.tag == tag else next(root.iter(tag))
        schema.validate(krav)
        body = encrypt(text)
        connection.sendall(head.replace("{length}", str(len(body))).encode() + body)
        status = int(answers.readline()[9:12])
        length = 0
        while (line := answers.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        answer = answers.read(length)
        statuses[status] = statuses.get(status, 0) + 1
        fd = os.open(out_dir / f"{path.name}.svar.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            os.write(fd, answer)
            os.fsync(fd)
        finally:
            os.close(fd)
    result = {
        "elapsed": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
        "count": len(claims),
        "statuses": statuses,
    }
    connection.close()
    return result


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=200, help="files dropped one at a time")
    parser.add_argument("--files", type=int, default=1000, help="files in a burst")
    parser.add_argument("--rounds", type=int, default=2, help="sandbox-alone/burst pairs")
    parser.add_argument("--gap", type=float, default=0.05, help="pause between single files (s)")
    parser.add_argument("--quiet", type=float, default=0.5, help="with --reliability (s)")
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
    parser.add_argument("--worker", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, info, claims, extra = args.worker
        if kind == "alone":
            result = worker_alone(Path(info), Path(claims), int(extra))
        else:
            result = worker_floor(Path(info), Path(claims), Path(extra))
        print(json.dumps(result))
        return 0

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
            print(
                f"\nintake: {args.single} single files, then {args.rounds} × (the sandbox alone, "
                f"a burst of {args.files} files); the daemon with its default settings"
            )
            run = run_intake(
                workdir,
                single=args.single,
                burst=args.files,
                rounds=args.rounds,
                gap=args.gap,
            )
            print()
            print_rows(intake_rows(run))
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
