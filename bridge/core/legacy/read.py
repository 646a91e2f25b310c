"""Bytes an old EPJ wrote → the BehandlerKrav element and the envelope facts around it.

The parser is hardened: no DTD loading, no entity substitution, no network, libxml2's default
size and depth limits (no `huge_tree`). A document that declares a DOCTYPE or entities is refused
outright: a claim never needs one, and refusing is simpler to trust than defusing.

Envelopes understood: MsgHead (`Document/RefDoc/Content/BehandlerKrav`), a bare `BehandlerKrav`,
a `Base64Container` holding either of those (also inside a MsgHead's Content), and a SOAP/ebXML
envelope whose body holds one of them. Envelope elements are matched by local name because
their versions vary in the wild; the claim's namespace is checked by the caller against the
mapping tables.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from dataclasses import dataclass

from lxml import etree

from bridge.core.problems import Problem
from bridge.errors import BridgeError

APPREC_LOCALNAME = "AppRec"
BKM_LOCALNAME = "BehandlerKrav"
_MAX_UNWRAP_DEPTH = 3

_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']")
_EIGHT_BIT_ENCODINGS = {"iso-8859-1", "latin1", "latin-1", "iso8859-1", "windows-1252", "cp1252"}
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the file says about itself around the claim (for receipts and praksis resolution)."""

    kind: str  # "msghead" | "bare", prefixed "base64+" / "soap+" when unwrapped from those
    msg_id: str | None = None
    gen_date: str | None = None
    msg_type: str | None = None
    mig_version: str | None = None
    sender_name: str | None = None
    sender_orgnr: str | None = None
    sender_her: str | None = None
    sender_hpr: str | None = None
    receiver_orgnr: str | None = None

    @property
    def sender_identity(self) -> str | None:
        """The most specific stable identity of the sender (orgnr, else HER-id, else HPR)."""
        return self.sender_orgnr or self.sender_her or self.sender_hpr


@dataclass(frozen=True, slots=True)
class _MsgHeadFacts:
    """A MsgHead whose facts are read when first asked for."""

    root: etree._Element
    kind: str


class LegacyDocument:
    """The claim element, its encoding, and the envelope facts around it. A MsgHead's facts
    are read on first use: the walk costs about as much as mapping half a claim, and
    `convert --out` never needs them."""

    __slots__ = ("_envelope", "encoding", "krav", "msghead")

    def __init__(
        self, krav: etree._Element, envelope: Envelope | _MsgHeadFacts, encoding: str | None
    ) -> None:
        self.krav = krav
        self._envelope = envelope
        self.encoding = encoding
        # The MsgHead the EPJ sent (the outer one when envelopes nest), None for a bare claim.
        self.msghead = envelope.root if isinstance(envelope, _MsgHeadFacts) else None

    @property
    def envelope(self) -> Envelope:
        if isinstance(self._envelope, _MsgHeadFacts):
            self._envelope = _msghead_facts(self._envelope.root, self._envelope.kind)
        return self._envelope

    @property
    def namespace(self) -> str:
        return etree.QName(self.krav).namespace or ""


