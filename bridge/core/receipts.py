"""Receipts beside the originals: `NAME.xml.kvittering.json` for people and scripts, and
`NAME.apprec.xml` (AppRec 1.0) for EPJ systems that already read Helfo's answers that way.

Everything here is pure except `write_receipts`: the caller (watcher, submit, migrate) gathers
what the journal and KUHR know into `ReceiptFacts`; `build_receipt` and `build_apprec` turn that
into data and bytes. The format is documented for clinics and EPJ vendors in docs/receipts.md;
change both together.

Patient data stays out: regninger are listed by guid, regningsnummer, status and merknader
only, and every free text (local problem messages, KUHR's feilmeldinger and merknader) has the
claim's patient identifiers, names and birth dates, and anything shaped like a fødselsnummer in
the texts the bridge or KUHR's technical control wrote, replaced by `[skjult]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from bridge.core.legacy.read import Envelope
from bridge.core.model import (
    Behandlerkravmelding,
    BehandlerkravmeldingStatus,
    Merknad,
    RegningResultat,
    SendInnResponse,
)
from bridge.core.outcomes import STATUS_SENTENCES, State, Status, status_label, status_of
from bridge.core.problems import STAFF_TEXT, Problem
from bridge.runtime.redaction import Mentions, ascii_folded

RECEIPT_FORMAT_VERSION = 1
JSON_SUFFIX = ".kvittering.json"
APPREC_SUFFIX = ".apprec.xml"
SANDBOX_WARNING = "SANDBOX – ikke sendt til Helfo"
DEV_WARNING = "TESTMILJØ (dev) – ikke et ekte krav til Helfo"
REDACTED = "[skjult]"


STATES = frozenset(s.value for s in State)
_AT_KUHR = frozenset({State.SUBMITTED, State.CONTROLLED, State.PAID, State.NO_PAYMENT})
ENVIRONMENTS = frozenset({"sandbox", "dev", "prod"})

# KUHR's utbetalingsstatus values that are also overall status words.
_PAYMENT_WORDS = frozenset({"sendt_til_utbetaling", "utbetalt", "ingen_utbetaling"})


@dataclass
class ReceiptFacts:
    """Everything known about one file version, gathered by the caller for its receipts."""

    source: Path  # the original file
    sha256: str
    size: int
    environment: str  # "sandbox" | "dev" | "prod"
    state: str  # the journal state (bridge.journal.State values)
    envelope: Envelope | None = None
    problems: list[Problem] = field(default_factory=list)  # found locally
    praksis_id: str | None = None
    claim: Behandlerkravmelding | None = None  # what was (or would be) sent
    submit: SendInnResponse | None = None  # KUHR's answer to the POST
    details: list[BehandlerkravmeldingStatus] = field(default_factory=list)  # first: original
    duplicate_of: str | None = None  # the earlier file version with the same content
    precheck: list[dict[str, Any]] = field(default_factory=list)  # pre-control findings
    timestamps: dict[str, datetime] = field(default_factory=dict)
    message: str | None = None  # a sentence for people

    def __post_init__(self) -> None:
        self.state = str(self.state)
        self.environment = str(self.environment)
        if self.state not in STATES:
            raise ValueError(f"unknown journal state {self.state!r}")
        if self.environment not in ENVIRONMENTS:
            raise ValueError(f"unknown environment {self.environment!r}")


# --------------------------------------------------------------------------- status


def overall_status(facts: ReceiptFacts) -> str:
    """One word a person or a script can switch on (bridge.core.outcomes.Status; each has a
    sentence in STATUS_SENTENCES): what the state says, refined by KUHR's answers once the
    claim is at KUHR."""
    state = State(facts.state)
    if state in (State.SKIPPED, State.DUPLICATE, State.REJECTED):
        return status_of(state)
    if _is_feil_i_melding(facts):
        return Status.FEIL_I_MELDING
    if state not in _AT_KUHR:
        return status_of(state)  # venter, feilet_midlertidig
    control = control_result(facts)
    if control == Status.AVVIST:
        return Status.AVVIST
    payment = _payment_word(facts)
    if not (payment or control) and _not_sent_to_control(facts):
        return Status.IKKE_SENDT_TIL_KONTROLL
    return payment or control or Status.SENDT


def _not_sent_to_control(facts: ReceiptFacts) -> bool:
    return bool(facts.details) and facts.details[0].kontrollstatus == "ikke_sendt_til_kontroll"


def control_result(facts: ReceiptFacts) -> str | None:
    """godkjent | delvis_godkjent | avvist once KUHR's control has judged every regning."""
    if not facts.details or not any(_controlled(d) for d in facts.details):
        return None
    statuses = {r["status"] for r in kuhr_regninger(facts)}
    if not statuses or not statuses <= {"godkjent", "avvist"}:
        return None
    if statuses == {"godkjent"}:
        return "godkjent"
    if statuses == {"avvist"}:
        return "avvist"
    return "delvis_godkjent"


