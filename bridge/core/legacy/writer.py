"""Write a claim model back as the legacy BKM XML an old EPJ would have written.

The inverse of the mapping (`mappings/`): what the bridge reads, this writes, so tests and
benchmarks can make realistic legacy files from models. Element names, nesting and order follow
the KITH 2006 description and `alle-felter.xml`; values are written the way old EPJs write them
(`DatoTid` as Europe/Oslo wall-clock time without offset, amounts as plain decimals).

Built from string pieces rather than a tree, because it makes the benchmark corpora (target
≥ 5,000 single-regning files/s; `bench/bench_convert.py` prints the figure). A field the XML has
no place for raises `ValueError` naming it, rather than being dropped without a word.

Envelopes:
- ``msghead``: a MsgHead (v1.2 2006-05-24) with the BehandlerKrav in ``Document/RefDoc/Content``.
- ``bare``: the ``BehandlerKrav`` element is the root.
- ``base64``: a bare root ``<Base64Container xmlns="…msghead/2006-05-24">`` whose text is the
  base64 of the whole MsgHead document (in the chosen encoding/BOM), wrapped at 76 columns when
  ``pretty``. The container document itself is always UTF-8. This is the form transport logs
  keep; the same element may also sit inside an outer MsgHead's ``RefDoc/Content``.
"""

from __future__ import annotations

import base64
import codecs
import functools
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from bridge.core.legacy.namespaces import BKM_NS, MSGHEAD_NS
from bridge.core.model import Behandlerkrav, Diagnose, Identifikasjon, Regning
from bridge.core.timezone import OSLO

MIG_VERSION = "v1.2 2006-05-24"
HELFO_NAME = "Helfo"
HELFO_ORGNR = "986965610"


Envelope = Literal["msghead", "bare", "base64"]
Layout = Literal["refusjon", "sumkrav"]
GuidTag = Literal["GUID", "Guid"]

# Code systems (KITH OIDs) and display names written on identifier types.
_PERSON_ID_SYSTEM = "2.16.578.1.12.4.1.1.8116"
_ORG_ID_SYSTEM = "2.16.578.1.12.4.1.1.9051"
_PERSON_ID_NAMES = {
    "FNR": "Fødselsnummer",
    "DNR": "D-nummer",
    "HNR": "H-nummer",
    "HPR": "HPR-nummer",
    "HER": "HER-id",
    "PNR": "Passnummer",
    "DUF": "DUF-nummer",
}
_SEX_NAMES = {"1": "Mann", "2": "Kvinne", "9": "Ikke spesifisert"}
_ORG_ID_NAMES = {"ENH": "Organisasjonsnummeret i Enhetsregisteret", "HER": "HER-id"}

_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\n": "&#10;", "\r": "&#13;",
     "\t": "&#9;"}
)  # fmt: skip
# Characters XML 1.0 cannot hold at all, not even as character references.
_NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

_BOMS = {
    "utf-8": codecs.BOM_UTF8,
    "utf-16": codecs.BOM_UTF16_LE,
    "utf-16-le": codecs.BOM_UTF16_LE,
    "utf-16-be": codecs.BOM_UTF16_BE,
}
_SIMPLE_TEXT = re.compile(r"[^&<>\r]*\Z")


@dataclass(frozen=True)
class Sender:
    """The sender facts written in MsgHead/MsgInfo/Sender/Organisation."""

    name: str = "Kurbadet Helsesenter"
    orgnr: str | None = "999999999"
    her_id: str | None = None
    hpr: str | None = None  # HealthcareProfessional/Ident with TypeId HPR


def _text(value: str) -> str:
    if _SIMPLE_TEXT.match(value):
        return value
    return value.translate(_TEXT_ESCAPES)


def _attr(value: str) -> str:
    return value.translate(_ATTR_ESCAPES)


def _amount(value: Decimal) -> str:
    return format(value, "f")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _datetime(value: datetime, local_time: bool) -> str:
    """Oslo wall-clock time without offset (as old EPJs write it), or ISO with offset."""
    if value.tzinfo is None:
        return value.isoformat(timespec="seconds")
    if local_time:
        return value.astimezone(OSLO).replace(tzinfo=None).isoformat(timespec="seconds")
    return value.isoformat(timespec="seconds")


def _date(value: date) -> str:
    return value.isoformat()


