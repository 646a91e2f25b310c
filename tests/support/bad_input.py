"""Bad claim files, one per way a file can be wrong (malformed, truncated, XXE, billion
laughs, external DTD, an AppRec, wrong encodings …), and a good one, for the CLI's and the
watcher's bad-input tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from bridge.core.legacy.writer import write_bkm_xml
from bridge.core.model import Behandlerkrav

PRAKSIS_ID = "1004326178"
NAVN = "Ærlig-Østbø"
MERKNAD = "Pasienten møtte på Ås legekontor"
BKM_NS = b"http://www.kith.no/xmlstds/bkm/2006-12-20"
MARKER = "SECRET-MARKER-7f3a9c"  # content of a local file an XXE would try to read
MB = 1024 * 1024


def krav(**changes: Any) -> Behandlerkrav:
    regning = {
        "guid": "0b8dc559-6c2d-419b-aeef-faaf537c6117",
        "regningsnummer": "12496",
        "tidspunkt": "2026-01-06T13:35:00+01:00",
        "merknad": MERKNAD,
        # Without an ident the documented rules want fødselsdato (bridge.core.rules).
        "pasient": {"etternavn": NAVN, "fornavn": "Åse", "kjonn": "2", "fodselsdato": "1970-03-11"},
        "diagnoser": [{"kodeverk": "2.16.578.1.12.4.1.1.7170", "kode": "L73"}],
        "takster": [
            {"belop": Decimal("155.00"), "kode": "2ad", "antall": 1},
            {"belop": Decimal("84.00"), "kode": "2cd", "antall": 1},
        ],
        "belop": Decimal("239.00"),
    }
    data = {"regninger": [regning], "antallRegninger": 1, "belop": Decimal("239.00")}
    data.update(changes)
    return Behandlerkrav.model_validate(data)


def good_claim(**options: Any) -> bytes:
    return write_bkm_xml(krav(), msg_id="5e0c3c0e-9d3e-4a39-a8a4-1b1c1c4f6a01", **options)


def _line_of(data: bytes, needle: bytes) -> int:
    index = data.index(needle)
    return data.count(b"\n", 0, index) + 1


def _first_non_ascii_line(data: bytes) -> int:
    index = next(i for i, byte in enumerate(data) if byte >= 0x80)
    return data.count(b"\n", 0, index) + 1


# --------------------------------------------------------------------------- the bad files


@dataclass(frozen=True)
class Env:
    tmp: Path
    dtd_url: str  # a loopback URL that records every request made to it


@dataclass(frozen=True)
class BadCase:
    name: str
    code: str
    make: Callable[[Env], bytes]
    line: Callable[[bytes], int] | None = None  # the line the problem must name, from the bytes

    def __str__(self) -> str:
        return self.name


def _malformed(env: Env) -> bytes:
    return good_claim().replace(b"</RegningNr>", b"")  # <RegningNr> left unclosed


def _truncated(env: Env) -> bytes:
    data = good_claim()
    return data[: len(data) // 2]


def _xxe(path: str) -> Callable[[Env], bytes]:
    def make(env: Env) -> bytes:
        target = path
        if not target:
            secret = env.tmp / "secret.txt"
            secret.write_text(MARKER)
            target = secret.as_uri()
        doctype = f'<!DOCTYPE MsgHead [<!ENTITY e SYSTEM "{target}">]>\n'.encode()
        data = good_claim().replace(b"?>\n", b"?>\n" + doctype, 1)
        return data.replace(MERKNAD.encode(), b"&e;")

    return make


def _billion_laughs(env: Env) -> bytes:
    entities = ['<!ENTITY lol "lol">']
    for i in range(1, 10):
        previous = f"&lol{i - 1 if i > 1 else ''};"
        entities.append(f'<!ENTITY lol{i} "{previous * 10}">')
    doctype = "<!DOCTYPE lolz [\n" + "\n".join(entities) + "\n]>\n"
    data = good_claim().replace(b"?>\n", b"?>\n" + doctype.encode(), 1)
    return data.replace(MERKNAD.encode(), b"&lol9;")


def _external_dtd(env: Env) -> bytes:
    doctype = f'<!DOCTYPE MsgHead SYSTEM "{env.dtd_url}">\n'.encode()
    return good_claim().replace(b"?>\n", b"?>\n" + doctype, 1)


def _apprec(env: Env) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<AppRec xmlns="http://www.kith.no/xmlstds/apprec/2004-11-21">
  <MsgType V="APPREC" DN="Applikasjonskvittering"/>
  <MIGversion>v1.0 2004-11-21</MIGversion>
  <GenDate>2026-01-06T15:31:00</GenDate>
  <Id>{uuid.uuid4()}</Id>
  <Sender><HCP><Inst><Name>Helfo</Name><Id>986965610</Id></Inst></HCP></Sender>
  <Receiver><HCP><Inst><Name>Kurbadet</Name><Id>999999999</Id></Inst></HCP></Receiver>
  <Status V="1" DN="OK"/>
  <OriginalMsgId>
    <MsgType V="BKM" DN="Behandlerkravmelding"/>
    <IssueDate>2026-01-06T15:30:00</IssueDate>
    <Id>5e0c3c0e-9d3e-4a39-a8a4-1b1c1c4f6a01</Id>
  </OriginalMsgId>
</AppRec>
""".encode()


