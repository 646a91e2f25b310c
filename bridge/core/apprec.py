"""The AppRec 1.0 receipt (`NAME.apprec.xml`): Helfo's answer in the form an EPJ that already
reads AppRecs understands, following NAV's own AppRec conventions: Status 1 OK; 3 "OK, feil i
delmelding" once KUHR has controlled the claim and rejected regninger, with one Error per
rejected regning and `OT` = its RegningNr; 2 Avvist when the message as a whole was refused
(locally, by KUHR's technical control, or as a duplicate), one Error per problem. Every `DN`
is Norwegian and says what to do. Built from the same `ReceiptFacts` as the JSON receipt;
pure."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lxml import etree

from bridge import __version__
from bridge.core.legacy.namespaces import APPREC_NS
from bridge.core.receipts import (
    DEV_WARNING,
    SANDBOX_WARNING,
    ReceiptFacts,
    Redactor,
    control_result,
    kuhr_regninger,
    overall_status,
    praksis_id_of,
)
from bridge.core.timezone import OSLO

APPREC_MIG_VERSION = "v1.0 2004-11-21"


HELFO_ORGNR = "986965610"


# KITH code systems for AppRec errors: 8221 holds the general codes (E10, T01, T02, X99 …),
# 8222 the message-specific ones whose values the receiving service defines. KUHR's merknad
# numbers, its feilmelding codes and the bridge's problem codes are specific to the BKM, so
# every Error names 8222 and says in OT where its code comes from (docs/receipts.md).
ERROR_CODE_SYSTEM = "2.16.578.1.12.4.1.1.8222"


DUPLICATE_ERROR_CODE = "DUPLIKAT_FIL"
REJECTED_REGNING_CODE = "AVVIST"  # V of a rejected regning's Error when KUHR gave no merknad


# Namespace of the UUIDs derived from a file's sha256 (AppRec Id, OriginalMsgId of bare files).
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:bkm-bridge:receipts")


_APPREC_STATUS = {"1": "OK", "2": "Avvist", "3": "OK, feil i delmelding"}


@dataclass(frozen=True, slots=True)
class AppRecError:
    code: str
    text: str
    origin: str  # OT: where the code comes from


def apprec_status(facts: ReceiptFacts) -> str | None:
    """AppRec Status: 1 OK, 2 Avvist, 3 OK – feil i delmelding; None while not final."""
    status = overall_status(facts)
    if status in {"avvist_lokalt", "feil_i_melding", "duplikat"}:
        return "2"
    control = control_result(facts)
    if control == "godkjent":
        return "1"
    if control in {"delvis_godkjent", "avvist"}:
        return "3"  # the message was taken; regninger in it were rejected (NAV's convention)
    return None


def build_apprec(facts: ReceiptFacts, *, now: datetime) -> bytes | None:
    """AppRec 1.0 bytes (UTF-8, with declaration), or None while there is no final answer."""
    status = apprec_status(facts)
    if status is None:
        return None
    errors = list(_apprec_errors(facts, Redactor(facts.claim)))
    sandbox = facts.environment == "sandbox"
    warning = {"sandbox": SANDBOX_WARNING, "dev": DEV_WARNING}.get(facts.environment)

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
        DN=f"{status_text} ({warning})" if warning else status_text,
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


def _apprec_errors(facts: ReceiptFacts, redact: Redactor) -> Iterator[AppRecError]:
    for problem in facts.problems:
        origin = "bkm-bridge lokal kontroll" + ("" if problem.is_error else " (advarsel)")
        where = f" (linje {problem.line})" if problem.line else ""
        yield AppRecError(problem.code, problem.staff_text + where, origin)
    if facts.state == "duplicate":
        where = f" ({Path(facts.duplicate_of).name})" if facts.duplicate_of else ""
        text = (
            f"Det samme kravet er allerede sendt fra en annen fil{where}, så det er ikke sendt "
            "en gang til. Du trenger ikke gjøre noe."
        )
        yield AppRecError(DUPLICATE_ERROR_CODE, text, "bkm-bridge duplikatkontroll")
    for feil in facts.submit.feilmeldinger or [] if facts.submit else []:
        text = f"Helfo avviste meldingen: {redact.local(feil.melding).rstrip('.')}. {_RESEND}"
        yield AppRecError(feil.kode, text, "KUHR feilmelding")
    yield from _rejected_regninger(facts, redact)
    for index, detail in enumerate(facts.details):
        prefix = f"Rebehandling {index}: " if index else ""
        innsending = detail.innsending
        for m in innsending.merknader if innsending else []:
            yield AppRecError(m.nummer, prefix + redact.kuhr(m.tekst), "KUHR merknad (innsending)")
        for m in detail.vedtak.merknader if detail.vedtak else []:
            yield AppRecError(m.nummer, prefix + redact.kuhr(m.tekst), "KUHR merknad (vedtak)")


_RESEND = "Rett dette i journalsystemet og send kravet på nytt."


def _rejected_regninger(facts: ReceiptFacts, redact: Redactor) -> Iterator[AppRecError]:
    """One Error per regning KUHR rejected (its latest result, a rebehandling's included):
    V = its first merknad, DN = every merknad and what to do, OT = its RegningNr."""
    for row in kuhr_regninger(facts, redact):
        if row["status"] != "avvist":
            continue
        number = row["regningsnummer"] or "?"
        merknader = row["merknader"]
        reasons = "; ".join(f"merknad {m['nummer']}: {m['tekst'].rstrip('. ')}" for m in merknader)
        text = "Rebehandling: " if row.get("rebehandlet") else ""
        text += f"Regning {number} er avvist av Helfo" + (f" ({reasons})" if reasons else "")
        text += ". Rett regningen i journalsystemet og send den på nytt."
        code = str(merknader[0]["nummer"]) if merknader else REJECTED_REGNING_CODE
        yield AppRecError(code, text, str(number))


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
        praksis = praksis_id_of(facts)
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
        moment = moment.astimezone(OSLO)
    return moment.replace(tzinfo=None, microsecond=0).isoformat()


def _q(tag: str) -> str:
    return f"{{{APPREC_NS}}}{tag}"


def _sub(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, _q(tag), attrs)
