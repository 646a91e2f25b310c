"""Issue 20's CPU budget against what the project's chosen libraries cost per claim on their
own: can the daemon's CPU per claim be ≤ 2× the floor at all?

In one run, against a standalone sandbox in a process of its own:
- the floor, exactly as bench_watch.py measures it (read, hardened parse, XSD, JWE from
  `cryptography`, one hand-written HTTP/1.1 POST over a kept-alive connection, one file
  written and fsynced; one claim at a time);
- in another process, each part every claim must pay in the bridge, with the bridge's own
  code and nothing around it (no intake, scheduling, logging or status polls):
  1. converting the legacy file to its JSON BKM (`bridge.core.convert.convert` + the JSON text);
  2. submitting it with the KUHR client (`AsyncKuhrClient.send_inn`: jwcrypto's JWE, httpx over
     aiohttp, the token cached), 4 in flight as the daemon keeps; of which the JWE alone;
  3. the journal's exactly-once minimum: `seen`, `submitting` made durable (fdatasync) before
     the POST, `submitted` with KUHR's answer;
  4. the `sendt` receipt: one file written atomically (temp file + rename).
The sum of the parts is the least the daemon can spend per claim with these libraries, before
it reads a folder, schedules a step or writes a log line. It is printed next to the budget.

The burst figure follows from the same CPU: the sandbox alone is also measured as bench_watch.py
does (the lean client, 4 in flight), with the sandbox's own CPU per claim. On this machine's
CPUs, shared by the sandbox and the daemon, a burst through a daemon that spent only the sum of
the parts could reach at most CPUs ÷ (parts + sandbox's CPU) claims/s (and never more than one
event loop's 1 ÷ parts); that ceiling is printed against 90 % of the sandbox alone.

    .venv/bin/python bench/bench_budget.py [--files 1000] [--rounds 3]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for entry in (str(REPO), str(Path(__file__).resolve().parent)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from bench_watch import (  # noqa: E402
    StandaloneSandbox,
    build_claims,
    print_rows,
    run_worker,
    write_claim_set,
)

PRAKSIS_ID = "1004326178"  # the sandbox's praksis for the bench claims' sender orgnr
IN_FLIGHT = 4  # the daemon's requests in flight


def _cpu(work: Any) -> float:
    began = time.process_time()
    work()
    return time.process_time() - began


def worker_parts(info_path: Path, claims_dir: Path, scratch: Path) -> dict[str, Any]:
    """Each part over every claim, CPU of this process only (seconds per part)."""
    os.environ["BKM_BRIDGE_KUHR__SANDBOX_STATE_DIR"] = str(info_path.parent)
    from contextlib import AsyncExitStack

    from bridge.config import load_settings
    from bridge.core.convert import ConvertContext, convert
    from bridge.core.model import dump_json
    from bridge.core.outcomes import State
    from bridge.files.fsutil import atomic_write
    from bridge.flow.assembly import open_kuhr
    from bridge.flow.journal import Journal
    from bridge.kuhr.jwe import encrypt_claim

    files = sorted(claims_dir.glob("*.xml"))
    data = [path.read_bytes() for path in files]
    context = ConvertContext(praksis_id=PRAKSIS_ID)
    convert(data[0], context)  # schemas, mapping table, takster: once per process
    texts: list[str] = []

    def converting() -> None:
        for raw in data:
            result = convert(raw, context)
            assert result.ok and result.melding is not None, result.problems
            texts.append(dump_json(result.melding, indent=None))

    seconds: dict[str, float] = {"convert": _cpu(converting)}

    async def talking() -> None:
        async with AsyncExitStack() as stack:
            parts = open_kuhr(load_settings(), stack)
            client = await stack.enter_async_context(parts.async_client())
            key = await client.jwks.key()
            await client.send_inn(texts[0])  # token, JWKS and connection: once
            seconds["jwe"] = _cpu(lambda: [encrypt_claim(text, key) for text in texts[1:]])
            gate = asyncio.Semaphore(IN_FLIGHT)
            answers: list[Any] = []

            async def one(text: str) -> None:
                async with gate:
                    answers.append(await client.send_inn(text))

            began = time.process_time()
            await asyncio.gather(*(one(text) for text in texts[1:]))
            seconds["send_inn"] = time.process_time() - began
            missing = [a for a in answers if not a.behandlerkravmeldingId]
            assert not missing, missing[:1]

    asyncio.run(talking())
    sent = len(texts) - 1
    scratch.mkdir(parents=True, exist_ok=True)
    journal = Journal(scratch / "journal.db")
    receipt = json.dumps({"status": "sendt", "tekst": "x" * 1200}).encode()

    def journaling() -> None:
        for i, text in enumerate(texts[1:]):
            version, _ = journal.record_seen(
                str(files[i + 1]), hashlib.sha256(data[i + 1]).hexdigest(), len(data[i + 1])
            )
            journal.transition(
                version.id,
                State.SUBMITTING,
                expect=[State.SEEN],
                via=State.CONVERTED,
                praksis_id=PRAKSIS_ID,
                claim_digest=hashlib.sha256(text.encode()).hexdigest(),
                detail={"claim": text},
            )
            journal.make_durable()
            journal.transition(
                version.id,
                State.SUBMITTED,
                expect=[State.SUBMITTING],
                behandlerkravmelding_id=f"bench-{i}",
                detail={"submit": {"behandlerkravmeldingId": f"bench-{i}", "status": "mottatt"}},
            )

    seconds["journal"] = _cpu(journaling)
    folder = scratch / "inbox"
    folder.mkdir(exist_ok=True)
    seconds["receipt"] = _cpu(
        lambda: [atomic_write(folder / f"{p.name}.kvittering.json", receipt) for p in files[1:]]
    )
    per_claim = {
        "convert": seconds["convert"] / len(texts),
        **{name: seconds[name] / sent for name in ("jwe", "send_inn", "journal", "receipt")},
    }
    return {"count": sent, "per_claim": per_claim}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000, help="claims per round")
    parser.add_argument("--rounds", type=int, default=3, help="floor/parts pairs (median)")
    parser.add_argument("--worker", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _parts, info, claims, scratch = args.worker
        print(json.dumps(worker_parts(Path(info), Path(claims), Path(scratch))))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="bench-budget-"))
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; work in {workdir}")
    sandbox = StandaloneSandbox(workdir / "sandbox", workdir / "sandbox.log")
    import psutil

    floors: list[float] = []
    parts: list[dict[str, float]] = []
    alone_rates: list[float] = []
    sandbox_cpu: list[float] = []
    served = psutil.Process(sandbox.proc.pid)
    try:
        for r in range(args.rounds):
            floor_dir, parts_dir = workdir / f"floor-{r}", workdir / f"parts-{r}"
            write_claim_set(floor_dir, build_claims(args.files, tag=60 + r), xml=True)
            write_claim_set(parts_dir, build_claims(args.files + 1, tag=50 + r), xml=True)
            alone_dir = workdir / f"alone-{r}"
            write_claim_set(alone_dir, build_claims(args.files, tag=40 + r), xml=False)
            os.sync()
            print(
                f"  round {r + 1}/{args.rounds}: the sandbox alone, the floor, the bridge's parts …"
            )
            before = sum(served.cpu_times()[:2])
            alone = run_worker("alone", sandbox.info_path, alone_dir, str(IN_FLIGHT))
            sandbox_cpu.append((sum(served.cpu_times()[:2]) - before) / alone["count"])
            alone_rates.append(alone["count"] / alone["elapsed"])
            floor = run_worker("floor", sandbox.info_path, floor_dir, str(workdir / f"out-{r}"))
            floors.append(floor["cpu"] / floor["count"])
            scratch = str(workdir / f"scratch-{r}")
            measured = run_worker("parts", sandbox.info_path, parts_dir, scratch, script=__file__)
            parts.append(measured["per_claim"])
    finally:
        sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    floor = statistics.median(floors)
    part = {name: statistics.median(p[name] for p in parts) for name in parts[0]}
    total = part["convert"] + part["send_inn"] + part["journal"] + part["receipt"]
    budget = 2 * floor
    cpus = os.cpu_count() or 1
    served_cpu, alone_rate = statistics.median(sandbox_cpu), statistics.median(alone_rates)
    ceiling = min(1 / total, cpus / (total + served_cpu))
    rows = [
        ("floor (as bench_watch.py)", _ms(floor), f"(rounds: {', '.join(_ms(f) for f in floors)})"),
        ("budget: 2 × floor", _ms(budget), "(issue 20's CPU per claim target)"),
        ("1. convert + JSON text", _ms(part["convert"]), ""),
        ("2. send_inn (JWE + httpx/aiohttp)", _ms(part["send_inn"]), f"({IN_FLIGHT} in flight)"),
        ("   of which the JWE (jwcrypto)", _ms(part["jwe"]), ""),
        ("3. journal: seen, submitting+sync, submitted", _ms(part["journal"]), ""),
        ("4. sendt receipt: temp file + rename", _ms(part["receipt"]), ""),
        ("sum of the parts", _ms(total), f"({total / floor:.2f}× the floor)"),
        (
            "left for everything else",
            _ms(budget - total),
            "(intake, scheduling, leases, logging, status polls)"
            if total < budget
            else "(none: the parts alone exceed the budget)",
        ),
        ("sandbox alone (lean client)", f"{alone_rate:.0f}/s", f"(its CPU {_ms(served_cpu)})"),
        ("burst ceiling with the parts alone", f"{ceiling:.0f}/s", ""),
        ("   ÷ the sandbox alone", f"{ceiling / alone_rate:.0%}", "≥ 90 % (issue 20's burst)"),
    ]
    print()
    print_rows(rows)
    print(f"load average now {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
