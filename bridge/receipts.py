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
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lxml import etree

from bridge import __version__
from bridge.fsutil import atomic_write
from bridge.legacy.read import Envelope
from bridge.model import (
    Behandlerkravmelding,
    BehandlerkravmeldingStatus,
    Merknad,
    RegningResultat,
    SendInnResponse,
    dump_json,
)
from bridge.problems import Problem
from bridge.redaction import Mentions, ascii_folded

RECEIPT_FORMAT_VERSION = 1
JSON_SUFFIX = ".kvittering.json"
APPREC_SUFFIX = ".apprec.xml"
SANDBOX_WARNING = "SANDBOX – ikke sendt til Helfo"
DEV_WARNING = "TESTMILJØ (dev) – ikke et ekte krav til Helfo"
REDACTED = "[skjult]"

APPREC_NS = "http://www.kith.no/xmlstds/apprec/2004-11-21"
APPREC_MIG_VERSION = "v1.0 2004-11-21"
HELFO_ORGNR = "986965610"
# KITH code systems for AppRec errors: 8221 holds the general codes (E10, T01, T02, X99 …),
# 8222 the message-specific ones whose values the receiving service defines. KUHR's merknad
# numbers, its feilmelding codes and the bridge's problem codes are specific to the BKM, so
# every Error names 8222 and says in OT where its code comes from (docs/receipts.md).
ERROR_CODE_SYSTEM = "2.16.578.1.12.4.1.1.8222"
DUPLICATE_ERROR_CODE = "DUPLIKAT_FIL"
# Namespace of the UUIDs derived from a file's sha256 (AppRec Id, OriginalMsgId of bare files).
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:bkm-bridge:receipts")
_OSLO = ZoneInfo("Europe/Oslo")

STATES = frozenset(
    {
        "seen",
        "rejected",
        "converted",
        "submitting",
        "submitted",
        "feil_i_melding",
        "controlled",
        "paid",
        "no_payment",
        "duplicate",
        "skipped",
        "failed",
    }
)
ENVIRONMENTS = frozenset({"sandbox", "dev", "prod"})
_WAITING_STATES = frozenset({"seen", "converted", "submitting"})

# The overall `status` words, and the sentence a receipt carries when the caller gives none.
STATUS_SENTENCES: dict[str, str] = {
    "venter": "The file is queued or being sent to KUHR; nothing to do yet.",
    "sendt": "KUHR has received the claim; the control result is not ready yet.",
    "feilet_midlertidig": (
        "Sending or following the claim failed for a transient reason; the bridge will retry."
    ),
    "avvist_lokalt": (
        "The file was not sent: fix the problems listed under problemer and save the file again."
    ),
    "feil_i_melding": (
        "KUHR refused the message (see feilmeldinger); nothing was processed. Fix and resend."
    ),
    "duplikat": "The same content was already taken from another file; it was not sent again.",
    "godkjent": "All regninger were approved.",
    "delvis_godkjent": (
        "Some regninger were rejected (see their merknader); the others were approved."
    ),
    "avvist": "All regninger were rejected (see their merknader).",
    "sendt_til_utbetaling": "The approved regninger are part of a vedtak and sent for payment.",
    "utbetalt": "The payment has been made (see vedtak).",
    "ingen_utbetaling": "KUHR decided that no payment will be made (see vedtak).",
    "ignorert": "The file is not a behandlerkravmelding and was ignored.",
}

# KUHR's utbetalingsstatus values that are also overall status words.
_PAYMENT_WORDS = frozenset({"sendt_til_utbetaling", "utbetalt", "ingen_utbetaling"})
_APPREC_STATUS = {"1": "OK", "2": "Avvist", "3": "OK, feil i delmelding"}


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
    """One word a person or a script can switch on (the list is in STATUS_SENTENCES)."""
    state = facts.state
    if state == "skipped":
        return "ignorert"
    if state == "duplicate":
        return "duplikat"
    if state == "rejected":
        return "avvist_lokalt"
    if _is_feil_i_melding(facts):
        return "feil_i_melding"
    if state == "failed":
        return "feilet_midlertidig"
    if state in _WAITING_STATES:
        return "venter"
    control = control_result(facts)
    if control == "avvist":
        return "avvist"
    payment = _payment_word(facts)
    return payment or control or "sendt"


def control_result(facts: ReceiptFacts) -> str | None:
    """godkjent | delvis_godkjent | avvist once KUHR's control has judged every regning."""
    if not facts.details or not any(_controlled(d) for d in facts.details):
        return None
    statuses = {r["status"] for r in _kuhr_regninger(facts)}
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


# --------------------------------------------------------------------------- JSON receipt


