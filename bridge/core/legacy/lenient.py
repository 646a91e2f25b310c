"""Lenient reading: what real EPJs write that the KITH description does not, read with certainty.

Real files deviate from the description in ways that keep one meaning (each one is shown by a
file in tests/fixtures/real-world/): a GUID in braces or capitals, `V` and `DN` swapped in a
`TypeId`, a code with stray spaces, an identifier written as bare text where an `Ident` is
expected, 7 fraction digits in a date-time, a MsgHead typed `LOM`/`POM` around a BehandlerKrav,
an XML signature. CRLF line endings need nothing: XML parsing reads them as LF, and line
numbers count the same.

`normalise` rewrites the *parsed tree* (never the bytes: archives and receipts keep the file as
it came, so a signature over it stays verifiable) so that the strict schema check and the
mapping see what the file means, and reports each rewrite as a `LEGACY_VARIANT` warning with
its line and element. A deviation that could mean more than one thing is a `LEGACY_AMBIGUOUS`
error naming it: the bridge refuses rather than guesses. The pass runs before the strict
schema check, so a file that still breaks the schema afterwards gets the usual SCHEMA_INVALID
problems (about what is left to fix) beside the warnings.

Clean files pay one C-level walk over a few element names, a regex over the bytes and nothing
else: every Python-level check runs only on an element that already looks unusual.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

from bridge.core.legacy.read import BKM_LOCALNAME, LegacyDocument, element_path
from bridge.core.problems import Problem, Severity

# At most this many warnings per kind of deviation; the rest are counted in one more warning.
MAX_WARNINGS_PER_KIND = 5

_PERSON_OID = "2.16.578.1.12.4.1.1.8116"  # kodeverk 8116, identifiers of persons

# The identifier kinds a TypeId names (kodeverk 8116 and 9051), with the display names EPJs
# write for them (compared without case, blanks or hyphens).
_ID_KINDS: dict[str, tuple[str, ...]] = {
    "FNR": ("Fødselsnummer", "Fodselsnummer"),
    "DNR": ("D-nummer",),
    "HNR": ("H-nummer",),
    "HPR": ("HPR-nummer", "Helsepersonellnummer", "HPR-nr"),
    "HER": ("HER-id", "HER-nummer", "Identifikator fra Helsetjenesteenhetsregisteret"),
    "ENH": ("Organisasjonsnummeret i Enhetsregisteret", "Organisasjonsnummer", "Orgnr"),
    "RSH": ("RESH-id", "Identifikator fra Register for enheter i spesialisthelsetjenesten"),
    "PNR": ("Passnummer",),
    "DUF": ("DUF-nummer",),
}
_ID_NAMES = {
    "fnr": "fødselsnummer (FNR)",
    "dnr": "D-nummer (DNR)",
    "hnr": "H-nummer (HNR)",
    "hpr": "HPR-nummer (HPR)",
}


def _squash(text: str) -> str:
    return re.sub(r"[\s\-_.]", "", text).casefold()


_NAME_TO_KIND = {_squash(name): kind for kind, names in _ID_KINDS.items() for name in names}

# BKM elements of type Ident, and the identifier kinds each may hold.
_BKM_IDENTS: dict[str, frozenset[str]] = {
    "Behandlerident": frozenset({"FNR", "DNR", "HPR"}),
    "RelatertBehandler": frozenset({"FNR", "DNR", "HPR"}),
    "Ident": frozenset({"FNR", "DNR", "HNR"}),  # Patient/Ident
}

_GUID = re.compile(
    r"^(\{)?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(\})?$"
)
_FRACTION = re.compile(r"T\d{2}:\d{2}:\d{2}\.(\d{7,})")
# An attribute value that starts or ends with a blank, found in the bytes without a walk over
# every element. Each pattern starts with a literal, which keeps the regex engine fast (a
# pattern starting with a blank class costs ten times as much on a large file).
_STRAY_SPACE = (
    re.compile(rb"""=["'][ \t\r\n]"""),
    re.compile(rb""" "[ \t\r\n/>]"""),
    re.compile(rb""" '[ \t\r\n/>]"""),
)
_CANONICAL_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SIGNATURE_NS = "http://www.w3.org/2000/09/xmldsig#"