def _declared(data: bytes, old: str, new: str) -> bytes:
    return data.replace(f'encoding="{old}"'.encode(), f'encoding="{new}"'.encode(), 1)


BAD_CASES = [
    BadCase(
        "malformed",
        "XML_MALFORMED",
        _malformed,
        # libxml2 notices the unclosed tag where the parent's end tag does not match it.
        line=lambda data: _line_of(data, b"</Enkeltregning>"),
    ),
    BadCase("truncated", "XML_MALFORMED", _truncated),
    BadCase("empty", "FILE_EMPTY", lambda env: b""),
    BadCase("pdf", "NOT_XML", lambda env: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"),
    BadCase("text", "NOT_XML", lambda env: b"Regning 12496: 239 kr\n"),
    BadCase("xxe-passwd", "DTD_FORBIDDEN", _xxe("file:///etc/passwd"), line=lambda d: 2),
    BadCase("xxe-local-file", "DTD_FORBIDDEN", _xxe(""), line=lambda d: 2),
    BadCase("billion-laughs", "DTD_FORBIDDEN", _billion_laughs, line=lambda d: 2),
    BadCase("external-dtd", "DTD_FORBIDDEN", _external_dtd, line=lambda d: 2),
    BadCase(
        "wrong-namespace",
        "UNKNOWN_NAMESPACE",
        lambda env: good_claim().replace(BKM_NS, b"http://www.kith.no/xmlstds/bkm/2099-01-01"),
        line=lambda data: _line_of(data, b"<BehandlerKrav"),
    ),
    BadCase("apprec", "NOT_A_BKM", _apprec, line=lambda data: 2),
    BadCase(
        "utf8-declared-latin1-bytes",
        "ENCODING_INVALID",
        lambda env: _declared(good_claim(encoding="ISO-8859-1"), "ISO-8859-1", "UTF-8"),
        line=_first_non_ascii_line,
    ),
    BadCase(
        "latin1-declared-utf8-bytes",
        "ENCODING_MISMATCH",
        lambda env: _declared(good_claim(), "UTF-8", "ISO-8859-1"),
        line=_first_non_ascii_line,
    ),
    BadCase(
        "count-mismatch",
        "COUNT_MISMATCH",
        lambda env: write_bkm_xml(krav(antallRegninger=2)),
        line=lambda data: _line_of(data, b"<Krav>"),
    ),
    BadCase(
        "sum-mismatch",
        "SUM_MISMATCH",
        lambda env: write_bkm_xml(krav(belop=Decimal("240.00"))),
        line=lambda data: _line_of(data, b"<Krav>"),
    ),
]