def build_receipt(facts: ReceiptFacts) -> dict[str, Any]:
    """The JSON receipt as data (amounts stay Decimal; write it with `dump_json`)."""
    redact = _Redactor(facts.claim)
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
        "praksisId": _praksis_id(facts),
        "innsendingId": original.innsendingId if original else None,
        "meldingsstatus": _meldingsstatus(facts),
        "kontrollstatus": original.kontrollstatus if original else None,
        "utbetalingsstatus": original.utbetalingsstatus if original else None,
        "mottattidspunkt": _iso(original.mottattidspunkt) if original else None,
        "sumKravbelop": original.sumKravbelop if original else None,
        "sumUtbetaltbelop": original.sumUtbetaltbelop if original else None,
        "regninger": _regninger(facts, redact),
        "merknader": _merknader(original.innsending.merknader, redact)
        if original and original.innsending
        else [],
        "feilmeldinger": [
            {"kode": f.kode, "melding": redact.local(f.melding)}
            for f in (facts.submit.feilmeldinger or [] if facts.submit else [])
        ],
        "problemer": [_problem(p, redact) for p in facts.problems],
        "forhandskontroll": [redact.data(item) for item in facts.precheck],
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


def _praksis_id(facts: ReceiptFacts) -> str | None:
    if facts.praksis_id:
        return facts.praksis_id
    if facts.claim is not None:
        return facts.claim.praksisId
    return facts.details[0].praksisId if facts.details else None


def _meldingsstatus(facts: ReceiptFacts) -> str | None:
    if facts.details:
        return facts.details[0].meldingsstatus
    return facts.submit.status if facts.submit is not None else None


def _regninger(facts: ReceiptFacts, redact: _Redactor) -> list[dict[str, Any]]:
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
    for row in _kuhr_regninger(facts, redact):
        key = _match(rows, row)
        if key is None:
            rows[row["guid"] or f"#{row['regningsnummer']}"] = row
        else:
            rows[key] = {**rows[key], **{k: v for k, v in row.items() if v is not None}}
    return list(rows.values())


def _kuhr_regninger(facts: ReceiptFacts, redact: _Redactor | None = None) -> list[dict[str, Any]]:
    """KUHR's regning results, later (rebehandling) entries replacing earlier ones."""
    redact = redact or _Redactor(facts.claim)
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


def _regning(result: RegningResultat, redact: _Redactor) -> dict[str, Any]:
    return {
        "guid": result.guid,
        "regningsnummer": result.regningsnummer,
        "status": result.status,
        "merknader": _merknader(result.merknader, redact),
    }


def _merknader(merknader: Iterable[Merknad], redact: _Redactor) -> list[dict[str, str]]:
    return [{"nummer": m.nummer, "tekst": redact.kuhr(m.tekst)} for m in merknader]


def _problem(problem: Problem, redact: _Redactor) -> dict[str, object]:
    out = problem.as_dict()
    out["melding"] = redact.problem(problem)
    return out


def _vedtak(detail: BehandlerkravmeldingStatus, redact: _Redactor) -> dict[str, Any] | None:
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


def _rebehandling(detail: BehandlerkravmeldingStatus, redact: _Redactor) -> dict[str, Any]:
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


class _Redactor:
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


@dataclass(frozen=True, slots=True)
class AppRecError:
    code: str
    text: str
    origin: str  # OT: where the code comes from


def apprec_status(facts: ReceiptFacts) -> str | None:
    """AppRec Status: 1 OK, 2 Avvist, 3 OK – feil i delmelding; None while not final."""
    status = overall_status(facts)
    if status in {"avvist_lokalt", "feil_i_melding", "duplikat", "avvist"}:
        return "2"
    control = control_result(facts)
    if control == "godkjent":
        return "1"
    if control == "delvis_godkjent":
        return "3"
    return None


