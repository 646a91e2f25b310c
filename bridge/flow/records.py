"""What the journal keeps of a file version beside its columns: `Detail`, a typed record stored
as one JSON text, with its codec. The pipeline writes it, and receipts, the migration report
and the status page read it, all through this one type.

Only fields that differ from their defaults are stored, so an old journal (or one written by
a newer version with fields this one does not know) reads back: unknown keys are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from bridge.core.legacy.read import Envelope
from bridge.core.model import (
    BehandlerkravmeldingListe,
    BehandlerkravmeldingStatus,
    SendInnResponse,
    load_json,
)
from bridge.core.problems import Problem, Severity


@dataclass(frozen=True, slots=True)
class Detail:
    root: str | None = None  # the watched folder the file came in through
    mtime_ns: int | None = None  # its mtime when seen: an unchanged file is the same version
    claim: str | None = None  # the JSON BKM, as journaled and sent (text, never re-encoded)
    envelope: Envelope | None = None  # the MsgHead's facts (sender, MsgId, …)
    problems: tuple[Problem, ...] = ()  # local problems, warnings included
    praksis_how: str | None = None  # how the praksisId was chosen ("explicit", "rule 1", …)
    precheck: tuple[dict[str, Any], ...] = ()  # pre-control findings, as receipts show them
    submit: dict[str, Any] | None = None  # KUHR's answer to the submission (its JSON)
    details: str | None = None  # KUHR's latest status details (JSON text, compared as text)
    polls: int = 0  # status polls so far
    resume: str | None = None  # the state a transient failure resumes from
    message: str | None = None  # why the last attempt failed (a transient failure)
    failure: str | None = None  # its kind, for the receipt (bridge.core.notices.FAILURE_KINDS)
    # Warnings about the receipt paths (a link or FIFO found there), kept for later receipts.
    receipt_problems: tuple[Problem, ...] = ()
    duplicate_of_path: str | None = None  # the file whose identical content was sent
    duplicate_answer: bool = False  # KUHR answered DUPLIKAT_KRAV: find it, never resend
    duplicate_answer_at: float | None = None  # when it answered so
    # What KUHR's overview last said of this claim (bridge.flow.sweep.fingerprint): a sweep
    # fetches the details only of claims whose overview rows no longer match it.
    kuhr_fingerprint: str | None = None
    # Polling stopped: KUHR did not send the claim to control within unsent_control_max.
    unsent_control_stopped: bool = False

    # ------------------------------------------------------------------ typed views

    @property
    def root_path(self) -> Path | None:
        return Path(self.root) if self.root else None

    def submit_response(self) -> SendInnResponse | None:
        return SendInnResponse.model_validate(self.submit) if self.submit else None

    def status_details(self) -> list[BehandlerkravmeldingStatus]:
        if not self.details:
            return []
        return BehandlerkravmeldingListe.model_validate(
            load_json(self.details)
        ).behandlerkravmeldinger

    def error_codes(self) -> list[str]:
        """The codes of the local problems that are errors (not warnings), sorted."""
        return sorted({p.code for p in self.problems if p.is_error})

    # ------------------------------------------------------------------ codec

    def changed(self, changes: dict[str, Any]) -> Detail:
        """This record with `changes` (field name → value; a value may be given in its stored
        form, as a dict for the envelope or problem). Unknown names raise TypeError."""
        return replace(self, **{name: _decoded(name, value) for name, value in changes.items()})

    def to_json(self) -> str:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if f.name == "envelope":
                value = {name: getattr(value, name) for name in Envelope.__slots__}
            elif f.name in _PROBLEM_FIELDS:
                value = [_problem_dict(p) for p in value]
            elif f.name == "precheck":
                value = list(value)
            out[f.name] = value
        return json.dumps(out, default=str)

    @classmethod
    def from_json(cls, text: str | None) -> Detail:
        """The record stored as `text`. Records are frozen and shared: a version's row is read
        several times per step (the step, each transition, the receipts), and its JSON (the
        claim's text within) is decoded once (a few recent texts are kept)."""
        if not text or text == "{}":
            return EMPTY
        return _from_json(text)


@lru_cache(maxsize=256)
def _from_json(text: str) -> Detail:
    data = json.loads(text)
    return Detail(**{k: _decoded(k, v) for k, v in data.items() if k in _KNOWN and v is not None})


_PROBLEM_FIELDS = frozenset({"problems", "receipt_problems"})
_KNOWN = frozenset(f.name for f in fields(Detail))


def _decoded(name: str, value: Any) -> Any:
    if name == "envelope" and isinstance(value, dict):
        return Envelope(**value)
    if name in _PROBLEM_FIELDS:
        return tuple(p if isinstance(p, Problem) else _problem_from(p) for p in value or ())
    if name == "precheck":
        return tuple(value or ())
    return value


def _problem_dict(problem: Problem) -> dict[str, Any]:
    return {
        "code": problem.code,
        "message": problem.message,
        "line": problem.line,
        "path": problem.path,
        "severity": problem.severity.value,
    }


def _problem_from(data: dict[str, Any]) -> Problem:
    return Problem(
        data["code"],
        data["message"],
        line=data.get("line"),
        path=data.get("path"),
        severity=Severity(data.get("severity", "error")),
    )


EMPTY = Detail()
