"""The code lists and conditional rules the KUHR Krav API documentation states for the JSON BKM,
checked locally before anything is sent.

Pure: a claim (and, where a rule depends on it, the praksis type) in; `Problem`s out, each
sentence naming the regning, the field, what the documentation asks and where it says so. The
code lists are data (`bridge/data/kodeverk.json`); the conditional rules are the table
`RULES` below, one row per documented rule with its source. Nothing here knows the patient:
sentences name fields and codes, never a value that identifies a person.

`check_rules(krav)` runs the rules that hold for every claim; `check_rules(krav,
praksistype="TANN")` adds those that depend on the praksis type (`praksis_rules` alone is what
the pipeline runs once the praksis is chosen).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from bridge.core.model import Behandlerkrav, Regning
from bridge.core.problems import Problem, Severity
from bridge.core.timezone import OSLO

# The documents the sources name (navikt/kuhr-krav-api-dokumentasjon).
JSON_DOC = "behandlerkravmelding_json.md"
MAPPING_DOC = "behandlerkravmelding_json_med_xml_mapping_2026-01-08.md"

KODEVERK_CODE_UNKNOWN = "KODEVERK_CODE_UNKNOWN"
FIELD_FORMAT_INVALID = "FIELD_FORMAT_INVALID"
FIELD_REQUIRED = "FIELD_REQUIRED"
FIELD_NOT_USED = "FIELD_NOT_USED"
BETALT_EGENANDEL_KORRIGERING_INVALID = "BETALT_EGENANDEL_KORRIGERING_INVALID"
KREDITERING_AMOUNT_POSITIVE = "KREDITERING_AMOUNT_POSITIVE"

RULE_CODES = frozenset(
    {
        KODEVERK_CODE_UNKNOWN,
        FIELD_FORMAT_INVALID,
        FIELD_REQUIRED,
        FIELD_NOT_USED,
        BETALT_EGENANDEL_KORRIGERING_INVALID,
        KREDITERING_AMOUNT_POSITIVE,
    }
)

# Praksis types the conditional rules name (kodeverk.md, Praksistyper).
TANNLEGE = frozenset({"TANN", "TAKJ", "TAFK", "TAFY"})
TANNPLEIER = frozenset({"TAPL", "TAPO"})
KJEVEORTOPED = frozenset({"TAKJ", "TAFK"})
ORTOPTIST = frozenset({"ORTO"})
KOMMUNAL_FYSIOTERAPI = frozenset({"KOFY", "FYKO"})
AVDELING_OG_RESH = frozenset({"OPPT", "SYKE", "BEUT"})  # rehabilitering, poliklinikk, utland
UTEN_DIAGNOSE = frozenset({"PASI", "OPPT", "BEUT"}) | KOMMUNAL_FYSIOTERAPI

FYSIOTERAPI = frozenset(
    {"FAFY", "FYKO", "FYMT", "FYNO", "FYPM", "FYRT", "FYUM", "FYUP", "FYUV", "KOFF", "KOFY", "KORI"}
)
# Diagnosis code lists by the OIDs' last part (2.16.578.1.12.4.1.1.NNNN, Volven).
ICD10 = "7110"
ICPC2 = frozenset({"7170", "7171"})  # ICPC-2 and ICPC-2B (beriket)
ICD10_PRAKSIS = frozenset({"PSNE", "PSNO", "PSUT", "FRBE"})  # psykologer, fritt behandlingsvalg
ICPC2_PRAKSIS = FYSIOTERAPI | {"KINO"}  # fysioterapeuter og kiropraktorer
SYKDOMSLISTE_SLUTT = date(2017, 1, 1)
HENVISNINGSDATO_KJEVEORTOPED_FROM = date(2026, 1, 1)
TANNKODE = re.compile(r"^[0-9]{2}[A-ZÆØÅ]?$")  # two digits, optionally a surface letter
LANDKODE = re.compile(r"^[A-Z]{2}$")  # ISO 3166 alpha-2
NPE_SAKSNUMMER = re.compile(r"\b[0-9]{4}/[0-9]+\b")  # YYYY/12345
KJEVEORTOPEDI_TAKST = re.compile(r"^6[0-9]{2}")  # "600-takstene"


# --------------------------------------------------------------------------- code lists


@dataclass(frozen=True, slots=True)
class CodeList:
    name: str
    kodeverk: str
    fields: tuple[str, ...]
    source: str
    complete: bool
    codes: dict[str, str]
    shape: re.Pattern[str] | None = None

    def accepts(self, value: str) -> bool:
        if self.complete:
            return value in self.codes
        return value in self.codes or (self.shape is not None and bool(self.shape.match(value)))

    def listed(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.codes.items())


@cache
def code_lists() -> dict[str, CodeList]:
    """The code lists of `bridge/data/kodeverk.json`, by name."""
    text = resources.files("bridge.data").joinpath("kodeverk.json").read_text("utf-8")
    out: dict[str, CodeList] = {}
    for name, row in json.loads(text)["lists"].items():
        out[name] = CodeList(
            name=name,
            kodeverk=row["kodeverk"],
            fields=tuple(row["fields"]),
            source=row["source"],
            complete=bool(row["complete"]),
            codes=dict(row["codes"]),
            shape=re.compile(row["shape"]) if row.get("shape") else None,
        )
    return out


@cache
def _steps(field: str) -> tuple[tuple[str, bool], ...]:
    """`prosedyrekoder[].kodeverk` → (("prosedyrekoder", True), ("kodeverk", False))."""
    return tuple((part.removesuffix("[]"), part.endswith("[]")) for part in field.split("."))


def _values(regning: Regning, field: str) -> Iterator[tuple[str, str]]:
    """(path below the regning, value) of a dotted field; `name[]` walks a list."""
    steps = _steps(field)
    first = getattr(regning, steps[0][0], None)
    if first is None:  # most fields are absent on most regninger: the common, cheap case
        return
    items: list[tuple[str, Any]] = [("", regning)]
    for name, many in steps:
        nxt: list[tuple[str, Any]] = []
        for path, obj in items:
            value = getattr(obj, name, None)
            if value is None:
                continue
            where = f"{path}.{name}" if path else name
            if many:
                nxt.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
            else:
                nxt.append((where, value))
        items = nxt
    for path, value in items:
        if isinstance(value, str):
            yield path, value


def _utforende_idtype(regning: Regning) -> Iterator[tuple[str, str]]:
    """The utførende behandler's id type in either shape the model holds (see the model)."""
    ub = regning.utforendeBehandler
    if ub is None:
        return
    if ub.identifikasjon is not None and ub.identifikasjon.type is not None:
        yield "utforendeBehandler.identifikasjon.type", ub.identifikasjon.type
    elif ub.id is not None and ub.type is not None:
        yield "utforendeBehandler.identifikasjon.type", ub.type