@dataclass
class _Findings:
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def variant(self, kind: str, message: str, el: etree._Element) -> None:
        seen = self.counts.get(kind, 0) + 1
        self.counts[kind] = seen
        if seen <= MAX_WARNINGS_PER_KIND:
            self.problems.append(
                Problem(
                    "LEGACY_VARIANT",
                    message,
                    line=el.sourceline,
                    path=element_path(el),
                    severity=Severity.WARNING,
                )
            )

    def ambiguous(self, kind: str, message: str, el: etree._Element) -> None:
        key = f"refused: {kind}"
        seen = self.counts.get(key, 0) + 1
        self.counts[key] = seen
        if seen <= MAX_WARNINGS_PER_KIND:
            self.problems.append(
                Problem("LEGACY_AMBIGUOUS", message, line=el.sourceline, path=element_path(el))
            )

    def done(self) -> list[Problem]:
        for kind, seen in self.counts.items():
            if seen > MAX_WARNINGS_PER_KIND:
                refused = kind.startswith("refused: ")
                self.problems.append(
                    Problem(
                        "LEGACY_AMBIGUOUS" if refused else "LEGACY_VARIANT",
                        f"{seen - MAX_WARNINGS_PER_KIND} more of the kind above "
                        f"({kind.removeprefix('refused: ')}) were "
                        + ("found." if refused else "read the same way."),
                        severity=Severity.ERROR if refused else Severity.WARNING,
                    )
                )
        # In file order (the envelope is checked before the claim, but read top to bottom).
        return sorted(self.problems, key=lambda p: p.line if p.line is not None else 1 << 30)


def normalise(document: LegacyDocument, data: bytes) -> list[Problem]:
    """Rewrite the parsed tree where a real-world deviation has one meaning; return one
    LEGACY_VARIANT warning per rewrite (capped per kind) and a LEGACY_AMBIGUOUS error per
    deviation that cannot be read with certainty. `data` (the file's bytes) is only read."""
    found = _Findings()
    krav = document.krav
    msghead = document.msghead
    if not _bytes_tell(data) or any(pattern.search(data) for pattern in _STRAY_SPACE):
        _strip_code_spaces(msghead if msghead is not None else krav, found)
        if (
            msghead is not None
            and krav.getroottree().getroot() is not msghead.getroottree().getroot()
        ):
            _strip_code_spaces(krav, found)  # a claim in base64 inside the MsgHead
    if msghead is not None:
        _check_msghead(msghead, found)
    _check_krav(krav, found)
    return found.done()


# --------------------------------------------------------------------------- stray spaces


def _bytes_tell(data: bytes) -> bool:
    """Whether a byte pattern can find an attribute: not when the XML is in base64 inside
    the file, nor when it is UTF-16 (two bytes per letter)."""
    return b"Base64Container" not in data and b"\x00" not in data[:4]


def _strip_code_spaces(root: etree._Element, found: _Findings) -> None:
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        for attr in ("V", "S"):
            value = el.get(attr)
            if value is not None and value != value.strip() and value.strip():
                el.set(attr, value.strip())
                found.variant(
                    "stray spaces",
                    f"{_local(el)}/@{attr} has blanks before or after the code; read without them.",
                    el,
                )


# --------------------------------------------------------------------------- the claim


@functools.cache
def _krav_tags(ns: str | None) -> tuple[str, str, str, str, dict[str, str]]:
    """GUID, Guid, TypeId, DatoTid and the Ident elements' tags in the claim's namespace."""
    q = (lambda name: f"{{{ns}}}{name}") if ns else (lambda name: name)
    return q("GUID"), q("Guid"), q("TypeId"), q("DatoTid"), {q(n): n for n in _BKM_IDENTS}