class ReadError(BridgeError):
    """Internal: carries the one problem that stops reading."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


_local_state = threading.local()


def _parser() -> etree.XMLParser:
    # One parser per thread: lxml parsers are not thread-safe, and making one per document
    # costs as much as parsing a small claim. Errors are read from the exception, not the log.
    parser = getattr(_local_state, "parser", None)
    if parser is None:
        parser = _local_state.parser = _new_parser()
    return parser


def _new_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        collect_ids=False,
        remove_pis=True,
    )


def read_legacy(data: bytes) -> tuple[LegacyDocument | None, list[Problem]]:
    """Parse and unwrap; never raises on bad input. Returns the claim element or the problems."""
    try:
        return _read(data, depth=0, prefix=""), []
    except ReadError as err:
        return None, [err.problem]


def _read(data: bytes, *, depth: int, prefix: str) -> LegacyDocument:
    root, encoding = _parse(data)
    return _unwrap(root, encoding, depth=depth, prefix=prefix)


# --------------------------------------------------------------------------- parsing


def _parse(data: bytes) -> tuple[etree._Element, str | None]:
    _check_start(data)
    declared = _declared_encoding(data)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as err:
        raise ReadError(_syntax_problem(err, data)) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise ReadError(_dtd_problem(data))
    if declared and declared.lower() in _EIGHT_BIT_ENCODINGS:
        _check_not_utf8(data, declared)
    return root, docinfo.encoding


def _check_start(data: bytes) -> None:
    body = data
    for bom in _BOMS:
        if body.startswith(bom):
            if bom != _BOMS[0]:
                return  # UTF-16: let libxml2 decode and judge it
            body = body[len(bom) :]
            break
    stripped = body.lstrip()
    if not stripped:
        raise ReadError(Problem("FILE_EMPTY", "The file is empty (no XML in it)."))
    if not stripped.startswith(b"<"):
        raise ReadError(
            Problem(
                "NOT_XML",
                "This is not an XML file: it does not start with '<' "
                f"(it starts with {_printable_head(stripped)!r}).",
                line=1,
            )
        )
    if _looks_like_dtd(stripped[:4096]):
        raise ReadError(_dtd_problem(data))


def _looks_like_dtd(head: bytes) -> bool:
    return b"<!DOCTYPE" in head or b"<!ENTITY" in head


def _printable_head(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data[:12])


def _declared_encoding(data: bytes) -> str | None:
    match = _XML_DECL.match(data[3:] if data.startswith(_BOMS[0]) else data)
    return match.group(1).decode("ascii") if match else None


def _check_not_utf8(data: bytes, declared: str) -> None:
    """A file declared ISO-8859-1/windows-1252 whose non-ASCII bytes are valid UTF-8 was
    written by a program that lied about its encoding: æøå would arrive as 'Ã¦Ã¸Ã¥'."""
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return
    first = next(i for i, b in enumerate(data) if b >= 0x80)
    raise ReadError(
        Problem(
            "ENCODING_MISMATCH",
            f"The file declares encoding {declared} but its letters are UTF-8 bytes; "
            "Norwegian letters (æøå) would be garbled. Fix the XML declaration "
            '(encoding="UTF-8") or save the file as ' + declared + ".",
            line=data.count(b"\n", 0, first) + 1,
        )
    )


def _dtd_problem(data: bytes) -> Problem:
    idx = data.find(b"<!DOCTYPE")
    if idx < 0:
        idx = data.find(b"<!ENTITY")
    line = data.count(b"\n", 0, idx) + 1 if idx >= 0 else 1
    return Problem(
        "DTD_FORBIDDEN",
        "The file contains a DOCTYPE or entity declarations. A behandlerkravmelding never "
        "needs them, and they are refused because they can be used to read local files or "
        "exhaust memory.",
        line=line,
    )


def _syntax_problem(err: etree.XMLSyntaxError, data: bytes) -> Problem:
    line = err.lineno or None
    msg = (err.msg or "").split(", line ")[0]
    lowered = msg.lower()
    if "network" in lowered or "failed to load" in lowered:
        return _dtd_problem(data)
    if "encoding" in lowered or "not proper utf-8" in lowered or "invalid bytes" in lowered:
        declared = _declared_encoding(data) or "UTF-8 (no declaration)"
        return Problem(
            "ENCODING_INVALID",
            f"The bytes do not match the character encoding {declared}: {msg}. Save the file "
            "in the declared encoding or correct the XML declaration.",
            line=line,
        )
    if "document is empty" in lowered:
        return Problem("FILE_EMPTY", "The file is empty (no XML in it).", line=line)
    if "premature end of data" in lowered:
        return Problem(
            "XML_MALFORMED",
            f"The XML ends before the document is complete: the file looks truncated ({msg}).",
            line=line,
        )
    return Problem("XML_MALFORMED", f"The XML is not well-formed: {msg}.", line=line)


# --------------------------------------------------------------------------- envelopes


def element_path(el: etree._Element) -> str:
    """A readable path from the BehandlerKrav (or the document root, in the envelope):
    `BehandlerKrav/Enkeltregning[2]/GUID`, `MsgHead/MsgInfo/Type`, with [n] where siblings
    share a name."""
    parts = []
    node: etree._Element | None = el
    while node is not None:
        name = _local(node)
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if c.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        parts.append(name)
        if name == BKM_LOCALNAME:
            break
        node = parent
    return "/".join(reversed(parts))


def _local(el: etree._Element) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str) and c.tag.rpartition("}")[2] == name]


def _child(el: etree._Element | None, *names: str) -> etree._Element | None:
    """The first child named names[0], then its first child named names[1], …"""
    for name in names:
        if el is None:
            return None
        el = next(
            (c for c in el if isinstance(c.tag, str) and c.tag.rpartition("}")[2] == name), None
        )
    return el


def _text(el: etree._Element | None) -> str | None:
    if el is None or el.text is None:
        return None
    return el.text.strip() or None


def _unwrap(
    root: etree._Element, encoding: str | None, *, depth: int, prefix: str
) -> LegacyDocument:
    name = _local(root)
    if name == BKM_LOCALNAME:
        return LegacyDocument(root, Envelope(kind=prefix + "bare"), encoding)
    if name == "MsgHead":
        return _from_msghead(root, encoding, depth=depth, prefix=prefix)
    if name == "Base64Container":
        return _from_base64(root, depth=depth, prefix=prefix)
    if name == "Envelope" and _children(root, "Body"):
        return _from_soap(root, encoding, depth=depth, prefix=prefix)
    if name == APPREC_LOCALNAME:
        raise ReadError(
            Problem(
                "NOT_A_BKM",
                "This is an AppRec (an application receipt), not a behandlerkravmelding.",
                line=root.sourceline,
            )
        )
    ns = etree.QName(root).namespace
    raise ReadError(
        Problem(
            "NOT_A_BKM",
            f"The root element is <{name}>{' in namespace ' + ns if ns else ''}; a "
            "behandlerkravmelding file has <MsgHead> or <BehandlerKrav> as its root.",
            line=root.sourceline,
        )
    )


def _from_msghead(
    root: etree._Element, encoding: str | None, *, depth: int, prefix: str
) -> LegacyDocument:
    facts = _MsgHeadFacts(root, prefix + "msghead")
    for document in _children(root, "Document"):
        content = _child(document, "RefDoc", "Content")
        if content is None:
            continue
        for item in content:
            if _local(item) == BKM_LOCALNAME:
                return LegacyDocument(item, facts, encoding)
            if _local(item) == "Base64Container":
                inner = _from_base64(item, depth=depth, prefix=prefix)
                # The outer MsgHead is the one the EPJ sent: keep its facts.
                return LegacyDocument(inner.krav, facts, inner.encoding)
    envelope = _msghead_facts(root, facts.kind)
    if envelope.msg_type and envelope.msg_type.upper() not in {"BKM", "LOM", "POM"}:
        raise ReadError(
            Problem(
                "NOT_A_BKM",
                f"This MsgHead carries a message of type {envelope.msg_type!r}, "
                "not a behandlerkravmelding.",
                line=root.sourceline,
            )
        )
    raise ReadError(
        Problem(
            "ENVELOPE_INVALID",
            "The MsgHead holds no BehandlerKrav in Document/RefDoc/Content.",
            line=root.sourceline,
        )
    )


# Elements of MsgInfo whose children hold the sender's and receiver's facts.
_FACT_CONTAINERS = frozenset({"Sender", "Receiver", "Organisation", "HealthcareProfessional"})


def _msghead_facts(root: etree._Element, kind: str) -> Envelope:
    """One walk over MsgInfo collecting texts by path and Idents by owner (cheaper than a
    lookup per fact, which showed in the conversion profile)."""
    texts: dict[tuple[str, ...], etree._Element] = {}
    idents: dict[tuple[str, ...], dict[str, str]] = {}
    info = _child(root, "MsgInfo")
    pending = [(info, ())] if info is not None else []
    while pending:  # iterative, and without a closure: this runs once per claim
        el, path = pending.pop()
        for child in el:
            tag = child.tag
            if not isinstance(tag, str):
                continue
            name = tag[tag.find("}") + 1 :]
            if name == "Ident":
                type_id = value = None
                for part in child:
                    part_tag = part.tag
                    if isinstance(part_tag, str):
                        part_name = part_tag[part_tag.find("}") + 1 :]
                        if part_name == "TypeId" and type_id is None:
                            type_id = part.get("V") or ""
                        elif part_name == "Id" and value is None:
                            value = _text(part)
                if type_id is not None and value:
                    idents.setdefault(path, {}).setdefault(type_id.upper(), value)
            elif name in _FACT_CONTAINERS:
                pending.append((child, (*path, name)))
            else:
                texts.setdefault((*path, name), child)
    sender = ("Sender", "Organisation")
    hcp = (*sender, "HealthcareProfessional")
    sender_ids = idents.get(sender, {})
    msg_type = texts.get(("Type",))
    return Envelope(
        kind=kind,
        msg_id=_text(texts.get(("MsgId",))),
        gen_date=_text(texts.get(("GenDate",))),
        msg_type=msg_type.get("V") if msg_type is not None else None,
        mig_version=_text(texts.get(("MIGversion",))),
        sender_name=_text(texts.get((*sender, "OrganisationName"))),
        sender_orgnr=sender_ids.get("ENH"),
        sender_her=sender_ids.get("HER"),
        sender_hpr=idents.get(hcp, {}).get("HPR") or sender_ids.get("HPR"),
        receiver_orgnr=idents.get(("Receiver", "Organisation"), {}).get("ENH"),
    )


def _from_base64(el: etree._Element, *, depth: int, prefix: str) -> LegacyDocument:
    if depth >= _MAX_UNWRAP_DEPTH:
        raise ReadError(
            Problem("ENVELOPE_INVALID", "Envelopes are nested too deeply.", line=el.sourceline)
        )
    try:
        inner = base64.b64decode("".join((el.text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise ReadError(
            Problem(
                "ENVELOPE_INVALID",
                "The Base64Container does not hold valid base64 text.",
                line=el.sourceline,
            )
        ) from None
    try:
        return _read(inner, depth=depth + 1, prefix=prefix + "base64+")
    except ReadError as err:
        p = err.problem
        raise ReadError(
            Problem(
                p.code,
                f"Inside the Base64Container (line {el.sourceline}): {p.message}",
                line=el.sourceline,
                severity=p.severity,
            )
        ) from None


def _from_soap(
    root: etree._Element, encoding: str | None, *, depth: int, prefix: str
) -> LegacyDocument:
    body = _children(root, "Body")[0]
    for el in body.iter():
        if el is body:
            continue
        if _local(el) in {"MsgHead", BKM_LOCALNAME, "Base64Container"}:
            return _unwrap(el, encoding, depth=depth + 1, prefix=prefix + "soap+")
    raise ReadError(
        Problem(
            "ENVELOPE_INVALID",
            "The SOAP envelope's Body holds no MsgHead, BehandlerKrav or Base64Container.",
            line=body.sourceline,
        )
    )