def build_apprec(facts: ReceiptFacts, *, now: datetime) -> bytes | None:
    """AppRec 1.0 bytes (UTF-8, with declaration), or None while there is no final answer."""
    status = apprec_status(facts)
    if status is None:
        return None
    errors = list(_apprec_errors(facts, _Redactor(facts.claim)))
    sandbox = facts.environment == "sandbox"

    root = etree.Element(_q("AppRec"), nsmap={None: APPREC_NS})
    _sub(root, "MsgType", V="APPREC", DN="Applikasjonskvittering")
    _sub(root, "MIGversion").text = APPREC_MIG_VERSION
    _sub(root, "SoftwareName").text = "bkm-bridge"
    _sub(root, "SoftwareVersion").text = __version__
    _sub(root, "GenDate").text = _local_datetime(now)
    _sub(root, "Id").text = apprec_id(facts.sha256, status, errors, environment=facts.environment)
    _party(root, "Sender", *_sender(facts, sandbox))
    _party(root, "Receiver", *_receiver(facts))
    status_text = _APPREC_STATUS[status]
    _sub(
        root,
        "Status",
        V=status,
        DN=f"{status_text} ({SANDBOX_WARNING})" if sandbox else status_text,
    )
    for error in errors:
        _sub(root, "Error", V=error.code, S=ERROR_CODE_SYSTEM, DN=error.text, OT=error.origin)
    original = _sub(root, "OriginalMsgId")
    _sub(original, "MsgType", V="BKM", DN="Behandlerkravmelding")
    _sub(original, "IssueDate").text = _issue_date(facts, now)
    _sub(original, "Id").text = original_msg_id(facts)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def apprec_id(
    sha256: str, status: str, errors: Iterable[AppRecError], *, environment: str = "prod"
) -> str:
    """The same file and the same outcome give the same Id (so a rewrite is recognisable)."""
    parts = [sha256, environment, status, *(f"{e.code}\x1f{e.text}" for e in errors)]
    outcome = "|".join(parts)
    return str(uuid.uuid5(_ID_NAMESPACE, outcome))


def original_msg_id(facts: ReceiptFacts) -> str:
    """The MsgHead MsgId; a bare BehandlerKrav has none, so one is derived from its sha256."""
    if facts.envelope is not None and facts.envelope.msg_id:
        return facts.envelope.msg_id
    return str(uuid.uuid5(_ID_NAMESPACE, "sha256:" + facts.sha256))


def _apprec_errors(facts: ReceiptFacts, redact: _Redactor) -> Iterator[AppRecError]:
    for problem in facts.problems:
        origin = "bkm-bridge lokal kontroll" + ("" if problem.is_error else " (advarsel)")
        yield AppRecError(problem.code, redact.problem(problem), origin)
    if facts.state == "duplicate":
        text = "The same content was already taken from another file and is not sent again"
        where = f": {Path(facts.duplicate_of).name}" if facts.duplicate_of else ""
        yield AppRecError(DUPLICATE_ERROR_CODE, text + where + ".", "bkm-bridge duplikatkontroll")
    for feil in facts.submit.feilmeldinger or [] if facts.submit else []:
        yield AppRecError(feil.kode, redact.local(feil.melding), "KUHR feilmelding")
    for index, detail in enumerate(facts.details):
        prefix = f"Rebehandling {index}: " if index else ""
        innsending = detail.innsending
        for regning in innsending.regninger if innsending else []:
            for m in regning.merknader:
                text = f"{prefix}Regning {regning.regningsnummer}: {redact.kuhr(m.tekst)}"
                yield AppRecError(m.nummer, text, "KUHR merknad (regning)")
        for m in innsending.merknader if innsending else []:
            yield AppRecError(m.nummer, prefix + redact.kuhr(m.tekst), "KUHR merknad (innsending)")
        for m in detail.vedtak.merknader if detail.vedtak else []:
            yield AppRecError(m.nummer, prefix + redact.kuhr(m.tekst), "KUHR merknad (vedtak)")


def _sender(facts: ReceiptFacts, sandbox: bool) -> tuple[str, str, str, list[tuple[str, str]]]:
    helfo = (facts.envelope.receiver_orgnr if facts.envelope else None) or HELFO_ORGNR
    if sandbox:
        name = f"bkm-bridge {SANDBOX_WARNING}"
    elif facts.state in {"rejected", "duplicate"}:
        name = "bkm-bridge for Helfo (lokal kontroll, ikke sendt til Helfo)"
    else:
        name = "Helfo (svar fra KUHR Krav API, formidlet av bkm-bridge)"
    return name, helfo, "ENH", []


def _receiver(facts: ReceiptFacts) -> tuple[str, str, str, list[tuple[str, str]]]:
    env = facts.envelope
    name = (env.sender_name if env else None) or "Avsender ikke oppgitt i filen"
    ids = [
        (value, kind)
        for value, kind in (
            (env.sender_orgnr if env else None, "ENH"),
            (env.sender_her if env else None, "HER"),
            (env.sender_hpr if env else None, "HPR"),
        )
        if value
    ]
    if not ids:
        praksis = _praksis_id(facts)
        ids = [(praksis, "KUHR-PRAKSIS")] if praksis else [("ukjent", "UKJENT")]
    (main_id, main_type), *extra = ids
    return name, main_id, main_type, extra


_ID_TYPE_NAMES = {
    "ENH": "Organisasjonsnummeret i Enhetsregisteret",
    "HER": "HER-id",
    "HPR": "HPR-nummer",
    "KUHR-PRAKSIS": "praksisId i KUHR (avsender ikke oppgitt i filen)",
    "UKJENT": "Avsender ikke oppgitt i filen",
}