def _check_krav(krav: etree._Element, found: _Findings) -> None:
    """One walk, filtered by tag in C (a walk over a large tree costs more than the Python
    work per element, so there is one, not one per name); each element first gets a test that
    a clean file passes at once."""
    guid, guid2, type_id, dato_tid, idents = _krav_tags(etree.QName(krav).namespace)
    known, canonical = _ID_KINDS, _CANONICAL_GUID.fullmatch
    for el in krav.iter(guid, guid2, type_id, dato_tid, *idents):
        tag = el.tag
        if tag == type_id:
            if el.get("V") not in known:
                _check_type_id(el, found)
        elif tag in (guid, guid2):
            text = el.text
            if text is None or not canonical(text):
                _check_guid(el, found)
        elif tag == dato_tid:
            text = el.text
            if text is not None and "." in text:
                _check_fraction(el, found)
        elif len(el) == 0 and el.text is not None and el.text.strip():
            name = idents[tag]
            if name != "Ident" or _local(el.getparent()) == "Patient":
                _read_bare_ident(el, _BKM_IDENTS[name], found)


def _check_guid(el: etree._Element, found: _Findings) -> None:
    written = (el.text or "").strip()
    match = _GUID.match(written)
    if match is None:
        return  # not a UUID at all: sent as written, as ever
    opened, closed = match.group(1), match.group(3)
    if written == written.lower() and not opened and not closed:
        return  # canonical already
    if bool(opened) != bool(closed):
        found.ambiguous(
            "GUID spelling",
            f"{_local(el)} {written!r} has a brace on one side only; it cannot be told "
            "whether the GUID is cut off. Write it as 8-4-4-4-12 hexadecimal digits.",
            el,
        )
        return
    canonical = str(uuid.UUID(match.group(2)))
    el.text = canonical
    how = "in braces" if opened else "in capital letters"
    found.variant(
        "GUID spelling",
        f"{_local(el)} {written!r} is written {how}; sent as {canonical!r}, the same GUID in "
        "the one spelling the bridge sends (lower case, without braces), so a later "
        "kreditering that refers to it matches however it is written.",
        el,
    )


def _check_type_id(el: etree._Element, found: _Findings) -> None:
    code = (el.get("V") or "").strip()
    if code in _ID_KINDS:
        return
    shown = (el.get("DN") or "").strip()
    named = _NAME_TO_KIND.get(_squash(code))
    if shown not in _ID_KINDS:
        if named is None:
            return  # neither side is a known code or name: nothing to read differently
        other = _NAME_TO_KIND.get(_squash(shown), named)
        if other != named:
            found.ambiguous(
                "name in TypeId/@V",
                f"TypeId says V={code!r} DN={shown!r}: both are names, of two different kinds "
                f"of identifier ({named} and {other}), so which is meant cannot be told. Put "
                "the code (FNR, DNR, HPR, HER, ENH …) in V.",
                el,
            )
            return
        # V holds a name (V="HPR-nummer"), DN is no code and names nothing else.
        el.set("V", named)
        found.variant(
            "name in TypeId/@V",
            f"TypeId has the name {code!r} in V where the code belongs; read as V={named!r}.",
            el,
        )
        return
    if not code or named == shown or _squash(code).startswith(shown.casefold()):
        el.set("V", shown)
        el.set("DN", code or _ID_KINDS[shown][0])
        found.variant(
            "swapped TypeId",
            f"TypeId has the code in DN and the name in V (V={code!r} DN={shown!r}); read as "
            f"V={shown!r}.",
            el,
        )
        return
    found.ambiguous(
        "swapped TypeId",
        f"TypeId says V={code!r} DN={shown!r}: the code is in DN, but V names "
        f"{'another kind of identifier (' + named + ')' if named else 'no kind of identifier'}"
        ", so which kind is meant cannot be told. Put the code (FNR, DNR, HPR, HER, ENH …) "
        "in V.",
        el,
    )