def _controlled(detail: BehandlerkravmeldingStatus) -> bool:
    return detail.kontrollstatus == "ferdig_kontrollert"


def _is_feil_i_melding(facts: ReceiptFacts) -> bool:
    if facts.state == "feil_i_melding":
        return True
    if facts.submit is not None and facts.submit.status == "feil_i_melding":
        return True
    return bool(facts.details) and facts.details[0].meldingsstatus == "feil_i_melding"


def _payment_word(facts: ReceiptFacts) -> str | None:
    if facts.state == "paid":
        return "utbetalt"
    if facts.state == "no_payment":
        return "ingen_utbetaling"
    for detail in reversed(facts.details):  # a rebehandling's payment is the newer news
        if detail.utbetalingsstatus in _PAYMENT_WORDS:
            return detail.utbetalingsstatus
    return None


# --------------------------------------------------------------------------- outcome line


_CONTROL_WORDS = frozenset({"kontrollert", "godkjent", "delvis_godkjent", "avvist", "sendt"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a file version's final (or control) state says, for one log line: the status
    word, the codes behind it (problem codes, KUHR feilmelding codes, merknad numbers) and
    the count of regninger per KUHR result."""

    status: str
    codes: tuple[str, ...]
    regninger: dict[str, int]

    def line(self, name: str) -> str:
        """`x.xml: kontrollert: 2 avvist, 1 godkjent (delvis godkjent; merknader 470, 766)`,
        `broken.xml: avvist lokalt: NOT_XML`."""
        if self.regninger:
            counts = ", ".join(f"{n} {word}" for word, n in sorted(self.regninger.items()))
            control = self.status in _CONTROL_WORDS
            head = "kontrollert" if control else status_label(self.status)
            extra = [status_label(self.status)] if control and self.status != "kontrollert" else []
            if self.codes:
                extra.append("merknader " + ", ".join(self.codes))
            text = f"{name}: {head}: {counts}"
            return text + (f" ({'; '.join(extra)})" if extra else "")
        text = f"{name}: {status_label(self.status)}"
        return text + (f": {', '.join(self.codes)}" if self.codes else "")

    def fields(self, name: str) -> dict[str, Any]:
        """The JSON log record's fields (`extra=`): file, state, codes, regninger."""
        out: dict[str, Any] = {"file": name, "state": self.status, "codes": list(self.codes)}
        if self.regninger:
            out["regninger"] = dict(self.regninger)
        return out


def outcome_of(facts: ReceiptFacts) -> Outcome:
    """The outcome of a file version, in the receipts' vocabulary."""
    status = str(overall_status(facts))
    codes: list[str] = []
    codes += sorted({p.code for p in facts.problems if p.is_error})
    codes += [f.kode for f in (facts.submit.feilmeldinger or [] if facts.submit else [])]
    regninger: dict[str, int] = {}
    if State(facts.state) in _AT_KUHR and control_result(facts) is not None:
        rows = kuhr_regninger(facts)
        for row in rows:
            regninger[row["status"]] = regninger.get(row["status"], 0) + 1
        numbers = {str(m["nummer"]) for r in rows for m in r["merknader"]}
        codes += sorted(numbers, key=lambda n: (len(n), n))
    return Outcome(status, tuple(dict.fromkeys(codes)), regninger)


# --------------------------------------------------------------------------- JSON receipt


def build_receipt(facts: ReceiptFacts) -> dict[str, Any]:
    """The JSON receipt as data (amounts stay Decimal; write it with `dump_json`)."""
    redact = Redactor(facts.claim)
    status = overall_status(facts)
    original = facts.details[0] if facts.details else None
    receipt: dict[str, Any] = {
        "versjon": RECEIPT_FORMAT_VERSION,
        "fil": str(facts.source),
        "sha256": facts.sha256,
        "storrelse": facts.size,
        "miljo": facts.environment,
    }
    warning = _environment_warning(facts.environment)
    if warning:
        receipt["advarsel"] = warning
    receipt |= {
        "status": status,
        "tilstand": facts.state,
        "kontrollresultat": control_result(facts),
        "behandlerkravmeldingId": _kuhr_id(facts),
        "praksisId": praksis_id_of(facts),
        "innsendingId": original.innsendingId if original else None,
        "meldingsstatus": _meldingsstatus(facts),
        "kontrollstatus": original.kontrollstatus if original else None,
        "utbetalingsstatus": original.utbetalingsstatus if original else None,
        "mottattidspunkt": _iso(original.mottattidspunkt) if original else None,
        "sumKravbelop": original.sumKravbelop if original else None,
        "sumUtbetaltbelop": original.sumUtbetaltbelop if original else None,
        "antallRegninger": original.antallRegninger if original else None,
        "regninger": _regninger(facts, redact),
        "merknader": _merknader(original.innsending.merknader, redact)
        if original and original.innsending
        else [],
        "feilmeldinger": [
            {"kode": f.kode, "melding": redact.local(f.melding)}
            for f in (facts.submit.feilmeldinger or [] if facts.submit else [])
        ],
        "problemer": [_problem(p, redact) for p in facts.problems],
        "forhandskontroll": [_finding(item, redact) for item in facts.precheck],
        "vedtak": _vedtak(original, redact) if original else None,
        "rebehandlinger": [_rebehandling(d, redact) for d in facts.details[1:]],
        "duplikatAv": facts.duplicate_of,
        "melding": facts.message or STATUS_SENTENCES[status],
        "avsender": _avsender(facts.envelope),
        "tidspunkter": {k: _iso(v) for k, v in facts.timestamps.items()},
    }
    return receipt


def _environment_warning(environment: str) -> str | None:
    return {"sandbox": SANDBOX_WARNING, "dev": DEV_WARNING}.get(environment)


def _kuhr_id(facts: ReceiptFacts) -> str | None:
    if facts.submit is not None and facts.submit.behandlerkravmeldingId:
        return facts.submit.behandlerkravmeldingId
    return facts.details[0].behandlerkravmeldingId if facts.details else None


def praksis_id_of(facts: ReceiptFacts) -> str | None:
    if facts.praksis_id:
        return facts.praksis_id
    if facts.claim is not None:
        return facts.claim.praksisId
    return facts.details[0].praksisId if facts.details else None


def _meldingsstatus(facts: ReceiptFacts) -> str | None:
    if facts.details:
        return facts.details[0].meldingsstatus
    return facts.submit.status if facts.submit is not None else None


def _regninger(facts: ReceiptFacts, redact: Redactor) -> list[dict[str, Any]]:
    """The claim's regninger (in the claim's order) with KUHR's latest result for each."""
    if facts.state in {"rejected", "duplicate", "skipped"}:
        unsent = "ikke_sendt"
    elif _is_feil_i_melding(facts):
        unsent = "avvist"
    else:
        unsent = "behandles"
    rows: dict[str, dict[str, Any]] = {}
    if facts.claim is not None:
        for regning in facts.claim.behandlerkrav.regninger:
            rows[regning.guid] = {
                "guid": regning.guid,
                "regningsnummer": regning.regningsnummer,
                "status": unsent,
                "merknader": [],
            }
    for row in kuhr_regninger(facts, redact):
        key = _match(rows, row)
        if key is None:
            rows[row["guid"] or f"#{row['regningsnummer']}"] = row
        else:
            rows[key] = {**rows[key], **{k: v for k, v in row.items() if v is not None}}
    return list(rows.values())


def kuhr_regninger(facts: ReceiptFacts, redact: Redactor | None = None) -> list[dict[str, Any]]:
    """KUHR's regning results, later (rebehandling) entries replacing earlier ones."""
    redact = redact or Redactor(facts.claim)
    rows: dict[str, dict[str, Any]] = {}
    for index, detail in enumerate(facts.details):
        if detail.innsending is None:
            continue
        for result in detail.innsending.regninger:
            row = _regning(result, redact)
            if index:
                row["rebehandlet"] = True
            key = _match(rows, row)
            rows[key or row["guid"] or f"#{row['regningsnummer']}"] = row
    return list(rows.values())


def _match(rows: dict[str, dict[str, Any]], row: dict[str, Any]) -> str | None:
    """The key of the row for the same regning: by guid, else by regningsnummer."""
    if row["guid"] and row["guid"] in rows:
        return row["guid"]
    if not row["regningsnummer"]:
        return None
    return next((k for k, r in rows.items() if r["regningsnummer"] == row["regningsnummer"]), None)


def _regning(result: RegningResultat, redact: Redactor) -> dict[str, Any]:
    return {
        "guid": result.guid,
        "regningsnummer": result.regningsnummer,
        "status": result.status,
        "merknader": _merknader(result.merknader, redact),
    }


def _merknader(merknader: Iterable[Merknad], redact: Redactor) -> list[dict[str, str]]:
    return [{"nummer": m.nummer, "tekst": redact.kuhr(m.tekst)} for m in merknader]


def _problem(problem: Problem, redact: Redactor) -> dict[str, object]:
    """`melding`: the Norwegian staff sentence; `detalj`: the technical text (redacted), left
    out where it is operator advice for the log (bridge.core.problems.OPERATOR_DETAIL)."""
    out = problem.as_dict()
    if problem.code == "RECEIPT_PATH_TAKEN":
        out["melding"] = redact.problem(problem)
    elif "detalj" in out:
        out["detalj"] = redact.problem(problem)
    return out


def _finding(item: dict[str, Any], redact: Redactor) -> dict[str, Any]:
    """A pre-control finding, with the staff sentence for its code as `veiledning`."""
    out = redact.data(item)
    code = item.get("kode")
    if isinstance(code, str) and code in STAFF_TEXT:
        out["veiledning"] = STAFF_TEXT[code]
    return out


def _vedtak(detail: BehandlerkravmeldingStatus, redact: Redactor) -> dict[str, Any] | None:
    """vedtakId, utbetaling and merknader once KUHR has said anything about them."""
    vedtak = detail.vedtak
    utbetaling = vedtak.utbetaling if vedtak else None
    payment = None
    if utbetaling is not None and any(
        v is not None
        for v in (utbetaling.belop, utbetaling.utbetaltdato, utbetaling.kontonr, utbetaling.kid)
    ):
        payment = {
            "belop": utbetaling.belop,
            "utbetaltdato": _iso(utbetaling.utbetaltdato),
            "kontonr": utbetaling.kontonr,
            "kid": utbetaling.kid,
        }
    merknader = _merknader(vedtak.merknader, redact) if vedtak else []
    if detail.vedtakId is None and payment is None and not merknader:
        return None
    return {"vedtakId": detail.vedtakId, "utbetaling": payment, "merknader": merknader}


def _rebehandling(detail: BehandlerkravmeldingStatus, redact: Redactor) -> dict[str, Any]:
    innsending = detail.innsending
    return {
        "innsendingId": detail.innsendingId,
        "meldingsstatus": detail.meldingsstatus,
        "kontrollstatus": detail.kontrollstatus,
        "utbetalingsstatus": detail.utbetalingsstatus,
        "mottattidspunkt": _iso(detail.mottattidspunkt),
        "sumKravbelop": detail.sumKravbelop,
        "sumUtbetaltbelop": detail.sumUtbetaltbelop,
        "regninger": [_regning(r, redact) for r in innsending.regninger] if innsending else [],
        "merknader": _merknader(innsending.merknader, redact) if innsending else [],
        "vedtak": _vedtak(detail, redact),
    }


def _avsender(envelope: Envelope | None) -> dict[str, str | None] | None:
    if envelope is None:
        return None
    return {
        "navn": envelope.sender_name,
        "orgnr": envelope.sender_orgnr,
        "herId": envelope.sender_her,
        "hprNr": envelope.sender_hpr,
        "msgId": envelope.msg_id,
        "genDate": envelope.gen_date,
        "konvolutt": envelope.kind,
    }


def _iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return value.isoformat()


# --------------------------------------------------------------------------- redaction


# Shaped like a fødselsnummer or D-nummer (11 digits, "DDMMYY NNNNN" too). Not 10: that is
# the length of a praksisId, which messages must keep.
_PERSON_NUMBER = re.compile(r"(?<![\w-])\d{6} ?\d{5}(?![\w-])")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_PATIENT_WORDS = re.compile(r"patient|pasient", re.I)


class Redactor:
    """Keeps patient data out of the free texts a receipt repeats."""

    def __init__(self, claim: Behandlerkravmelding | None) -> None:
        values: set[str] = set()
        for regning in claim.behandlerkrav.regninger if claim else []:
            pasient = regning.pasient
            if pasient is None:
                continue
            if pasient.identifikasjon is not None:
                values.add(pasient.identifikasjon.id)
            if pasient.fodselsdato is not None:
                values.add(pasient.fodselsdato.isoformat())
            values.update(n for n in (pasient.fornavn, pasient.etternavn) if n)
            if pasient.eea is not None:
                values.update(v for v in (pasient.eea.cardId, pasient.eea.id) if v)
        self._words = sorted(
            (v.strip() for v in values if len(v.strip()) >= 2), key=len, reverse=True
        )
        # What ASCII text must contain for a word to be in it: most texts are ASCII and name
        # nobody, and are passed by a substring test instead of a regular expression.
        self._ascii_words = tuple(f for w in self._words if (f := ascii_folded(w)) is not None)
        self._known: re.Pattern[str] | None = None  # compiled on first use: most receipts
        # (sendt, mottatt, godkjent) have no free text to scrub

    def kuhr(self, text: str) -> str:
        """KUHR's control texts: only the claim's own patient values are hidden."""
        if not self._words or not text or not Mentions(text).any(self._ascii_words):
            return text
        if self._known is None:
            alternatives = (rf"(?<!\w){re.escape(w)}(?!\w)" for w in self._words)
            self._known = re.compile("|".join(alternatives), re.I)
        return self._known.sub(REDACTED, text)

    def local(self, text: str) -> str:
        """Texts of technical checks, which may echo a value: also hide person numbers."""
        return _PERSON_NUMBER.sub(REDACTED, self.kuhr(text))

    def problem(self, problem: Problem) -> str:
        text = self.local(problem.message)
        if _PATIENT_WORDS.search(problem.path or "") or _PATIENT_WORDS.search(text):
            text = _QUOTED.sub(f"'{REDACTED}'", text)  # the value of a patient field
        return text

    def data(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.local(value)
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


# --------------------------------------------------------------------------- AppRec


# --------------------------------------------------------------------------- files
