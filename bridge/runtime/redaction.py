"""Removing patient data, tokens and keys from anything that is about to be written for people
to read: log lines (bridge.runtime.logs) and the status page (bridge.daemon.health).

Two layers, so that nothing depends on the caller being careful:

* `redact_value` walks structures (pydantic models, dicts, lists, dataclasses, bytes, XML or
  JSON text) and blanks what sits under a patient or secret key: `pasient`, names, diagnoses,
  birth dates, the free-text `merknad`; JWK private members, passwords, tokens.
* `redact_text` scrubs finished text: fødselsnummer / D-nummer (any 11-digit run, also
  `DDMMYY NNNNN`), JWTs and `Bearer …` values, PEM private keys, patient XML elements, labelled
  values (`fornavn='Kari'`, `"diagnoser": [...]`) and every patient name or diagnosis code
  the first layer has seen in this process.

What stays readable: praksisId (10 digits), organisasjonsnummer (9), HPR numbers (7–9), UUIDs
(behandlerkravmeldingId, GUIDs), file names, codes and counts.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

REDACTED = "[redacted]"
FNR = "[fnr]"
TOKEN = "[token]"
PRIVATE_KEY = "[private key]"
MAX_TEXT = 64 * 1024  # longer payloads are cut (a log line is no place for a whole file)

# --------------------------------------------------------------------------- keys


def _norm(key: object) -> str:
    if isinstance(key, str) and len(key) <= 64:  # a field name (long keys are not kept)
        return _norm_text(key)
    return _NORM_DROP.sub("", str(key)).casefold()


_NORM_DROP = re.compile(r"[_\-\s]")


@functools.lru_cache(maxsize=4096)
def _norm_text(key: str) -> str:
    """A mapping key as the rules compare it; keys are few (a claim's field names), and every
    claim sent is walked by them (`remember_patient_data`), so each is normalised once."""
    return _NORM_DROP.sub("", key).casefold()


# The value under these keys is patient data: blanked whatever its shape.
PATIENT_KEYS = frozenset(
    _norm(k)
    for k in (
        "pasient",
        "patient",
        "fornavn",
        "etternavn",
        "mellomnavn",
        "givenname",
        "familyname",
        "middlename",
        "pasientnavn",
        "fodselsdato",
        "dateofbirth",
        "fodselsnummer",
        "fnr",
        "dnr",
        "diagnoser",
        "diagnose",
        "diagnosis",
        "diagnoses",
        "henvisningsdiagnose",
        "sjeldenmedisinsktilstand",
        "sykdomslistepunkt",
        "merknad",  # the EPJ's free text on a regning (KUHR's `merknader` are codes: kept)
        "eea",
    )
)
_NAME_WORDS = ("fornavn", "etternavn", "mellomnavn", "givenname", "familyname", "middlename")
NAME_KEYS = frozenset(_norm(k) for k in _NAME_WORDS)
DIAGNOSIS_KEYS = frozenset(
    _norm(k) for k in ("diagnoser", "diagnose", "diagnosis", "diagnoses", "henvisningsdiagnose")
)
SECRET_KEYS = frozenset(
    _norm(k)
    for k in (
        "access_token",
        "id_token",
        "refresh_token",
        "token",
        "client_assertion",
        "assertion",
        "authorization",
        "dpop",
        "password",
        "passord",
        "pkcs12_password",
        "secret",
        "client_secret",
        "private_key",
        "privatekey",
    )
)
# Private members of a JWK (RFC 7518): only secret when the mapping is a key ("kty" present).
JWK_PRIVATE = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


# --------------------------------------------------------------------------- learned values


class _Learned:
    """Patient names and diagnosis codes seen in structures, scrubbed from free text later.

    Bounded (oldest forgotten first) and in memory only. Words shorter than three letters and
    numbers are not learned: numbers are the fnr rule's, short words too common."""

    def __init__(self, limit: int = 5000) -> None:
        self._limit = limit
        self._values: OrderedDict[str, None] = OrderedDict()
        # The first word of every learned token (J06 of J06.9, anne of Anne-Lise): a token
        # can only be in a text whose words include its first word (see `scrub`).
        self._heads: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, value: object) -> None:
        if not isinstance(value, str):
            return
        words = {*_TOKEN.findall(value), *_PART.findall(value)}
        with self._lock:
            for word in words:
                folded = word.casefold()
                if len(folded) < 3 or folded.isdigit() or folded in _NOT_NAMES:
                    continue
                self._values[folded] = None
                self._values.move_to_end(folded)
                head = _PART.match(folded) if ("." in folded or "-" in folded) else None
                if head is not None:
                    self._heads[head.group()] = None
                    self._heads.move_to_end(head.group())
            for known in (self._values, self._heads):
                while len(known) > self._limit:
                    known.popitem(last=False)

    def __contains__(self, word: str) -> bool:
        return word.casefold() in self._values

    def __bool__(self) -> bool:
        return bool(self._values)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._heads.clear()

    def scrub(self, text: str) -> str:
        values, heads = self._values, self._heads
        # Most lines name nobody: one pass over the words settles that, without the two
        # substitutions and a Python call per word (this runs on every log line). A token
        # match starts at a word, so a learned token's first word is among the text's words.
        for word in _PART.findall(text):
            folded = word.casefold()
            if folded in values or folded in heads:
                break
        else:
            return text

        def swap(match: re.Match[str]) -> str:
            return REDACTED if match.group(0).casefold() in values else match.group(0)

        return _PART.sub(swap, _TOKEN.sub(swap, text))