def _check_fraction(el: etree._Element, found: _Findings) -> None:
    text = (el.text or "").strip()
    match = _FRACTION.search(text)
    if match:
        found.variant(
            "long fractions",
            f"{_local(el)} has {len(match.group(1))} decimals on the seconds; read to the "
            "microsecond (a KUHR tidspunkt carries whole seconds).",
            el,
        )


# --------------------------------------------------------------------------- bare identifiers


def _mod11(digits: str, weights: Iterable[int]) -> int | None:
    rest = sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11
    check = (11 - rest) % 11
    return None if check == 10 else check


def person_number_kinds(value: str) -> frozenset[str]:
    """The kinds an 11-digit person number can be, from its check digits and date part:
    FNR (day 01-31, month 01-12), DNR (day + 40), HNR (month + 40, which is also how NAV's
    synthetic test population writes an FNR), FNR for Skatteetaten's synthetic ones (month
    + 80). Empty when the check digits are wrong or the date part fits none."""
    if len(value) != 11 or not value.isdigit():
        return frozenset()
    k1 = _mod11(value[:9], (3, 7, 6, 1, 8, 9, 4, 5, 2))
    k2 = _mod11(value[:10], (5, 4, 3, 2, 7, 6, 5, 4, 3, 2))
    if k1 is None or k2 is None or int(value[9]) != k1 or int(value[10]) != k2:
        return frozenset()
    day, month = int(value[0:2]), int(value[2:4])
    if 41 <= day <= 71 and 1 <= month <= 12:
        return frozenset({"DNR"})
    if not 1 <= day <= 31:
        return frozenset()
    if 1 <= month <= 12 or 81 <= month <= 92:
        return frozenset({"FNR"})
    if 41 <= month <= 52:
        return frozenset({"HNR", "FNR"})
    return frozenset()


def _bare_kind(value: str, allowed: frozenset[str]) -> str | None:
    """The one kind of identifier `value` can be in a place that allows `allowed`, or None."""
    if len(value) == 11:
        kinds = person_number_kinds(value) & allowed
        return next(iter(kinds)) if len(kinds) == 1 else None
    short = value.isdigit() and 4 <= len(value) <= 9
    if short and "HPR" in allowed and not allowed & {"HER", "ENH", "RSH"}:
        return "HPR"  # the only short kind here (FNR/DNR/HNR are 11 digits)
    return None


def _read_bare_ident(el: etree._Element, allowed: frozenset[str], found: _Findings) -> None:
    value = "".join((el.text or "").split())
    kind = _bare_kind(value, allowed)
    name = _local(el)
    if kind is None:
        kinds = ", ".join(sorted(allowed))
        found.ambiguous(
            "bare identifier",
            f"{name} holds a bare identifier instead of Id and TypeId, and which kind it is "
            f"({kinds}) cannot be told from the number. Write it as <Id> with a <TypeId V=…>.",
            el,
        )
        return
    ns = etree.QName(el).namespace
    q = (lambda n: f"{{{ns}}}{n}") if ns else (lambda n: n)
    el.text = None
    id_el = etree.SubElement(el, q("Id"))
    id_el.text = value
    etree.SubElement(el, q("TypeId"), V=kind, S=_PERSON_OID, DN=_ID_KINDS[kind][0])
    found.variant(
        "bare identifier",
        f"{name} holds a bare identifier instead of Id and TypeId; read from its form as "
        f"{_ID_NAMES[kind.lower()]}.",
        el,
    )


# --------------------------------------------------------------------------- the envelope


