"""Why a file version stands where it does, in one line, from what the journal keeps.

`status --local`, the status page and the notifications say the same thing about a file:
the local problem codes of a rejected file, KUHR's feilmeldinger, the cause of a transient
failure, the merknader of rejected regninger. Only codes, KUHR's texts and the bridge's own
sentences: no field of the claim itself. Every text still passes `redact_text` where it is shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bridge.core.outcomes import State
from bridge.flow.journal import Version

AVVIST = "avvist"


def regninger_of(version: Version) -> list[dict[str, Any]]:
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


def merknader_of(version: Version) -> Iterator[tuple[str, str]]:
    """(regning status, merknad nummer) for every merknad KUHR put on this version's regninger."""
    for regning in regninger_of(version):
        status = str(regning.get("status") or "")
        for merknad in regning.get("merknader") or []:
            nummer = str((merknad or {}).get("nummer") or "").strip()
            if nummer:
                yield status, nummer


def avviste_merknader(version: Version) -> list[str]:
    """The merknad numbers of this version's rejected regninger, sorted, each once."""
    return sorted({nummer for status, nummer in merknader_of(version) if status == AVVIST})


def rejected_regninger(version: Version) -> int:
    return sum(1 for r in regninger_of(version) if r.get("status") == AVVIST)


def reason_of(version: Version) -> str:
    """One line on why the version is where it is ("" when nothing went wrong)."""
    detail = version.detail
    if version.state is State.REJECTED:
        errors = [p for p in detail.problems if p.is_error]
        if not errors:
            return "rejected"
        first = errors[0]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"{first.code}: {first.message}{more}"
    if version.state is State.FAILED:
        kind = f"{detail.failure}: " if detail.failure else ""
        return f"{kind}{detail.message or 'transient failure'} (retried when due)"
    if version.state is State.FEIL_I_MELDING:
        feil = (detail.submit or {}).get("feilmeldinger") or []
        return (
            "; ".join(f"{f.get('kode', '')}: {f.get('melding', '')}".strip(": ") for f in feil)
            or "KUHR's technical control refused the message"
        )
    if version.state is State.DUPLICATE:
        return f"same content as {Path(detail.duplicate_of_path or '').name}"
    codes = avviste_merknader(version)
    if codes:
        n = rejected_regninger(version)
        return f"{n} regning(er) avvist, merknad {', '.join(codes)}"
    return ""