class _Xml:
    """Appends indented markup to a list of string pieces."""

    __slots__ = ("indent", "newline", "parts")

    def __init__(self, pretty: bool) -> None:
        self.parts: list[str] = []
        self.newline = "\n" if pretty else ""
        self.indent = [" " * (2 * d) for d in range(16)] if pretty else [""] * 16

    def leaf(self, depth: int, tag: str, text: str) -> None:
        self.parts.append(f"{self.indent[depth]}<{tag}>{_text(text)}</{tag}>{self.newline}")

    def empty(self, depth: int, tag: str, attrs: str) -> None:
        self.parts.append(f"{self.indent[depth]}<{tag}{attrs}/>{self.newline}")

    def start(self, depth: int, tag: str, attrs: str = "") -> None:
        self.parts.append(f"{self.indent[depth]}<{tag}{attrs}>{self.newline}")

    def end(self, depth: int, tag: str) -> None:
        self.parts.append(f"{self.indent[depth]}</{tag}>{self.newline}")


def _cs(value: str, display: str | None = None) -> str:
    """Attributes of a KITH CS value."""
    return f' V="{_attr(value)}"' + (f' DN="{_attr(display)}"' if display else "")


def _mo(value: Decimal) -> str:
    return f' V="{_amount(value)}" U="NOK"'


def _ident(
    out: _Xml, depth: int, tag: str, ident_id: str, ident_type: str | None, names: dict[str, str]
) -> None:
    """An Ident (Id + TypeId CV). The schema requires TypeId: a missing type is written as an
    empty `<TypeId/>`, which maps back to no type."""
    out.start(depth, tag)
    out.leaf(depth + 1, "Id", ident_id)
    if ident_type is None:
        out.empty(depth + 1, "TypeId", "")
    else:
        system = _ORG_ID_SYSTEM if names is _ORG_ID_NAMES else _PERSON_ID_SYSTEM
        display = names.get(ident_type)
        attrs = f' V="{_attr(ident_type)}" S="{system}"'
        if display:
            attrs += f' DN="{_attr(display)}"'
        out.empty(depth + 1, "TypeId", attrs)
    out.end(depth, tag)


def _diagnose(out: _Xml, depth: int, tag: str, diagnose: Diagnose) -> None:
    attrs = f' V="{_attr(diagnose.kode)}"'
    if diagnose.kodeverk is not None:
        attrs += f' S="{_attr(diagnose.kodeverk)}"'
    out.empty(depth, tag, attrs)


def _refuse_unwritable(regning: Regning, where: str) -> None:
    """Raise for fields the XML has no place for (empty lists lose nothing and pass)."""
    unwritable = {
        "debitor": regning.debitor,
        "rekvirent": regning.rekvirent,
        "nlkkoder": regning.nlkkoder,
        "norpatkoder": regning.norpatkoder,
        "ncrpkoder": regning.ncrpkoder,
        "pasient.eea": regning.pasient.eea if regning.pasient else None,
        "utforendeBehandler.identifikasjon": (
            regning.utforendeBehandler.identifikasjon if regning.utforendeBehandler else None
        ),
        "henvisning.henvistFra.type": (
            regning.henvisning.henvistFra.type
            if regning.henvisning and regning.henvisning.henvistFra
            else None
        ),
    }
    for name, value in unwritable.items():
        if value is not None and value != []:
            raise ValueError(f"{where}.{name} has no place in the legacy BKM XML")
    for index, kode in enumerate(regning.prosedyrekoder or ()):
        if kode.belop is not None:
            raise ValueError(
                f"{where}.prosedyrekoder[{index}].belop has no place in the legacy BKM XML"
            )


def _relatert_behandler(regning: Regning, where: str) -> Identifikasjon | None:
    """The one RelatertBehandler the XML has, which is also henvisning.henvistFra."""
    relatert = regning.relatertBehandler
    henvist_fra = regning.henvisning.henvistFra if regning.henvisning else None
    if henvist_fra is not None:
        if relatert is None:
            raise ValueError(
                f"{where}.henvisning.henvistFra needs relatertBehandler: the XML keeps both "
                "in Behandling/RelatertBehandler"
            )
        if henvist_fra.id != relatert.id:
            raise ValueError(
                f"{where}.henvisning.henvistFra.id differs from relatertBehandler.id: the XML "
                "keeps both in Behandling/RelatertBehandler"
            )
    return relatert