def _check_msghead(root: etree._Element, found: _Findings) -> None:
    info = _child(root, "MsgInfo")
    if info is not None:
        _check_msg_type(info, found)
        gen_date = _child(info, "GenDate")
        if gen_date is not None:
            _check_fraction(gen_date, found)
        _check_envelope_idents(info, found)
    signature = root.find(f"{{{_SIGNATURE_NS}}}Signature")
    if signature is not None:
        found.variant(
            "signature",
            "The MsgHead carries an XML signature (ds:Signature). The bridge does not check "
            "it; the file is kept byte for byte, so it can be checked from the archive.",
            signature,
        )
    documents = list(root.iterchildren("{*}Document"))
    contents = (
        [c for d in documents for c in d.findall("{*}RefDoc/{*}Content/{*}" + BKM_LOCALNAME)]
        if len(documents) > 1
        else ()
    )
    if len(contents) > 1:
        found.ambiguous(
            "several claims",
            f"The MsgHead holds {len(contents)} BehandlerKrav (one per Document); which one "
            "is meant cannot be told. Send one behandlerkravmelding per file.",
            contents[1].getparent().getparent().getparent(),
        )


def _check_msg_type(info: etree._Element, found: _Findings) -> None:
    type_el = _child(info, "Type")
    if type_el is None:
        return
    written = (type_el.get("V") or "").strip()
    if written and written.upper() != "BKM":
        found.variant(
            "message type",
            f"MsgInfo/Type says {written!r}, but the content is a BehandlerKrav; read as a "
            "behandlerkravmelding (the content decides, not the Type).",
            type_el,
        )


def _check_envelope_idents(info: etree._Element, found: _Findings) -> None:
    for el in info.iter("{*}TypeId", "{*}Ident"):
        if el.tag.endswith("TypeId"):
            if el.get("V") not in _ID_KINDS:
                _check_type_id(el, found)
        elif len(el) == 0 and el.text is not None and el.text.strip():
            _read_envelope_bare_ident(el, found)


def _read_envelope_bare_ident(el: etree._Element, found: _Findings) -> None:
    """A bare identifier in the MsgHead: an 11-digit person number is certain; anything
    shorter could be an HPR-nummer or a HER-id (or an orgnr under an Organisation)."""
    owner = _local(el.getparent())
    allowed = (
        frozenset({"FNR", "DNR", "HNR", "HPR", "HER"})
        if owner in ("HealthcareProfessional", "Patient", "Person")
        else frozenset({"ENH", "HER", "RSH"})
    )
    if person_number_kinds("".join((el.text or "").split())):
        _read_bare_ident(el, allowed, found)
        return
    if owner == "HealthcareProfessional" and _sender_has_identity(el):
        # The sender is identified by its organisation; this one is not needed to read the
        # claim, so it is left unread rather than guessed.
        found.variant(
            "bare identifier",
            "Ident under HealthcareProfessional holds a bare number instead of Id and TypeId; "
            "it could be an HPR-nummer or a HER-id, so it is not used (the sender is known "
            "by the organisation's identifier).",
            el,
        )
        professional = el.getparent()
        professional.remove(el)
        if _child(professional, "Ident") is None:
            # Nothing the bridge reads is left in it (an official HealthcareProfessional
            # needs an Ident): the envelope as read is the one without it.
            professional.getparent().remove(professional)
        return
    _read_bare_ident(el, allowed, found)


def _sender_has_identity(el: etree._Element) -> bool:
    """True when the Sender's Organisation has a typed ENH or HER Ident of its own."""
    node: etree._Element | None = el
    while node is not None and _local(node) != "Sender":
        node = node.getparent()
    organisation = _child(node, "Organisation") if node is not None else None
    if organisation is None:
        return False
    for ident in organisation:
        if _local(ident) == "Ident":
            type_id = _child(ident, "TypeId")
            if type_id is not None and (type_id.get("V") or "").strip() in ("ENH", "HER"):
                return True
    return False


# --------------------------------------------------------------------------- helpers


def _local(el: etree._Element | None) -> str:
    if el is None or not isinstance(el.tag, str):
        return ""
    return el.tag.rpartition("}")[2]


def _child(el: etree._Element | None, name: str) -> etree._Element | None:
    if el is None:
        return None
    return next(el.iterchildren("{*}" + name), None)