def _party(
    root: etree._Element,
    tag: str,
    name: str,
    ident: str,
    id_type: str,
    extra: list[tuple[str, str]],
) -> None:
    inst = _sub(_sub(_sub(root, tag), "HCP"), "Inst")
    _sub(inst, "Name").text = name
    _sub(inst, "Id").text = ident
    _sub(inst, "TypeId", V=id_type, DN=_ID_TYPE_NAMES[id_type])
    for value, kind in extra:
        additional = _sub(inst, "AdditionalId")
        _sub(additional, "Id").text = value
        _sub(additional, "Type", V=kind, DN=_ID_TYPE_NAMES[kind])


_XS_DATETIME = re.compile(r"^-?\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")


def _issue_date(facts: ReceiptFacts, now: datetime) -> str:
    """The MsgHead GenDate as written; else when the bridge first saw the file."""
    gen_date = facts.envelope.gen_date if facts.envelope else None
    if gen_date and _XS_DATETIME.match(gen_date):
        return gen_date
    return _local_datetime(facts.timestamps.get("seen", now))


def _local_datetime(moment: datetime) -> str:
    """Norwegian wall-clock time without offset, as KITH messages (and old EPJs) write it."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(_OSLO)
    return moment.replace(tzinfo=None, microsecond=0).isoformat()


def _q(tag: str) -> str:
    return f"{{{APPREC_NS}}}{tag}"


def _sub(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, _q(tag), attrs)


# --------------------------------------------------------------------------- files


def receipt_paths(
    source: Path, receipts_dir: Path | None = None, root: Path | None = None
) -> tuple[Path, Path]:
    """(JSON receipt, AppRec) for `source`: beside it, or under `receipts_dir` mirroring the
    folders below `root` (flat in `receipts_dir` when no root is given)."""
    folder = source.parent
    if receipts_dir is not None:
        folder = receipts_dir
        if root is not None:
            try:
                relative = source.parent.resolve().relative_to(root.resolve())
            except ValueError:
                raise ValueError(f"{source} is not inside {root}") from None
            folder = receipts_dir / relative
    stem = source.stem if source.suffix else source.name
    return folder / (source.name + JSON_SUFFIX), folder / (stem + APPREC_SUFFIX)


def is_receipt_name(name: str) -> bool:
    """True for the bridge's receipt files and their temp files while being written."""
    lowered = name.lower()
    if lowered.startswith(".") and lowered.endswith(".tmp"):
        lowered = lowered[1:].rpartition(".")[0].rpartition(".")[0]
    return lowered.endswith(JSON_SUFFIX) or lowered.endswith(APPREC_SUFFIX)


class AppRecInvalidError(Exception):
    """The AppRec the bridge built does not validate: a bug, never the clinic's fault."""


def write_receipts(
    facts: ReceiptFacts,
    *,
    receipts_dir: Path | None = None,
    root: Path | None = None,
    now: datetime | None = None,
) -> list[Path]:
    """Write (atomically) what changed; returns the paths written.

    The JSON receipt is rewritten whenever its content changes. The AppRec is written once
    there is a final answer and rewritten only when the outcome (its Id) changes, so an EPJ
    that imports AppRecs sees each outcome once. While a version has no final answer, an AppRec
    left beside the file belongs to an earlier version of it and is removed.
    """
    now = now or datetime.now(_OSLO)
    json_path, apprec_path = receipt_paths(facts.source, receipts_dir, root)
    written: list[Path] = []
    data = (dump_json(build_receipt(facts)) + "\n").encode("utf-8")
    if _read_bytes(json_path) != data:
        atomic_write(json_path, data)
        written.append(json_path)
    apprec = build_apprec(facts, now=now)
    if apprec is None:
        apprec_path.unlink(missing_ok=True)
        return written
    _validate_apprec(apprec)
    if _apprec_id(_read_bytes(apprec_path)) != _apprec_id(apprec):
        atomic_write(apprec_path, apprec)
        written.append(apprec_path)
    return written


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _safe_parser() -> etree.XMLParser:
    # A new parser per call: lxml parsers are not thread-safe and receipts are written from
    # worker threads. Only the bridge's own AppRecs are parsed here.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _apprec_id(data: bytes | None) -> str | None:
    if not data:
        return None
    try:
        root = etree.fromstring(data, _safe_parser())
    except etree.XMLSyntaxError:
        return None
    return root.findtext(_q("Id"))


def _validate_apprec(data: bytes) -> None:
    from bridge.legacy.schemas import default_registry

    element = etree.fromstring(data, _safe_parser())
    problems = default_registry().validate(element)
    if problems:
        codes = "; ".join(f"{p.code} line {p.line}: {p.message}" for p in problems)
        raise AppRecInvalidError(f"the AppRec does not validate against its XSD: {codes}")