def _teeth(regning: Regning, where: str) -> list[str]:
    """The treatment's teeth: the XML keeps them once per Behandling, not per takst."""
    takster = regning.takster or []
    if not takster:
        raise ValueError(f"{where}.takster is empty: the legacy XML needs at least one Takst")
    first = [t.tannkode for t in takster[0].tenner or ()]
    for index, takst in enumerate(takster[1:], start=1):
        if [t.tannkode for t in takst.tenner or ()] != first:
            raise ValueError(
                f"{where}.takster[{index}].tenner differ from takster[0].tenner: the XML keeps "
                "one list of teeth per regning"
            )
    return first


def _behandling(out: _Xml, d: int, regning: Regning, where: str, layout: Layout) -> None:
    relatert = _relatert_behandler(regning, where)
    teeth = _teeth(regning, where)
    henvisning = regning.henvisning
    utforende = regning.utforendeBehandler
    out.start(d, "Behandling")
    c = d + 1
    if regning.arsakFriEgenandel is not None:
        out.empty(c, "KodeEgenandel", _cs(regning.arsakFriEgenandel))
    for diagnose in regning.diagnoser or ():
        _diagnose(out, c, "Diagnose", diagnose)
    if regning.sjeldenMedisinskTilstand is not None:
        out.empty(c, "Sykdomslistepunkt", _cs(regning.sjeldenMedisinskTilstand))
    if henvisning is not None:
        if henvisning.dato is not None:
            out.leaf(c, "HenvisningsDato", _date(henvisning.dato))
        if henvisning.id is not None:
            out.leaf(c, "HenvisningsId", henvisning.id)
        for diagnose in henvisning.diagnoser or ():
            _diagnose(out, c, "HenvisningsDiagnose", diagnose)
    if relatert is not None:
        _ident(out, c, "RelatertBehandler", relatert.id, relatert.type, _PERSON_ID_NAMES)
    if utforende is not None and utforende.id is not None:
        _ident(out, c, "Behandlerident", utforende.id, utforende.type, _PERSON_ID_NAMES)
    if regning.moderasjonskode is not None:
        out.empty(c, "Moderasjonskode", _cs(regning.moderasjonskode))
    if regning.stonadspunkt is not None:
        out.empty(c, "Behandlingsform", _cs(regning.stonadspunkt))
    for tannkode in teeth:
        out.empty(c, "Tann", _cs(tannkode))
    for kode in regning.prosedyrekoder or ():
        out.start(c, "Prosedyrekode")
        if kode.kodeverk is not None:
            out.leaf(c + 1, "Kodeverk", kode.kodeverk)
        out.leaf(c + 1, "Kode", kode.kode)
        out.end(c, "Prosedyrekode")
    for takst in regning.takster or ():
        out.start(c, "Takst")
        out.empty(c + 1, "Verdi", _mo(takst.belop))
        out.leaf(c + 1, "Kode", takst.kode)
        out.leaf(c + 1, "Antall", str(takst.antall))
        out.end(c, "Takst")
    if layout == "sumkrav":
        out.start(c, "SumKrav")
        out.empty(c + 1, "Refusjon", _mo(regning.belop))
        out.end(c, "SumKrav")
    else:
        out.empty(c, "Refusjon", _mo(regning.belop))
    out.end(d, "Behandling")


