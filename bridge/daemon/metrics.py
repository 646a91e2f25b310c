"""`/metrics`: the bridge's counters in the Prometheus text exposition format (0.0.4).

`MetricsSnapshot` is what the health endpoint gathers from the runner (pipeline counters, KUHR
client counters, journal counts, watcher queue); `render_metrics` writes it out. Counters named
`*_total` count since this process started, except `bkm_bridge_files_seen_total`, which counts
every file version the journal has registered (it survives restarts, as the journal does).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds from "file seen" to "mottatt by KUHR".
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass
class MetricsSnapshot:
    environment: str
    version: str
    uptime_seconds: float
    journal_counts: Mapping[str, int]
    all_states: Sequence[str]
    converted: int = 0
    rejected: int = 0
    submitted: int = 0
    controlled: int = 0
    transient_failures: int = 0
    submit_latencies: Sequence[float] = ()
    kuhr_counters: Mapping[str, int] = field(default_factory=dict)
    intake_pending: int = 0
    due_versions: int = 0
    oldest_unfinished_age_seconds: float = 0.0
    last_rescan_age_seconds: float | None = None
    # (regning status, merknad nummer) -> regninger: KUHR's control results in the journal.
    merknad_counts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # regning status -> regninger (godkjent, avvist …), over the same versions.
    regning_counts: Mapping[str, int] = field(default_factory=dict)
    # follow = payment: age of the oldest controlled claim still waiting for its payment.
    oldest_awaiting_payment_age_seconds: float | None = None


class Exposition:
    """Builds the text format: one HELP and TYPE line per family, then its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        self._lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def single(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text)
        self.sample(name, value)

    def histogram(
        self, name: str, help_text: str, values: Iterable[float], buckets: Sequence[float]
    ) -> None:
        observed = sorted(values)
        self.family(name, "histogram", help_text)
        for bound in buckets:
            count = sum(1 for v in observed if v <= bound)
            self.sample(f"{name}_bucket", count, {"le": _number(bound)})
        self.sample(f"{name}_bucket", len(observed), {"le": "+Inf"})
        self.sample(f"{name}_sum", math.fsum(observed))
        self.sample(f"{name}_count", len(observed))

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def render_metrics(snap: MetricsSnapshot) -> str:
    out = Exposition()
    out.family("bkm_bridge_info", "gauge", "Version and KUHR environment of this bridge.")
    out.sample("bkm_bridge_info", 1, {"version": snap.version, "environment": snap.environment})
    out.single(
        "bkm_bridge_uptime_seconds", "gauge", "Seconds since the bridge started.",
        snap.uptime_seconds,
    )  # fmt: skip
    out.single(
        "bkm_bridge_files_seen_total",
        "counter",
        "File versions the journal has registered (all time).",
        sum(snap.journal_counts.values()),
    )
    for name, value, what in (
        ("converted", snap.converted, "converted to a JSON BKM"),
        ("rejected", snap.rejected, "rejected locally (the receipt says why)"),
        ("submitted", snap.submitted, "received by KUHR (mottatt)"),
        ("controlled", snap.controlled, "through KUHR's control (ferdig_kontrollert)"),
    ):
        out.single(
            f"bkm_bridge_files_{name}_total",
            "counter",
            f"File versions {what} since the bridge started.",
            value,
        )
    out.family("bkm_bridge_files", "gauge", "File versions in the journal by state.")
    for state in snap.all_states:
        out.sample("bkm_bridge_files", snap.journal_counts.get(state, 0), {"state": state})
    out.histogram(
        "bkm_bridge_submit_latency_seconds",
        "Seconds from a file version being seen to KUHR answering mottatt.",
        snap.submit_latencies,
        LATENCY_BUCKETS,
    )
    out.single(
        "bkm_bridge_transient_failures_total",
        "counter",
        "Steps that failed transiently and were scheduled to be retried.",
        snap.transient_failures,
    )
    for key, what in (
        ("requests", "HTTP requests made to KUHR"),
        ("retries", "KUHR requests repeated after a connection error, 5xx or 429"),
        ("token_refreshes", "tokens fetched again after KUHR answered 401"),
        ("submissions", "claims sent to KUHR"),
        ("unreadable_entries", "entries of KUHR's overview left out because they were unreadable"),
    ):
        out.single(
            f"bkm_bridge_kuhr_{key}_total",
            "counter",
            f"{what[0].upper()}{what[1:]}.",
            snap.kuhr_counters.get(key, 0),
        )
    out.family(
        "bkm_bridge_queue_depth",
        "gauge",
        "Work waiting: files still being written (intake) and file versions due a step (due).",
    )
    out.sample("bkm_bridge_queue_depth", snap.intake_pending, {"stage": "intake"})
    out.sample("bkm_bridge_queue_depth", snap.due_versions, {"stage": "due"})
    out.single(
        "bkm_bridge_oldest_unfinished_age_seconds",
        "gauge",
        "Age of the oldest file version still being worked on, up to KUHR's control result "
        "(0: none); a claim waiting only for its payment does not count.",
        snap.oldest_unfinished_age_seconds,
    )
    if snap.oldest_awaiting_payment_age_seconds is not None:
        out.single(
            "bkm_bridge_oldest_awaiting_payment_age_seconds",
            "gauge",
            "Age of the oldest controlled claim still waiting for its payment (0: none).",
            snap.oldest_awaiting_payment_age_seconds,
        )
    out.family(
        "bkm_bridge_kuhr_regninger",
        "gauge",
        "Regninger in the journal by KUHR's control result (godkjent, avvist …).",
    )
    for status, n in sorted(snap.regning_counts.items()):
        out.sample("bkm_bridge_kuhr_regninger", n, {"status": status})
    out.family(
        "bkm_bridge_kuhr_merknader",
        "gauge",
        "Regninger in the journal per KUHR merknad and control result.",
    )
    for (status, merknad), n in sorted(snap.merknad_counts.items()):
        out.sample("bkm_bridge_kuhr_merknader", n, {"merknad": merknad, "status": status})
    if snap.last_rescan_age_seconds is not None:
        out.single(
            "bkm_bridge_last_rescan_age_seconds",
            "gauge",
            "Seconds since the watched folders were last scanned in full.",
            snap.last_rescan_age_seconds,
        )
    return out.text()


def _labels(labels: Mapping[str, str] | None) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(str(value))}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return f"{value:.1f}"
    return repr(float(value))
