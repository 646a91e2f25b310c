"""The status page: what an operator would rather look at than read logs.

Read-only HTML from the journal: health checks, file versions per state, a throughput chart
(inline SVG, no script), KUHR's rejected regninger with their merknader, files rejected before
sending, and the recent files. Only file names, states, ids, codes and KUHR's merknad texts are
shown; every string still passes `redact_text`, so an identifier cannot reach the page.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from bridge.core.outcomes import BAD_STATES, GOOD_STATES, State
from bridge.core.timezone import OSLO
from bridge.flow.journal import Version
from bridge.runtime.redaction import redact_text

FINISHED = frozenset(
    {
        State.CONTROLLED,
        State.PAID,
        State.NO_PAYMENT,
        State.REJECTED,
        State.FEIL_I_MELDING,
        State.DUPLICATE,
    }
)
GOOD = GOOD_STATES
BAD = BAD_STATES
RECEIVED_COLOUR = "#3182ce"
FINISHED_COLOUR = "#38a169"
RECENT_ROWS = 50


@dataclass
class StatusData:
    environment: str
    version: str
    uptime_seconds: float
    now: float  # epoch seconds
    healthy: bool
    checks: Mapping[str, Mapping[str, Any]]
    counts: Mapping[str, int]
    versions: Sequence[Version]  # newest change first


def render_status_page(data: StatusData) -> str:
    template = Template(
        resources.files("bridge.daemon.templates").joinpath("status.html").read_text(encoding="utf-8")
    )
    sandbox = data.environment == "sandbox"
    return template.substitute(
        environment=_e(data.environment),
        environment_label=_e(
            "SANDBOX (nothing reaches Helfo)" if sandbox else data.environment.upper()
        ),
        banner_colour="#975a16" if sandbox else "#2c5282",
        version=_e(data.version),
        uptime=_e(_duration(data.uptime_seconds)),
        generated=_e(_clock(data.now)),
        health_class="ok" if data.healthy else "fail",
        health_word="OK" if data.healthy else "FAILING",
        health_checks=_health(data.checks),
        counts_table=_counts(data.counts),
        chart=throughput_chart(data.versions, data.now),
        rejected_regninger=_rejected_regninger(data.versions),
        rejected_files=_rejected_files(data.versions),
        recent_table=_recent(data.versions[:RECENT_ROWS]),
    )


# --------------------------------------------------------------------------- sections


def _health(checks: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for name, check in checks.items():
        ok = bool(check.get("ok"))
        detail = check.get("error") or check.get("detail") or ""
        parts.append(
            f'<span class="check {"ok" if ok else "fail"}" data-check="{_e(name)}">'
            f"{'✔' if ok else '✘'} {_e(name)}"
            + (f": {_e(str(detail))}" if detail and not ok else "")
            + "</span>"
        )
    return "<p>" + "".join(parts) + "</p>" if parts else '<p class="empty">no checks</p>'


def _counts(counts: Mapping[str, int]) -> str:
    order = [s.value for s in State]
    rows = [
        f'<tr data-state="{_e(state)}"><td>{_state(state)}</td>'
        f'<td class="num">{counts[state]}</td></tr>'
        for state in sorted(counts, key=lambda s: order.index(s) if s in order else len(order))
    ]
    if not rows:
        return '<p class="empty">The journal is empty: no files seen yet.</p>'
    total = sum(counts.values())
    return (
        "<table><thead><tr><th>State</th><th>Files</th></tr></thead><tbody>"
        + "".join(rows)
        + f'<tr><th>all</th><td class="num">{total}</td></tr></tbody></table>'
    )


def _rejected_regninger(versions: Sequence[Version]) -> str:
    rows = []
    for version in versions:
        for regning in _regninger(version):
            if regning.get("status") != "avvist":
                continue
            merknader = "<br>".join(
                f"<b>{_e(str(m.get('nummer', '')))}</b> {_e(str(m.get('tekst', '')))}"
                for m in regning.get("merknader") or []
            )
            rows.append(
                f"<tr><td>{_e(_name(version))}</td>"
                f"<td>{_e(str(regning.get('regningsnummer') or ''))}</td>"
                f"<td>{merknader or '—'}</td></tr>"
            )
    if not rows:
        return '<p class="empty">None.</p>'
    return (
        "<table><thead><tr><th>File</th><th>Regning</th><th>Merknader</th></tr></thead>"
        "<tbody>" + "".join(rows) + "</tbody></table>"
    )


def _rejected_files(versions: Sequence[Version]) -> str:
    rows = []
    for version in versions:
        if version.state is State.REJECTED:
            text = "<br>".join(
                f"<code>{_e(p.code)}</code> {_e(p.message)}"
                for p in version.detail.problems
                if p.is_error
            )
        elif version.state is State.FEIL_I_MELDING:
            feil = (version.detail.submit or {}).get("feilmeldinger") or []
            text = "<br>".join(
                f"<code>{_e(str(f.get('kode', '')))}</code> {_e(str(f.get('melding', '')))}"
                for f in feil
            )
        else:
            continue
        rows.append(
            f"<tr><td>{_e(_name(version))}</td><td>{_state(version.state.value)}</td>"
            f"<td>{text or '—'}</td></tr>"
        )
    if not rows:
        return '<p class="empty">None.</p>'
    return (
        "<table><thead><tr><th>File</th><th>State</th><th>Why</th></tr></thead>"
        "<tbody>" + "".join(rows) + "</tbody></table>"
    )


def _recent(versions: Sequence[Version]) -> str:
    if not versions:
        return '<p class="empty">No files yet.</p>'
    rows = [
        f"<tr><td>{_e(_clock(v.updated_at))}</td><td>{_e(_name(v))}</td>"
        f"<td><code>{_e(v.sha256[:12])}</code></td><td>{_state(v.state.value)}</td>"
        f"<td><code>{_e(v.behandlerkravmelding_id or '')}</code></td>"
        f"<td>{_e(_outcome(v))}</td></tr>"
        for v in versions
    ]
    return (
        "<table><thead><tr><th>Changed</th><th>File</th><th>Content</th><th>State</th>"
        "<th>behandlerkravmeldingId</th><th>Outcome</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _outcome(version: Version) -> str:
    detail = version.detail
    if version.state is State.REJECTED:
        codes = sorted({p.code for p in detail.problems})
        return "rejected: " + ", ".join(codes)
    if version.state is State.FAILED:
        return f"will retry: {detail.message or ''}"
    if version.state is State.DUPLICATE:
        return f"same content as {Path(detail.duplicate_of_path or '').name}"
    regninger = _regninger(version)
    if regninger:
        tally: dict[str, int] = {}
        for regning in regninger:
            status = str(regning.get("status"))
            tally[status] = tally.get(status, 0) + 1
        return ", ".join(f"{n} {status}" for status, n in sorted(tally.items()))
    return ""


# --------------------------------------------------------------------------- chart


def throughput_chart(versions: Sequence[Version], now: float, hours: int = 24) -> str:
    """Files received and finished per hour as an inline SVG bar chart."""
    start_hour = int(now // 3600) - hours + 1
    received = [0] * hours
    finished = [0] * hours
    for version in versions:
        slot = int(version.created_at // 3600) - start_hour
        if 0 <= slot < hours:
            received[slot] += 1
        if version.state in FINISHED:
            slot = int(version.updated_at // 3600) - start_hour
            if 0 <= slot < hours:
                finished[slot] += 1
    width, height, left, bottom, top = 760, 180, 36, 24, 12
    plot_h = height - bottom - top
    step = (width - left - 8) / hours
    peak = max([*received, *finished, 1])
    parts = [
        f'<svg id="throughput-chart" role="img" width="{width}" height="{height + 20}" '
        f'viewBox="0 0 {width} {height + 20}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>Files received and finished per hour; busiest hour {peak}</title>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
        'stroke="#a0aec0"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    bar = max(2.0, step / 2 - 2)
    for i in range(hours):
        x = left + i * step + 1
        for offset, count, colour, kind in (
            (0.0, received[i], RECEIVED_COLOUR, "received"),
            (bar + 1, finished[i], FINISHED_COLOUR, "finished"),
        ):
            if count:
                h = max(2.0, plot_h * count / peak)
                parts.append(
                    f'<rect class="bar {kind}" x="{x + offset:.1f}" y="{top + plot_h - h:.1f}" '
                    f'width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                    f"<title>{count} {kind}</title></rect>"
                )
        if i % 3 == 0:
            label = datetime.fromtimestamp((start_hour + i) * 3600, OSLO).strftime("%H:00")
            parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}">{label}</text>')
    legend_y = height + 12
    parts += [
        f'<rect x="{left}" y="{legend_y - 9}" width="10" height="10" fill="{RECEIVED_COLOUR}"/>',
        f'<text x="{left + 14}" y="{legend_y}">received ({sum(received)})</text>',
        f'<rect x="{left + 130}" y="{legend_y - 9}" width="10" height="10" '
        f'fill="{FINISHED_COLOUR}"/>',
        f'<text x="{left + 144}" y="{legend_y}">finished ({sum(finished)})</text>',
        "</svg>",
    ]
    return "".join(parts)


# --------------------------------------------------------------------------- helpers


def _regninger(version: Version) -> list[dict[str, Any]]:
    """KUHR's per-regning results for this version (from the stored status details)."""
    raw = version.detail.details
    if not raw:
        return []
    try:
        details = json.loads(raw) if isinstance(raw, str) else raw
        main = (details.get("behandlerkravmeldinger") or [])[0]
        return list((main.get("innsending") or {}).get("regninger") or [])
    except (ValueError, AttributeError, IndexError, TypeError):
        return []


def _name(version: Version) -> str:
    return version.file.name


def _state(state: str) -> str:
    if state in GOOD:
        kind = "good"
    elif state in BAD:
        kind = "bad"
    elif state == State.SKIPPED:
        kind = ""
    else:
        kind = "busy"  # still on its way
    return f'<span class="state {kind}">{_e(state)}</span>'


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, OSLO).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


def _e(text: str) -> str:
    """Redacted, then escaped for HTML."""
    return html.escape(redact_text(text), quote=True)