def _enkeltregning(
    out: _Xml, d: int, regning: Regning, index: int, layout: Layout, guid_tag: GuidTag,
    local_time: bool,
) -> None:  # fmt: skip
    where = f"regninger[{index}]"
    _refuse_unwritable(regning, where)
    out.start(d, "Enkeltregning")
    c = d + 1
    out.leaf(c, guid_tag, regning.guid)
    if regning.betaltEgenandel is not None or regning.korrigeringBetaltEgenandel is not None:
        attrs = ""
        if regning.betaltEgenandel is not None:
            attrs += f' erBetalt="{_bool(regning.betaltEgenandel)}"'
        if regning.korrigeringBetaltEgenandel is not None:
            attrs += f' korrigering="{_bool(regning.korrigeringBetaltEgenandel)}"'
        out.empty(c, "BetaltEgenandel", attrs)
    if regning.kreditering is not None:
        out.leaf(c, "Kreditering", _bool(regning.kreditering))
    out.leaf(c, "RegningNr", regning.regningsnummer)
    out.leaf(c, "DatoTid", _datetime(regning.tidspunkt, local_time))
    if regning.merknad is not None:
        out.leaf(c, "Merknad", regning.merknad)
    pasient = regning.pasient
    if pasient is not None:
        out.start(c, "Patient")
        p = c + 1
        if pasient.etternavn is not None:
            out.leaf(p, "FamilyName", pasient.etternavn)
        if pasient.fornavn is not None:
            out.leaf(p, "GivenName", pasient.fornavn)
        if pasient.kjonn is not None:
            out.empty(p, "Sex", _cs(pasient.kjonn, _SEX_NAMES.get(pasient.kjonn)))
        if pasient.trygdenasjon is not None:
            out.empty(p, "Nationality", _cs(pasient.trygdenasjon))
        if pasient.identifikasjon is not None:
            ident = pasient.identifikasjon
            _ident(out, p, "Ident", ident.id, ident.type, _PERSON_ID_NAMES)
        if pasient.fodselsdato is not None:
            out.leaf(p, "DateOfBirth", _date(pasient.fodselsdato))
        out.end(c, "Patient")
    _behandling(out, c, regning, where, layout)
    out.end(d, "Enkeltregning")


def _behandlerkrav(
    out: _Xml, d: int, krav: Behandlerkrav, *, layout: Layout, guid_tag: GuidTag,
    local_time: bool, navn_epj: str | None, versjon_epj: str | None,
) -> None:  # fmt: skip
    attrs = f' xmlns="{BKM_NS}"'
    if navn_epj is not None:
        attrs += f' navnEPJ="{_attr(navn_epj)}"'
    if versjon_epj is not None:
        attrs += f' versjonEPJ="{_attr(versjon_epj)}"'
    out.start(d, "BehandlerKrav", attrs)
    c = d + 1
    if krav.avdeling is not None:
        out.leaf(c, "Avdeling", krav.avdeling)
    if krav.reshId is not None:
        out.leaf(c, "RESH", krav.reshId)
    for index, regning in enumerate(krav.regninger):
        _enkeltregning(out, c, regning, index, layout, guid_tag, local_time)
    out.start(c, "Krav")
    out.leaf(c + 1, "AntallRegninger", str(krav.antallRegninger))
    out.empty(c + 1, "SumKravSamlet", _mo(krav.belop))
    out.end(c, "Krav")
    out.end(d, "BehandlerKrav")


def _organisation(
    out: _Xml, d: int, name: str, idents: list[tuple[str, str]], hpr: str | None
) -> None:
    out.start(d, "Organisation")
    out.leaf(d + 1, "OrganisationName", name)
    for ident_id, ident_type in idents:
        _ident(out, d + 1, "Ident", ident_id, ident_type, _ORG_ID_NAMES)
    if hpr is not None:
        out.start(d + 1, "HealthcareProfessional")
        _ident(out, d + 2, "Ident", hpr, "HPR", _PERSON_ID_NAMES)
        out.end(d + 1, "HealthcareProfessional")
    out.end(d, "Organisation")


@functools.lru_cache(maxsize=64)
def _msghead_frame(sender: Sender, pretty: bool) -> tuple[str, str, str]:
    """The MsgHead around GenDate/MsgId and the claim, rendered once per sender: it is the same
    in every file of a corpus. Returns (up to GenDate, after MsgId up to the claim, closing)."""
    out = _Xml(pretty)
    out.start(0, "MsgHead", f' xmlns="{MSGHEAD_NS}"')
    out.start(1, "MsgInfo")
    out.empty(2, "Type", ' V="BKM" DN="Behandlerkravmelding"')
    out.leaf(2, "MIGversion", MIG_VERSION)
    head = "".join(out.parts)
    out.parts.clear()
    out.start(2, "Sender")
    sender_idents = [(sender.orgnr, "ENH")] if sender.orgnr is not None else []
    if sender.her_id is not None:
        sender_idents.append((sender.her_id, "HER"))
    _organisation(out, 3, sender.name, sender_idents, sender.hpr)
    out.end(2, "Sender")
    out.start(2, "Receiver")
    _organisation(out, 3, HELFO_NAME, [(HELFO_ORGNR, "ENH")], None)
    out.end(2, "Receiver")
    out.end(1, "MsgInfo")
    out.start(1, "Document")
    out.start(2, "RefDoc")
    out.empty(3, "MsgType", ' V="XML" DN="XML-instans"')
    out.start(3, "Content")
    middle = "".join(out.parts)
    out.parts.clear()
    out.end(3, "Content")
    out.end(2, "RefDoc")
    out.end(1, "Document")
    out.end(0, "MsgHead")
    return head, middle, "".join(out.parts)


