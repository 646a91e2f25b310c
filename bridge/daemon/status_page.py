"""The status page: what an operator would rather look at than read logs.

Read-only HTML from the journal: health checks, file versions per state, a throughput chart
(inline SVG, no script), KUHR's rejected regninger with their merknader, files rejected before
sending, and the recent files. Only file names, states, ids, codes and KUHR's merknad texts are
shown; every string still passes `redact_text`, so an identifier cannot reach the page.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from bridge.core.outcomes import BAD_STATES, GOOD_STATES, State, status_of
from bridge.core.timezone import OSLO
from bridge.flow.journal import RETRYABLE_STATES, Event, Version
from bridge.flow.reasons import reason_of, regninger_of
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
    # The operator's actions: the form token (None: the page shows no buttons), the search
    # (`query`, `state`) and the versions it found (None: no search), a notice after a retry.
    csrf: str | None = None
    query: str = ""
    state: str = ""
    found: Sequence[Version] | None = None
    notice: str = ""


def render_status_page(data: StatusData) -> str:
    template = Template(
        resources.files("bridge.daemon.templates")
        .joinpath("status.html")
        .read_text(encoding="utf-8")
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
        rejected_files=_rejected_files(data.versions, data.csrf),
        retry_all=_retry_all_form(data.versions, data.csrf),
        notice=f'<p class="notice" id="notice">{_e(data.notice)}</p>' if data.notice else "",
        search_form=_search_form(data.query, data.state),
        recent_title="Search results" if data.found is not None else "Recent files",
        recent_table=_recent(
            data.versions[:RECENT_ROWS] if data.found is None else data.found[:RECENT_ROWS]
        ),
    )


@dataclass
class FileHistory:
    """One file's page: every version of its path (newest first) with its events."""

    environment: str
    version: Version  # the one asked for
    history: Sequence[tuple[Version, Sequence[Event]]]
    csrf: str | None = None
    notice: str = ""


def render_file_page(data: FileHistory) -> str:
    """A file's history: per version its content hash, state, reason and every state change
    with its note, and the retry button when it may be retried."""
    parts = []
    for version, events in data.history:
        rows = "".join(
            f"<tr><td>{_e(_clock(ev.at))}</td><td>{_state(ev.state.value)}</td>"
            f"<td>{_e(ev.note or '')}</td></tr>"
            for ev in events
        )
        reason = reason_of(version)
        current = ' class="current"' if version.id == data.version.id else ""
        parts.append(
            f'<section id="version-{version.id}"{current} data-state="{_e(version.state.value)}">'
            f"<h2>Content <code>{_e(version.sha256[:12])}</code> · "
            f"{_state(version.state.value)} ({_e(status_of(version.state).value)})</h2>"
            f"<p>Seen {_e(_clock(version.created_at))} · attempts {version.attempts}"
            + (
                f" · behandlerkravmeldingId <code>{_e(version.behandlerkravmelding_id)}</code>"
                if version.behandlerkravmelding_id
                else ""
            )
            + "</p>"
            + (f'<p class="reason">Reason: {_e(reason)}</p>' if reason else "")
            + retry_button(version, data.csrf)
            + "<table><thead><tr><th>When</th><th>State</th><th>Note</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>"
        )
    notice = f'<p class="notice" id="notice">{_e(data.notice)}</p>' if data.notice else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(_name(data.version))} — bkm-bridge</title><style>{FILE_PAGE_STYLE}</style>"
        f'</head><body><header><h1 id="file-name">{_e(_name(data.version))}</h1>'
        f"<p>{_e(data.version.path)} · {_e(data.environment)} · "
        '<a href="/">back to the status page</a></p></header>'
        f"<main>{notice}{''.join(parts)}</main></body></html>"
    )


FILE_PAGE_STYLE = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1a202c;background:#f7fafc}"
    "header{background:#2c5282;color:#fff;padding:12px 24px}header a{color:#fff}"
    "main{padding:16px 24px;display:grid;gap:16px}"
    "section{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:12px 16px}"
    "section.current{border-color:#3182ce}h1{margin:0;font-size:20px}h2{font-size:16px}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;"
    "border-bottom:1px solid #edf2f7}.state{padding:0 6px;border-radius:3px;background:#edf2f7}"
    ".state.good{background:#c6f6d5}.state.bad{background:#fed7d7}.state.busy{background:#feebc8}"
    ".notice{background:#ebf8ff;border:1px solid #90cdf4;padding:6px 12px;margin:0}"
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


def _rejected_files(versions: Sequence[Version], csrf: str | None = None) -> str:
    rows = []
    for version in versions:
        if version.state is State.REJECTED:
            text = "<br>".join(
                f"<code>{_e(p.code)}</code> {_e(p.message)}"
                for p in version.detail.problems
                if p.is_error
            )
        elif version.state is State.FAILED:
            text = _e(reason_of(version))
        elif version.state is State.FEIL_I_MELDING:
            feil = (version.detail.submit or {}).get("feilmeldinger") or []
            text = "<br>".join(
                f"<code>{_e(str(f.get('kode', '')))}</code> {_e(str(f.get('melding', '')))}"
                for f in feil
            )
        else:
            continue
        rows.append(
            f"<tr><td>{_file_link(version)}</td><td>{_state(version.state.value)}</td>"
            f"<td>{text or '—'}</td><td>{retry_button(version, csrf)}</td></tr>"
        )
    if not rows:
        return '<p class="empty">None.</p>'
    return (
        "<table><thead><tr><th>File</th><th>State</th><th>Why</th><th></th></tr></thead>"
        "<tbody>" + "".join(rows) + "</tbody></table>"
    )


def _recent(versions: Sequence[Version]) -> str:
    if not versions:
        return '<p class="empty">No files yet.</p>'
    rows = [
        f'<tr data-version="{v.id}"><td>{_e(_clock(v.updated_at))}</td><td>{_file_link(v)}</td>'
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


def retry_button(version: Version, csrf: str | None) -> str:
    """A form that re-queues this version (POST, with the page's form token), when it may be."""
    if csrf is None or version.state not in RETRYABLE_STATES:
        return ""
    return (
        f'<form method="post" action="/retry/{version.id}" class="retry">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        f'<button type="submit" id="retry-{version.id}">Retry</button></form>'
    )


def _retry_all_form(versions: Sequence[Version], csrf: str | None) -> str:
    waiting = sum(1 for v in versions if v.state in RETRYABLE_STATES)
    if csrf is None or not waiting:
        return ""
    return (
        '<form method="post" action="/retry" class="retry">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        f'<button type="submit" id="retry-all">Retry all failed and rejected ({waiting})'
        "</button></form>"
    )


def _search_form(query: str, state: str) -> str:
    options = ['<option value="">any state</option>'] + [
        f'<option value="{s.value}"{" selected" if s.value == state else ""}>{s.value}</option>'
        for s in State
    ]
    return (
        '<form method="get" action="/" id="search">'
        f'<input type="search" name="q" value="{_e(query)}" '
        'placeholder="file name, behandlerkravmeldingId or sha256">'
        f'<select name="state">{"".join(options)}</select>'
        '<button type="submit">Search</button></form>'
    )


def _file_link(version: Version) -> str:
    return f'<a href="/file/{version.id}">{_e(_name(version))}</a>'


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
    return regninger_of(version)


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
