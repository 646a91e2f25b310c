"""The report of a migration: a CSV row per file, a JSON summary, an HTML page with a chart.

Rows are written as they come (nothing per file stays in memory); the summary keeps totals
per outcome, per merknad number and per problem code, and outcomes per second of the run for
the chart. A row's outcome is the overall `status` word of the file's receipt, computed by
`bridge.core.receipts.build_receipt` from what the journal holds, so the report's totals are the
receipts' totals. Patient data stays out: merknader by number, problems by code.

`--report FILE` writes FILE (CSV), FILE's stem + `.summary.json` and + `.html`.
"""

from __future__ import annotations

import csv
import html
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from bridge.core.outcomes import FAILED, STATUS_SENTENCES, UNFINISHED, Status
from bridge.core.problems import PROBLEM_CODES
from bridge.core.receipts import ReceiptFacts, build_receipt
from bridge.core.timezone import OSLO
from bridge.files.receipts import receipt_paths
from bridge.flow.journal import Version

COLUMNS = (
    "file",
    "outcome",
    "state",
    "behandlerkravmeldingId",
    "praksisId",
    "regninger",
    "rejected_regninger",
    "merknader",
    "problems",
    "receipt",
)
# Outcomes that mean a file did not get through (the command's exit code is 1).
FAILED_OUTCOMES = FAILED
UNFINISHED_OUTCOMES = UNFINISHED
# Rows the HTML page lists by name (the CSV has every row): files that did not get through,
# were not finished, had a regning rejected, or could not be fully checked.
ATTENTION_OUTCOMES = FAILED | UNFINISHED | {Status.AVVIST, Status.DELVIS_GODKJENT}
LISTED_MAX = 500
# Chart colours per outcome (others grey).
_COLOURS = {
    "konvertert": "#2e7d32",
    "sendt": "#1565c0",
    "godkjent": "#2e7d32",
    "delvis_godkjent": "#f9a825",
    "avvist": "#c62828",
    "avvist_lokalt": "#ef6c00",
    "feil_i_melding": "#ad1457",
    "feilet_midlertidig": "#6a1b9a",
    "duplikat": "#546e7a",
    "ignorert": "#9e9e9e",
    "venter": "#90caf9",
}


@dataclass(frozen=True, slots=True)
class ReportRow:
    file: str  # the journal key: a path, or ZIP!MEMBER
    outcome: str  # the receipt's status word (dry run: konvertert | avvist_lokalt | ignorert)
    state: str | None = None  # the journal state (None in a dry run)
    behandlerkravmelding_id: str | None = None
    praksis_id: str | None = None
    regninger: int | None = None
    rejected_regninger: tuple[str, ...] = ()  # regningsnummer (else guid) of rejected ones
    merknader: tuple[str, ...] = ()  # merknad numbers, regning and melding level
    problems: tuple[str, ...] = ()  # local problem codes
    receipt: str | None = None  # the JSON receipt (real run) or the JSON written (dry run)
    at: float | None = None  # when it reached this outcome (epoch seconds)

    def csv_values(self) -> list[str]:
        return [
            self.file,
            self.outcome,
            self.state or "",
            self.behandlerkravmelding_id or "",
            self.praksis_id or "",
            "" if self.regninger is None else str(self.regninger),
            " ".join(self.rejected_regninger),
            " ".join(self.merknader),
            " ".join(self.problems),
            self.receipt or "",
        ]


def row_from_version(
    key: str,
    version: Version | None,
    *,
    environment: str,
    source: Path,
    receipts_dir: Path | None,
    root: Path | None,
) -> ReportRow:
    """A real run's row: from the journal, through the receipts' own status rules."""
    if version is None:
        return ReportRow(key, Status.IKKE_BEHANDLET)
    facts = _facts(version, environment, source)
    receipt = build_receipt(facts)
    rejected = tuple(
        r.get("regningsnummer") or r.get("guid") or "?"
        for r in receipt["regninger"]
        if r.get("status") == "avvist"
    )
    per_regning = [m for r in receipt["regninger"] for m in r.get("merknader") or []]
    merknader = tuple(str(m["nummer"]) for m in [*per_regning, *receipt["merknader"]])
    receipt_file = None
    if version.state.value != "skipped":
        try:
            receipt_file = str(
                receipt_paths(source, receipts_dir, root if receipts_dir else None)[0]
            )
        except ValueError:
            receipt_file = None
    return ReportRow(
        file=key,
        outcome=receipt["status"],
        state=version.state.value,
        behandlerkravmelding_id=receipt["behandlerkravmeldingId"],
        praksis_id=version.praksis_id,
        regninger=_regninger_in(version),
        rejected_regninger=rejected,
        merknader=merknader,
        problems=tuple(p.code for p in facts.problems),
        receipt=receipt_file,
        at=version.updated_at,
    )