def _msghead(
    out: _Xml, sender: Sender, msg_id: str, gen_date: str, body: Callable[[int], None]
) -> None:
    head, middle, closing = _msghead_frame(sender, bool(out.newline))
    out.parts.append(head)
    out.leaf(2, "GenDate", gen_date)
    out.leaf(2, "MsgId", msg_id)
    out.parts.append(middle)
    body(4)
    out.parts.append(closing)


def _encode(text: str, encoding: str, bom: bool) -> bytes:
    """The document in `encoding`; characters it cannot hold become character references."""
    codec = codecs.lookup(encoding).name
    if codec == "utf-16":
        # Python's utf-16 codec picks the BOM itself; write little-endian, BOM only on request.
        codec = "utf-16-le"
    data = text.encode(codec, "xmlcharrefreplace")
    if bom:
        if codec not in _BOMS:
            raise ValueError(f"encoding {encoding} has no byte order mark")
        data = _BOMS[codec] + data
    return data


def write_bkm_xml(
    krav: Behandlerkrav,
    *,
    envelope: Envelope = "msghead",
    sender: Sender = Sender(),
    msg_id: str | None = None,
    gen_date: datetime | None = None,
    encoding: str = "UTF-8",
    bom: bool = False,
    layout: Layout = "refusjon",
    guid_tag: GuidTag = "GUID",
    local_time: bool = True,
    navn_epj: str | None = None,
    versjon_epj: str | None = None,
    pretty: bool = True,
) -> bytes:
    """The claim as a legacy BKM XML file.

    `navn_epj` overrides `krav.navnEPJ` for the `navnEPJ` attribute; `versjon_epj` has no JSON
    field. `encoding` is any codec Python knows, named as given in the XML declaration;
    characters it cannot hold become character references. UTF-16 is written little-endian,
    with a BOM only when `bom` (XML expects one; leave it out only to test readers).
    `msg_id` defaults to a fresh UUID, `gen_date` to now. `antallRegninger` and `belop`
    are written as the model holds them (not recomputed), so mismatching files can be made.
    Raises `ValueError` for a field the XML cannot carry, a regning without takster, teeth that
    differ between a regning's takster, a henvistFra that is not the relatertBehandler, or a
    character XML cannot hold.
    """
    if envelope not in ("msghead", "bare", "base64"):
        raise ValueError(f"unknown envelope {envelope!r}")
    if layout not in ("refusjon", "sumkrav"):
        raise ValueError(f"unknown layout {layout!r}")
    if guid_tag not in ("GUID", "Guid"):
        raise ValueError(f"unknown GUID tag {guid_tag!r}")
    codecs.lookup(encoding)  # LookupError for an encoding Python does not know

    out = _Xml(pretty)
    out.parts.append(f'<?xml version="1.0" encoding="{_attr(encoding)}"?>\n')

    def body(depth: int) -> None:
        _behandlerkrav(
            out, depth, krav, layout=layout, guid_tag=guid_tag, local_time=local_time,
            navn_epj=navn_epj if navn_epj is not None else krav.navnEPJ, versjon_epj=versjon_epj,
        )  # fmt: skip

    if envelope == "bare":
        body(0)
    else:
        written = _datetime(gen_date or datetime.now(OSLO), local_time)
        _msghead(out, sender, msg_id or str(uuid.uuid4()), written, body)

    text = "".join(out.parts)
    bad = _NOT_XML_CHARS.search(text)
    if bad:
        raise ValueError(f"character U+{ord(bad.group()):04X} cannot be written in XML 1.0")
    data = _encode(text, encoding, bom)
    if envelope != "base64":
        return data
    encoded = (base64.encodebytes(data) if pretty else base64.b64encode(data)).decode("ascii")
    container = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Base64Container xmlns="{MSGHEAD_NS}">{out.newline}{encoded}</Base64Container>\n'
    )
    return container.encode("utf-8")