_TOKEN = re.compile(r"\w+(?:[.\-]\w+)+")  # codes such as J06.9, names such as Anne-Lise
_PART = re.compile(r"\w+")
_NOT_NAMES = frozenset({"none", "null", "true", "false", "nan", "redacted", "fnr", "token"})
LEARNED = _Learned()


def remember_patient_data(claim: Any) -> None:
    """Learn the patient names and diagnosis codes of a claim (model, dict or JSON text) so
    that free text naming them is scrubbed too. Walking it with `redact_value` does the same;
    this walk only learns (no redacted copy is built: it runs for every claim sent)."""
    if isinstance(claim, str | bytes | bytearray):
        redact_value(claim)  # JSON text: parsed and walked there
    else:
        _learn_below(claim, 0)


def _learn_below(value: Any, depth: int) -> None:
    if depth > 40:
        return
    dumped = _as_structure(value)
    if dumped is not None:
        value = dumped
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = _norm(key)
            if name in PATIENT_KEYS:
                _learn(name, item)
            elif isinstance(item, Mapping | list | tuple):
                _learn_below(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _learn_below(item, depth + 1)


# --------------------------------------------------------------------------- structures


def redact_value(value: Any, _depth: int = 0) -> Any:
    """A JSON-friendly copy of `value` with patient data and secrets blanked."""
    if _depth > 40:
        return "[…]"
    if value is None or isinstance(value, bool | float | Decimal):
        return value
    if isinstance(value, int):
        return FNR if 10**10 <= abs(value) < 10**11 else value
    if isinstance(value, str):
        return redact_string(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return redact_string(decode_bytes(bytes(value)))
    if isinstance(value, PurePath):
        return redact_text(str(value))
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    dumped = _as_structure(value)
    if dumped is not None:
        return redact_value(dumped, _depth + 1)
    if isinstance(value, Mapping):
        is_jwk = "kty" in value
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _norm(key)
            if item is None:
                out[str(key)] = None
            elif name in PATIENT_KEYS:
                _learn(name, item)
                out[str(key)] = REDACTED
            elif name in SECRET_KEYS or (is_jwk and name in JWK_PRIVATE):
                out[str(key)] = REDACTED
            else:
                out[str(key)] = redact_value(item, _depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item, _depth + 1) for item in value]
    element = _xml_element_text(value)
    if element is not None:
        return redact_string(element)
    return redact_text(str(value))


def _as_structure(value: Any) -> Any | None:
    """Models and dataclasses as plain data (None: not one of those)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            return dump(mode="json", exclude_none=True)
        except Exception:
            return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    return None


def _xml_element_text(value: Any) -> str | None:
    if type(value).__module__.startswith("lxml"):
        try:
            from lxml import etree

            return etree.tostring(value, encoding="unicode")
        except Exception:
            return None
    return None


def _learn(key: str, value: Any) -> None:
    """Remember names and diagnosis codes found under a patient key (any depth)."""
    if isinstance(value, str):
        if key in NAME_KEYS or key in DIAGNOSIS_KEYS:
            LEARNED.add(value)
        return
    dumped = _as_structure(value)
    if dumped is not None:
        _learn(key, dumped)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            name = _norm(k)
            if name in NAME_KEYS or (key in DIAGNOSIS_KEYS and name == "kode"):
                LEARNED.add(v)
            elif name in PATIENT_KEYS:
                _learn(name, v)
    elif isinstance(value, list | tuple):
        for item in value:
            _learn(key, item)


def decode_bytes(data: bytes) -> str:
    """Bytes as text the way an XML file would decode (BOM, UTF-8, else windows-1252)."""
    cut = len(data) > MAX_TEXT
    data = data[:MAX_TEXT]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")
    elif data[:200].count(b"\x00") > 20:
        text = data.decode("utf-16-le", errors="replace")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")
    return text + ("…[cut]" if cut else "")


def redact_string(text: str) -> str:
    """A string that may be JSON, XML or prose."""
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + "…[cut]"
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped[:1] in ("{", "["):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            pass
        else:
            return json.dumps(redact_value(parsed), ensure_ascii=False, default=str)
    return redact_text(text)


# --------------------------------------------------------------------------- free text

_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
_JWT = re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}(?:\.[\w-]*){1,3}")
_AUTH_SCHEME = re.compile(r"\b(Bearer|DPoP|Basic)(\s+)[\w\-.~+/]+=*", re.IGNORECASE)
_AUTH_WORDS = ("bearer", "dpop", "basic")
# `key: value`, `key=value`, `"key": "value"`, `'key': 'value'`; the value keeps its quotes.
_VALUE = (
    r"(?P<sep>\s*[:=]\s*)"
    r"(?:(?P<vq>[\"'])(?P<qv>(?:\\.|(?!(?P=vq)).)*)(?P=vq)|(?P<bare>[^\s,;&)}\]]+))"
)
_SECRET_WORDS = (
    "access_token",
    "id_token",
    "refresh_token",
    "client_assertion",
    "assertion",
    "password",
    "passord",
    "client_secret",
    "pkcs12_password",
    "secret",
)
_SECRET_KV = re.compile(rf"(?i)(?P<q>[\"']?)\b(?P<key>{'|'.join(_SECRET_WORDS)})\b(?P=q)" + _VALUE)
_JWK_MEMBER = re.compile(
    r"(?P<q>[\"'])(?P<key>d|p|q|dp|dq|qi|k)(?P=q)(?P<sep>\s*:\s*)(?P<vq>[\"'])[^\"']*(?P=vq)"
)
_PATIENT_KV_WORDS = (
    *_NAME_WORDS,
    *("fodselsdato", "dateofbirth", "fodselsnummer", "fnr", "dnr", "merknad"),
    "sjeldenmedisinsktilstand",
)
_PATIENT_KV = re.compile(
    rf"(?i)(?P<q>[\"']?)\b(?P<key>{'|'.join(_PATIENT_KV_WORDS)})\b(?P=q)" + _VALUE
)
# A patient key whose value opens a bracket (`"pasient": {`, `diagnoser=[`,
# `pasient=Pasient(`): the whole bracketed value goes.
_BLOCK_WORDS = ("pasient", "patient", "diagnoser", "diagnose", "henvisningsdiagnose", "eea")
_PATIENT_BLOCK = re.compile(
    rf"(?i)(?P<q>[\"']?)\b(?P<key>{'|'.join(_BLOCK_WORDS)})"
    r"\b(?P=q)(?P<sep>\s*[:=]\s*)(?:[A-Za-z_]\w*)?(?P<open>[\[{(])"
)
_REPR_BLOCK = re.compile(r"\b(?P<key>Pasient|Diagnose|Eea)(?P<open>\()(?!\))")
_XML_PATIENT = re.compile(
    r"<(?P<p>[\w.-]+:)?(?P<tag>Patient|Pasient)\b[^>]*?(?:/>|>.*?(?:</(?P=p)?(?P=tag)\s*>|\Z))",
    re.DOTALL,
)
_XML_NAME_TAGS = ("FamilyName", "GivenName", "MiddleName", "Fornavn", "Etternavn")
_XML_TEXT_ELEMENT = re.compile(
    r"<(?P<p>[\w.-]+:)?(?P<tag>FamilyName|GivenName|MiddleName|DateOfBirth|Merknad|"
    r"Fornavn|Etternavn)\b(?P<attrs>[^>]*?)>(?P<body>.*?)(?:</(?P=p)?(?P=tag)\s*>|\Z)",
    re.DOTALL,
)
_XML_CODED_ELEMENT = re.compile(
    r"<(?P<p>[\w.-]+:)?(?P<tag>Diagnose|HenvisningsDiagnose|Sykdomslistepunkt)\b"
    r"(?P<attrs>[^>]*?)(?P<end>/?>)"
)
_XML_ATTR = re.compile(r"\b(?P<name>V|DN|OT)\s*=\s*(?P<q>[\"'])(?P<v>.*?)(?P=q)")
_KODE = re.compile(r"(?i)[\"']?\bkode[\"']?\s*[:=]\s*[\"']([^\"']+)[\"']")
# Fødselsnummer, D-nummer, H-nummer: 11 digits, also written DDMMYY NNNNN / DDMMYY-NNNNN.
_FNR = re.compile(r"(?<!\d)\d{6}[ -]?\d{5}(?!\d)")
_CLOSING = {"[": "]", "{": "}", "(": ")"}


def redact_text(text: str) -> str:
    """Scrub finished text (a formatted log line, a traceback, a string on the status page).
    Idempotent: its own markers match none of its rules."""
    if not text:
        return text
    may = Mentions(text)
    text = _tokens(text, may)
    if may.any(_SECRET_WORDS):
        text = _SECRET_KV.sub(_keep_key, text)
    if may.quote:
        text = _JWK_MEMBER.sub(_keep_key, text)
    if "<" in text:
        text = _redact_xml(text)
    if may.any(_BLOCK_WORDS):
        text = _redact_blocks(text)
    if may.any(_PATIENT_KV_WORDS):
        text = _PATIENT_KV.sub(_keep_key_learning, text)
    text = _FNR.sub(FNR, text)
    if LEARNED:
        text = LEARNED.scrub(text)
    return text


class Mentions:
    """Which rules a text can match at all. Each keyed rule needs its key somewhere in the
    text, so a plain substring test can skip its (much slower) regular expression. Non-ASCII
    text gets every rule: case-insensitive matching pairs some letters with ASCII ones (ſ, ı, İ)
    that `str.lower` does not."""

    __slots__ = ("lowered", "quote")

    def __init__(self, text: str) -> None:
        self.lowered = text.lower() if text.isascii() else None
        self.quote = '"' in text or "'" in text

    def any(self, words: tuple[str, ...]) -> bool:
        """`words` in lower case (the `_*_WORDS` tuples are; see `ascii_folded` for others)."""
        lowered = self.lowered
        if lowered is None:
            return True
        for word in words:  # noqa: SIM110 - a loop is twice as fast as any(<generator>)
            if word in lowered:
                return True
        return False


# The only letters outside ASCII that IGNORECASE matches with ASCII letters (all of Unicode
# checked against Python's re): dotted and dotless i, the long s. (The Kelvin sign lowers to k.)
_IGNORECASE_TO_ASCII = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})


def ascii_folded(word: str) -> str | None:
    """`word` as an IGNORECASE pattern can find it in ASCII text, in lower case for
    `Mentions.any`; None if it can never match ASCII text (it has other letters)."""
    folded = word.translate(_IGNORECASE_TO_ASCII).lower()
    return folded if folded.isascii() else None


def _tokens(text: str, may: Mentions) -> str:
    """Private keys, JWTs and Authorization header values."""
    if "-----BEGIN" in text:
        text = _PEM.sub(PRIVATE_KEY, text)
    if "eyJ" in text:
        text = _JWT.sub(TOKEN, text)
    if may.any(_AUTH_WORDS):
        text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{TOKEN}", text)
    return text


def redact_line(text: str) -> str:
    """The rules that cannot break JSON escaping, for an already encoded JSON log line."""
    text = _tokens(text, Mentions(text))
    text = _FNR.sub(FNR, text)
    return LEARNED.scrub(text) if LEARNED else text


def _keep_key(match: re.Match[str]) -> str:
    """`key: value` → `key: [redacted]`, keeping the quotes so JSON stays JSON."""
    groups = match.groupdict()
    q, vq = groups.get("q") or "", groups.get("vq") or ""
    return f"{q}{groups['key']}{q}{groups['sep']}{vq}{REDACTED}{vq}"


def _keep_key_learning(match: re.Match[str]) -> str:
    if _norm(match.group("key")) in NAME_KEYS:
        LEARNED.add(match.group("qv") if match.group("vq") else match.group("bare"))
    return _keep_key(match)


def _redact_xml(text: str) -> str:
    def patient(m: re.Match[str]) -> str:
        for inner in _XML_TEXT_ELEMENT.finditer(m.group(0)):
            if inner.group("tag") in _XML_NAME_TAGS:
                LEARNED.add(inner.group("body"))
        p, tag = m.group("p") or "", m.group("tag")
        return f"<{p}{tag}>{REDACTED}</{p}{tag}>"

    def element(m: re.Match[str]) -> str:
        p, tag = m.group("p") or "", m.group("tag")
        if tag in _XML_NAME_TAGS:
            LEARNED.add(m.group("body"))
        return f"<{p}{tag}{m.group('attrs')}>{REDACTED}</{p}{tag}>"

    def coded(m: re.Match[str]) -> str:
        for attr in _XML_ATTR.finditer(m.group("attrs")):
            if attr.group("name") == "V":
                LEARNED.add(attr.group("v"))
        attrs = _XML_ATTR.sub(lambda a: f'{a.group("name")}="{REDACTED}"', m.group("attrs"))
        return f"<{m.group('p') or ''}{m.group('tag')}{attrs}{m.group('end')}"

    text = _XML_PATIENT.sub(patient, text)
    text = _XML_TEXT_ELEMENT.sub(element, text)
    return _XML_CODED_ELEMENT.sub(coded, text)


def _redact_blocks(text: str) -> str:
    """The bracketed value of a patient key goes, nested brackets and quoted strings included;
    an unclosed one (a cut-off line) is cut to the end."""
    for pattern in (_PATIENT_BLOCK, _REPR_BLOCK):
        pos = 0
        while (match := pattern.search(text, pos)) is not None:
            open_at = match.start("open")
            close_at = _matching_close(text, open_at)
            _learn_from_text(text[open_at + 1 : close_at])
            end = min(close_at + 1, len(text))
            if pattern is _PATIENT_BLOCK:
                q = match.group("q")
                kept = text[match.start() : match.end("sep")]
                replacement = kept + (f'"{REDACTED}"' if q == '"' else REDACTED)
            else:
                replacement = f"{match.group('key')}({REDACTED})"
            text = text[: match.start()] + replacement + text[end:]
            pos = match.start() + len(replacement)
    return text


def _matching_close(text: str, open_at: int) -> int:
    """Index of the bracket closing the one at `open_at` (len(text) when unclosed)."""
    stack = [_CLOSING[text[open_at]]]
    quote: str | None = None
    i = open_at + 1
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in _CLOSING:
            stack.append(_CLOSING[ch])
        elif ch == stack[-1]:
            stack.pop()
            if not stack:
                return i
        i += 1
    return len(text)


def _learn_from_text(inner: str) -> None:
    for match in _PATIENT_KV.finditer(inner):
        if _norm(match.group("key")) in NAME_KEYS:
            LEARNED.add(match.group("qv") if match.group("vq") else match.group("bare"))
    for match in _KODE.finditer(inner):
        LEARNED.add(match.group(1))