def _utforende_8401(regning: Regning) -> Iterator[tuple[str, str]]:
    ub = regning.utforendeBehandler
    if ub is not None and ub.identifikasjon is not None and ub.type is not None:
        yield "utforendeBehandler.type", ub.type


_SPECIAL_FIELDS: dict[str, Callable[[Regning], Iterator[tuple[str, str]]]] = {
    "utforendeBehandler.identifikasjon.type": _utforende_idtype,
    "utforendeBehandler.type": _utforende_8401,
}


# --------------------------------------------------------------------------- findings


class _Found:
    """The problems of one claim, with the sentence's common parts."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(
        self,
        code: str,
        index: int | None,
        regning: Regning | None,
        field: str,
        text: str,
        source: str,
        severity: Severity = Severity.ERROR,
    ) -> None:
        path = f"behandlerkrav.regninger[{index}].{field}" if index is not None else field
        who = f"Regning {regning.regningsnummer}: " if regning is not None else ""
        message = f"{who}{text} ({source})."
        self.problems.append(Problem(code, message, path=path, severity=severity))


def _refers_by_guid(regning: Regning) -> bool:
    """A kreditering or a korrigering of betalt egenandel may leave Behandling and Pasient out:
    the guid refers to the original regning (JSON_DOC, guid)."""
    return bool(regning.kreditering or regning.korrigeringBetaltEgenandel)


def _code_lists(found: _Found, index: int, regning: Regning) -> None:
    for codes in code_lists().values():
        for field in codes.fields:
            reader = _SPECIAL_FIELDS.get(field)
            values = reader(regning) if reader else _values(regning, field)
            for path, value in values:
                if codes.accepts(value):
                    continue
                if codes.complete:
                    text = (
                        f"{path} is {value!r}, which is not a code of {codes.kodeverk} "
                        f"({codes.listed()})"
                    )
                    found.add(KODEVERK_CODE_UNKNOWN, index, regning, path, text, codes.source)
                else:
                    known = f"; documented: {codes.listed()}" if codes.codes else ""
                    text = (
                        f"{path} is {value!r}, which does not look like a code of kodeverk "
                        f"{codes.kodeverk}{known}; check it against the code list"
                    )
                    found.add(
                        KODEVERK_CODE_UNKNOWN,
                        index,
                        regning,
                        path,
                        text,
                        codes.source,
                        Severity.WARNING,
                    )


def _formats(found: _Found, index: int, regning: Regning) -> None:
    for t, takst in enumerate(regning.takster or ()):
        for n, tann in enumerate(takst.tenner or ()):
            if not TANNKODE.match(tann.tannkode):
                found.add(
                    FIELD_FORMAT_INVALID,
                    index,
                    regning,
                    f"takster[{t}].tenner[{n}].tannkode",
                    f"tannkode {tann.tannkode!r} (takst {takst.kode}) is not two digits, "
                    "optionally followed by the surface letter (e.g. 11, 01, 16O, 41L)",
                    f"{JSON_DOC}, takster.tenner; ISO 3950",
                )
    pasient = regning.pasient
    if pasient is not None and pasient.trygdenasjon and not LANDKODE.match(pasient.trygdenasjon):
        found.add(
            FIELD_FORMAT_INVALID,
            index,
            regning,
            "pasient.trygdenasjon",
            "pasient.trygdenasjon is not a two-letter ISO 3166 landkode (NO, SE, DK …)",
            f"{JSON_DOC}, pasient.trygdenasjon; kodeverk 9043",
        )
    if any(t.kode.lower() == "npe1" for t in regning.takster or ()) and not (
        regning.merknad and NPE_SAKSNUMMER.search(regning.merknad)
    ):
        found.add(
            FIELD_REQUIRED,
            index,
            regning,
            "merknad",
            "takst Npe1 is used, so merknad must give Norsk pasientskadeerstatning's "
            "saksnummer as YYYY/12345 (e.g. 2025/11223)",
            f"{JSON_DOC}, merknad",
        )


def _general(found: _Found, index: int, regning: Regning) -> None:
    """Conditional rules that hold whatever the praksis."""
    if regning.korrigeringBetaltEgenandel and regning.betaltEgenandel is not True:
        said = "false" if regning.betaltEgenandel is False else "not given"
        found.add(
            BETALT_EGENANDEL_KORRIGERING_INVALID,
            index,
            regning,
            "betaltEgenandel",
            f"a korrigering of betalt egenandel with betaltEgenandel {said}: erBetalt can only "
            "be changed from false to true, and KUHR rejects the other way",
            f"{JSON_DOC}, betaltEgenandel",
        )
    if regning.kreditering and regning.belop is not None and regning.belop > 0:
        found.add(
            KREDITERING_AMOUNT_POSITIVE,
            index,
            regning,
            "belop",
            f"a kreditering with belop {regning.belop}; a kreditering's amount should be "
            "negative, and so counted in behandlerkrav.belop",
            f"{JSON_DOC}, kreditering",
            Severity.WARNING,
        )
    pasient = regning.pasient
    if pasient is not None and not _refers_by_guid(regning):
        if pasient.identifikasjon is None and pasient.fodselsdato is None:
            found.add(
                FIELD_REQUIRED,
                index,
                regning,
                "pasient.fodselsdato",
                "pasient has neither identifikasjon nor fodselsdato; without an ident the "
                "fødselsdato must be given",
                f"{JSON_DOC}, pasient.identifikasjon",
            )
        elif pasient.identifikasjon is None and not (pasient.fornavn and pasient.etternavn):
            found.add(
                FIELD_REQUIRED,
                index,
                regning,
                "pasient.etternavn" if not pasient.etternavn else "pasient.fornavn",
                "pasient is identified by fødselsdato only, so fornavn and etternavn must both "
                "be given",
                f"{JSON_DOC}, pasient.fornavn and pasient.etternavn",
            )
    if (regning.stonadspunkt or "").strip() == "1" and not regning.sjeldenMedisinskTilstand:
        found.add(
            FIELD_REQUIRED,
            index,
            regning,
            "sjeldenMedisinskTilstand",
            "stonadspunkt 1 (sjelden medisinsk tilstand) is given, so sjeldenMedisinskTilstand "
            "must say which tilstand",
            f"{JSON_DOC}, sjeldenMedisinskTilstand",
        )


# --------------------------------------------------------------------------- praksis rules


@dataclass(frozen=True, slots=True)
class Rule:
    """A documented rule that holds for some praksis types: where it is written, which types,
    how bad, and the check (None: fine; else the sentence and the field it is about)."""

    name: str
    code: str
    source: str
    praksistyper: frozenset[str]
    check: Callable[[Regning], tuple[str, str] | None]
    severity: Severity = Severity.ERROR
    applies_to_references: bool = False  # also kreditering / korrigering by guid

    def holds_for(self, praksistype: str) -> bool:
        return praksistype in self.praksistyper


def _behandling_day(regning: Regning) -> date:
    return regning.tidspunkt.astimezone(OSLO).date()


def _henvisningsdato(regning: Regning) -> tuple[str, str] | None:
    if _behandling_day(regning) < HENVISNINGSDATO_KJEVEORTOPED_FROM:
        return None
    if regning.henvisning is not None and regning.henvisning.dato is not None:
        return None
    return (
        "henvisning.dato",
        "henvisning.dato is missing; for a kjeveortoped the henvisningsdato is required on "
        "regninger from 01.01.2026",
    )


def _henvisnings_id(regning: Regning) -> tuple[str, str] | None:
    if regning.henvisning is not None and regning.henvisning.id:
        return None
    return "henvisning.id", "henvisning.id is missing; it is required for an ortoptist"


def _utforende(regning: Regning) -> tuple[str, str] | None:
    if regning.utforendeBehandler is not None:
        return None
    return (
        "utforendeBehandler",
        "utforendeBehandler is missing; kommunal fysioterapi must give the behandler on "
        "every regning",
    )


def _stonadspunkt(regning: Regning) -> tuple[str, str] | None:
    if regning.stonadspunkt:
        return None
    return (
        "stonadspunkt",
        "stonadspunkt is missing; a tannlege or tannpleier must give the hovedstønadspunkt of "
        "every behandling",
    )


def _relatert_ved_kjeveortopedi(regning: Regning) -> tuple[str, str] | None:
    koder = [t.kode for t in regning.takster or () if KJEVEORTOPEDI_TAKST.match(t.kode)]
    if not koder or regning.relatertBehandler is not None:
        return None
    return (
        "relatertBehandler",
        f"takst {koder[0]} is a kjeveortopedi takst (600-takstene), so relatertBehandler must "
        "give the HPR number of the behandler who referred the patient",
    )


def _diagnose_not_used(regning: Regning) -> tuple[str, str] | None:
    if not regning.diagnoser:
        return None
    return (
        "diagnoser",
        "diagnoser are given, but pasientreiser, rehabiliteringsinstitusjoner, "
        "behandlingsreiser i utlandet and kommunal fysioterapi shall not give a diagnose",
    )


def _moderasjonskode_not_used(regning: Regning) -> tuple[str, str] | None:
    if not regning.moderasjonskode:
        return None
    return "moderasjonskode", "moderasjonskode is given, but it is used by tannleger only"


def _stonadspunkt_not_used(regning: Regning) -> tuple[str, str] | None:
    if not regning.stonadspunkt:
        return None
    return (
        "stonadspunkt",
        "stonadspunkt is given, but it is used by tannlege and tannpleier only",
    )


def _sykdomslistepunkt_not_used(regning: Regning) -> tuple[str, str] | None:
    if not regning.sjeldenMedisinskTilstand or _behandling_day(regning) < SYKDOMSLISTE_SLUTT:
        return None
    return (
        "sjeldenMedisinskTilstand",
        "sjeldenMedisinskTilstand is given, but the sykdomsliste was removed on 01.01.2017 "
        "and no sykdomslistepunkt shall be given for fysioterapeuter after that",
    )


def _kodeverk_of(oid: str | None) -> str:
    return (oid or "").strip().rpartition(".")[2]


def _diagnose_kodeverk(wanted: frozenset[str], name: str) -> Callable[[Regning], Any]:
    def check(regning: Regning) -> tuple[str, str] | None:
        for n, diagnose in enumerate(regning.diagnoser or ()):
            if diagnose.kodeverk and _kodeverk_of(diagnose.kodeverk) not in wanted:
                return (
                    f"diagnoser[{n}].kodeverk",
                    f"a diagnose is coded in {diagnose.kodeverk}, but this praksis type shall "
                    f"use {name}",
                )
        return None

    return check


def _all_types() -> frozenset[str]:
    from bridge.core.precheck import praksistyper

    return frozenset(praksistyper())


RULES: tuple[Rule, ...] = (
    Rule(
        "henvisningsdato_kjeveortoped",
        FIELD_REQUIRED,
        f"{JSON_DOC}, henvisning.dato",
        KJEVEORTOPED,
        _henvisningsdato,
    ),
    Rule(
        "henvisningsid_ortoptist",
        FIELD_REQUIRED,
        f"{JSON_DOC}, henvisning.id",
        ORTOPTIST,
        _henvisnings_id,
    ),
    Rule(
        "behandler_kommunal_fysioterapi",
        FIELD_REQUIRED,
        f"{JSON_DOC}, utforendeBehandler",
        KOMMUNAL_FYSIOTERAPI,
        _utforende,
    ),
    Rule(
        "stonadspunkt_tannhelse",
        FIELD_REQUIRED,
        f"{JSON_DOC}, stonadspunkt",
        TANNLEGE | TANNPLEIER,
        _stonadspunkt,
    ),
    Rule(
        "relatert_behandler_kjeveortopedi",
        FIELD_REQUIRED,
        f"{JSON_DOC}, relatertBehandler",
        TANNLEGE,
        _relatert_ved_kjeveortopedi,
    ),
    Rule(
        "sykdomslistepunkt_fysioterapi",
        FIELD_NOT_USED,
        f"{JSON_DOC}, sjeldenMedisinskTilstand",
        FYSIOTERAPI,
        _sykdomslistepunkt_not_used,
        Severity.WARNING,
    ),
    Rule(
        "diagnose_icd10",
        KODEVERK_CODE_UNKNOWN,
        f"{JSON_DOC}, diagnoser",
        ICD10_PRAKSIS,
        _diagnose_kodeverk(frozenset({ICD10}), "ICD-10 (2.16.578.1.12.4.1.1.7110)"),
        Severity.WARNING,
    ),
    Rule(
        "diagnose_icpc2",
        KODEVERK_CODE_UNKNOWN,
        f"{JSON_DOC}, diagnoser",
        ICPC2_PRAKSIS,
        _diagnose_kodeverk(ICPC2, "ICPC-2 or ICPC-2B (2.16.578.1.12.4.1.1.7170, …7171)"),
        Severity.WARNING,
    ),
    Rule(
        "ingen_diagnose",
        FIELD_NOT_USED,
        f"{JSON_DOC}, diagnoser",
        UTEN_DIAGNOSE,
        _diagnose_not_used,
        Severity.WARNING,
    ),
)


@cache
def praksis_rule_table() -> tuple[Rule, ...]:
    """RULES plus the "used by … only" rules, which hold for every other praksis type."""
    others = _all_types()
    return (
        *RULES,
        Rule(
            "moderasjonskode_kun_tannlege",
            FIELD_NOT_USED,
            f"{JSON_DOC}, moderasjonskode",
            others - TANNLEGE,
            _moderasjonskode_not_used,
            Severity.WARNING,
        ),
        Rule(
            "stonadspunkt_kun_tannhelse",
            FIELD_NOT_USED,
            f"{JSON_DOC}, stonadspunkt",
            others - TANNLEGE - TANNPLEIER,
            _stonadspunkt_not_used,
            Severity.WARNING,
        ),
    )


def _avdeling_og_resh(found: _Found, krav: Behandlerkrav, praksistype: str) -> None:
    if praksistype not in AVDELING_OG_RESH:
        return
    for field, value in (
        ("behandlerkrav.avdeling", krav.avdeling),
        ("behandlerkrav.reshId", krav.reshId),
    ):
        if not value:
            found.add(
                FIELD_REQUIRED,
                None,
                None,
                field,
                f"{field} is missing; avdeling and RESH-id are required for "
                "rehabiliteringsinstitusjon, egenandelsinnrapportering from poliklinikk and "
                f"behandlingsreiser i utlandet (praksis type {praksistype})",
                f"{JSON_DOC}, behandlerkrav.avdeling and behandlerkrav.reshId",
            )


# --------------------------------------------------------------------------- entry points


def _each(krav: Behandlerkrav) -> Iterable[tuple[int, Regning]]:
    return enumerate(krav.regninger)


def praksis_rules(krav: Behandlerkrav, praksistype: str | None) -> list[Problem]:
    """The rules that depend on the praksis type (none when it is not known)."""
    kind = (praksistype or "").strip().upper()
    if not kind:
        return []
    found = _Found()
    _avdeling_og_resh(found, krav, kind)
    rules = [r for r in praksis_rule_table() if r.holds_for(kind)]
    for index, regning in _each(krav):
        for rule in rules:
            if _refers_by_guid(regning) and not rule.applies_to_references:
                continue
            hit = rule.check(regning)
            if hit is not None:
                field, text = hit
                found.add(
                    rule.code,
                    index,
                    regning,
                    field,
                    f"{text} (praksis type {kind})",
                    rule.source,
                    rule.severity,
                )
    return found.problems


def check_rules(krav: Behandlerkrav, *, praksistype: str | None = None) -> list[Problem]:
    """Every documented code list and conditional rule for the claim, regning by regning;
    with `praksistype`, also the rules that depend on it."""
    found = _Found()
    for index, regning in _each(krav):
        _code_lists(found, index, regning)
        _formats(found, index, regning)
        _general(found, index, regning)
    return found.problems + praksis_rules(krav, praksistype)


def regning_index(problem: Problem) -> int | None:
    """The index of the regning a rule's problem is about (from its path), if any."""
    match = re.match(r"^behandlerkrav\.regninger\[(\d+)\]", problem.path or "")
    return int(match.group(1)) if match else None