def _facts(version: Version, environment: str, source: Path) -> ReceiptFacts:
    """The facts the status and the KUHR results depend on (not the claim itself)."""
    detail = version.detail
    return ReceiptFacts(
        source=source,
        sha256=version.sha256,
        size=version.size,
        environment=environment,
        state=version.state.value,
        problems=list(detail.problems),
        praksis_id=version.praksis_id,
        submit=detail.submit_response(),
        details=detail.status_details(),
        duplicate_of=detail.duplicate_of_path,
        message=detail.message if version.state.value == "failed" else None,
    )


def _regninger_in(version: Version) -> int | None:
    claim = version.detail.claim
    if not claim:
        return None
    try:
        return len(json.loads(claim)["behandlerkrav"]["regninger"])
    except (ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------- writing


@dataclass
class Summary:
    """Totals of a run; what the JSON summary and the HTML page show."""

    files: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    merknader: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    rejected_regninger: int = 0
    per_second: Counter[tuple[int, str]] = field(default_factory=Counter)  # (second, outcome)
    earlier: Counter[str] = field(default_factory=Counter)  # outcomes reached before the run
    attention: list[ReportRow] = field(default_factory=list)  # the first LISTED_MAX of them
    attention_total: int = 0

    def add(self, row: ReportRow, started: float) -> None:
        self.files += 1
        self.outcomes[row.outcome] += 1
        self.merknader.update(row.merknader)
        self.problems.update(row.problems)
        self.rejected_regninger += len(row.rejected_regninger)
        if needs_attention(row):
            self.attention_total += 1
            if len(self.attention) < LISTED_MAX:
                self.attention.append(row)
        if row.at is None or row.at < started:
            self.earlier[row.outcome] += 1
        else:
            self.per_second[(int(row.at - started), row.outcome)] += 1

    @property
    def failed(self) -> int:
        return sum(self.outcomes[o] for o in FAILED_OUTCOMES)

    @property
    def unfinished(self) -> int:
        return sum(self.outcomes[o] for o in UNFINISHED_OUTCOMES)


def needs_attention(row: ReportRow) -> bool:
    return (
        row.outcome in ATTENTION_OUTCOMES
        or bool(row.rejected_regninger)
        or "PRAKSIS_NOT_CHECKED" in row.problems
    )


def reasons(row: ReportRow) -> str:
    """Why a row needs attention, in words: its problem codes with their meaning, the
    rejected regninger and KUHR's merknad numbers, else what its outcome means."""
    parts = [f"{code}: {PROBLEM_CODES.get(code, '')}".rstrip(": ") for code in row.problems]
    if row.rejected_regninger:
        parts.append("regning avvist: " + ", ".join(row.rejected_regninger))
    if row.merknader:
        parts.append("merknader " + ", ".join(row.merknader))
    return "; ".join(parts) or STATUS_SENTENCES.get(row.outcome, row.outcome)


def report_paths(report: Path) -> tuple[Path, Path, Path]:
    """(CSV, JSON summary, HTML) for `--report FILE`."""
    stem = report.name[: -len(report.suffix)] if report.suffix else report.name
    return report, report.with_name(stem + ".summary.json"), report.with_name(stem + ".html")


class ReportWriter:
    """Streams rows into the CSV and keeps the summary; `close(meta)` writes JSON and HTML.
    Without a path it only keeps the summary (for the progress line and --json)."""

    def __init__(self, report: Path | None, started: float) -> None:
        self.summary = Summary()
        self.started = started
        self.paths = report_paths(report) if report is not None else None
        self._csv_file: TextIO | None = None
        self._csv: Any = None
        if self.paths is not None:
            self.paths[0].parent.mkdir(parents=True, exist_ok=True)
            self._csv_file = self.paths[0].open("w", encoding="utf-8", newline="")
            self._csv = csv.writer(self._csv_file)
            self._csv.writerow(COLUMNS)

    def add(self, row: ReportRow) -> None:
        self.summary.add(row, self.started)
        if self._csv is not None:
            self._csv.writerow(row.csv_values())

    def close(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Finish the files; returns the JSON summary as data."""
        data = summary_json(self.summary, meta)
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None
        if self.paths is not None:
            _, json_path, html_path = self.paths
            json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
            html_path.write_text(render_html(self.summary, data), encoding="utf-8")
        return data


def summary_json(summary: Summary, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        **meta,
        "files": summary.files,
        "outcomes": dict(sorted(summary.outcomes.items())),
        "rejected_regninger": summary.rejected_regninger,
        "merknader": dict(sorted(summary.merknader.items(), key=lambda kv: _number_key(kv[0]))),
        "problems": dict(sorted(summary.problems.items())),
        "failed": summary.failed,
        "unfinished": summary.unfinished,
    }


def _number_key(text: str) -> tuple[int, str]:
    return (int(text), text) if text.isdigit() else (1 << 30, text)


# --------------------------------------------------------------------------- HTML


def render_html(summary: Summary, data: dict[str, Any], buckets: int = 60) -> str:
    """A self-contained page: totals, merknader, problems and a stacked bar chart (SVG) of
    outcomes over the run's time."""
    title = "bkm-bridge migrate" + (" (dry run)" if data.get("dry_run") else "")
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td class=n>{v:,}</td></tr>"
        for k, v in sorted(summary.outcomes.items(), key=lambda kv: -kv[1])
    )
    merknader = "".join(
        f"<tr><td>{html.escape(k)}</td><td class=n>{v:,}</td></tr>"
        for k, v in data["merknader"].items()
    )
    problems = "".join(
        f"<tr><td>{html.escape(k)}</td><td class=n>{v:,}</td></tr>"
        for k, v in data["problems"].items()
    )
    facts = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(str(data.get(key, '')))}</td></tr>"
        for label, key in (
            ("Environment", "environment"),
            ("Started", "started"),
            ("Finished", "finished"),
            ("Seconds", "seconds"),
            ("Files", "files"),
            ("Files per second", "files_per_second"),
            ("Journal", "journal"),
            ("Interrupted", "interrupted"),
        )
        if key in data
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;margin:0 2em 1.5em 0;display:inline-table;vertical-align:top}}
td,th{{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}}
.legend span{{display:inline-block;margin-right:1em}}
.legend i{{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{facts}</table>
<h2>Outcomes</h2>
<table><tr><th>outcome</th><th>files</th></tr>{rows}</table>
<table><tr><th>merknad</th><th>count</th></tr>{merknader}</table>
<table><tr><th>problem</th><th>files</th></tr>{problems}</table>
<h2>Outcomes over time</h2>
{_chart(summary, buckets)}
{_attention(summary)}
</body></html>
"""


def _attention(summary: Summary) -> str:
    """The files that need attention, with their reasons (the first LISTED_MAX)."""
    if not summary.attention_total:
        return "<h2>Files that need attention</h2>\n<p>None.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(row.file)}</td><td>{html.escape(row.outcome)}</td>"
        f"<td>{html.escape(reasons(row))}</td></tr>"
        for row in summary.attention
    )
    more = summary.attention_total - len(summary.attention)
    tail = f"<p>… and {more:,} more: see the CSV.</p>" if more else ""
    return (
        f"<h2>Files that need attention ({summary.attention_total:,})</h2>\n"
        f"<table><tr><th>file</th><th>outcome</th><th>reason</th></tr>{rows}</table>{tail}"
    )


def _chart(summary: Summary, buckets: int) -> str:
    if not summary.per_second and not summary.earlier:
        return "<p>No files.</p>"
    last = max((second for second, _ in summary.per_second), default=0)
    width_s = max(1, -(-(last + 1) // buckets))  # seconds per bar
    bars: list[Counter[str]] = [Counter() for _ in range(-(-(last + 1) // width_s))]
    for (second, outcome), n in summary.per_second.items():
        bars[second // width_s][outcome] += n
    columns: list[tuple[str, Counter[str]]] = []
    if summary.earlier:
        columns.append(("before", summary.earlier))
    columns += [(f"{i * width_s}s", bar) for i, bar in enumerate(bars)]
    peak = max((sum(c.values()) for _, c in columns), default=1) or 1
    outcomes = sorted({o for _, c in columns for o in c})
    height, bar_w, gap = 200, 12, 2
    shapes = []
    for i, (label, counts) in enumerate(columns):
        x = 40 + i * (bar_w + gap)
        y = height
        for outcome in outcomes:
            n = counts.get(outcome, 0)
            if not n:
                continue
            h = n / peak * (height - 10)
            y -= h
            colour = _COLOURS.get(outcome, "#bdbdbd")
            shapes.append(
                f'<rect x="{x}" y="{y:.1f}" width="{bar_w}" height="{h:.1f}" fill="{colour}">'
                f"<title>{html.escape(label)}: {html.escape(outcome)} {n:,}</title></rect>"
            )
    svg_w = 60 + len(columns) * (bar_w + gap)
    legend = "".join(
        f'<span><i style="background:{_COLOURS.get(o, "#bdbdbd")}"></i>{html.escape(o)}</span>'
        for o in outcomes
    )
    axis = (
        f'<text x="2" y="12" font-size="10">{peak:,}</text>'
        f'<text x="2" y="{height}" font-size="10">0</text>'
        f'<text x="40" y="{height + 14}" font-size="10">files per {width_s}s, run start → end'
        "</text>"
    )
    return (
        f'<svg width="{svg_w}" height="{height + 20}" role="img" '
        f'aria-label="outcomes over time">{axis}{"".join(shapes)}</svg>'
        f'<p class="legend">{legend}</p>'
    )


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, OSLO).isoformat(timespec="seconds")
