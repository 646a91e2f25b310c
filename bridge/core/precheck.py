"""Pre-control: the rules KUHR's control applies that the bridge can foresee from Helfo's open
data, run on a claim before it is sent.

`precheck_melding(melding, table, now=…, praksis_fagomraade=…)` is the pure core: a claim, the
takst table (`bridge.core.takster.TakstTable`), the moment it is checked and the praksis's
fagområde in; a list of `Finding`s out (a code, the regning, a sentence). No I/O. The codes are
problem codes (`bridge.core.problems.PROBLEM_CODES`), so a finding prints and lands in a
receipt like any other local problem. Sentences name codes, amounts, dates and
regningsnummer, never the patient or the patient's diagnoses.

`bridge.flow.precheck.Prechecker` is the step the commands run: mode (warn | block | off),
where the table comes from, the clock (in the sandbox, the sandbox's clock).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import cache, lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from bridge.core.model import Behandlerkrav, Behandlerkravmelding, Regning, Takst
from bridge.core.problems import PROBLEM_CODES, Problem, Severity
from bridge.core.takster import Takstkode
from bridge.core.timezone import OSLO

if TYPE_CHECKING:
    from bridge.core.takster import TakstTable

log = logging.getLogger(__name__)

# KUHR's rule behind merknad 470: a simple contact billed on a regning of its own close to a
# consultation for the same patient.
ENKEL_KONTAKT = frozenset({"1bd", "1be", "1bk"})
KONSULTASJON = frozenset({"2ad", "2ae", "2ak"})
KONSULTASJON_WINDOW = timedelta(minutes=60)
CENT = Decimal("0.01")
# "For tannleger og tannpleiere uten avtale om direkte oppgjør, men som plikter å rapportere inn
# egenandeler settes Refusjon til 0,- for alle regninger for at egenandelene skal bli godkjent"
# (behandlerkravmelding_json_med_xml_mapping_2026-01-08.md, behandlerkrav.regninger.belop): a
# regning of belop 0 in these fagområder is an egenandel report, not an amount that differs.
EGENANDEL_REPORT_FAGOMRAADER = frozenset({"TH", "TP"})

# The problem codes the pre-control emits (each listed in PROBLEM_CODES and the README).
REGNING_IN_FUTURE = "REGNING_IN_FUTURE"
ENKEL_KONTAKT_NEAR_KONSULTASJON = "ENKEL_KONTAKT_NEAR_KONSULTASJON"
TAKST_UNKNOWN = "TAKST_UNKNOWN"
TAKST_NOT_VALID_ON_DATE = "TAKST_NOT_VALID_ON_DATE"
TAKST_AMOUNT_DIFFERS = "TAKST_AMOUNT_DIFFERS"
TAKST_REPETITIONS_EXCEEDED = "TAKST_REPETITIONS_EXCEEDED"
REGNING_AMOUNT_DIFFERS = "REGNING_AMOUNT_DIFFERS"
TAKST_INVALID_COMBINATION = "TAKST_INVALID_COMBINATION"
TAKST_REQUIRES_TAKST = "TAKST_REQUIRES_TAKST"
TAKST_REQUIRES_DIAGNOSE = "TAKST_REQUIRES_DIAGNOSE"
NLK_UNKNOWN = "NLK_UNKNOWN"
NLK_NOT_VALID_ON_DATE = "NLK_NOT_VALID_ON_DATE"
TAKSTER_UNAVAILABLE = "TAKSTER_UNAVAILABLE"
PRECHECK_BLOCKED = "PRECHECK_BLOCKED"

FINDING_CODES = frozenset(
    {
        REGNING_IN_FUTURE,
        ENKEL_KONTAKT_NEAR_KONSULTASJON,
        TAKST_UNKNOWN,
        TAKST_NOT_VALID_ON_DATE,
        TAKST_AMOUNT_DIFFERS,
        TAKST_REPETITIONS_EXCEEDED,
        REGNING_AMOUNT_DIFFERS,
        TAKST_INVALID_COMBINATION,
        TAKST_REQUIRES_TAKST,
        TAKST_REQUIRES_DIAGNOSE,
        NLK_UNKNOWN,
        NLK_NOT_VALID_ON_DATE,
        TAKSTER_UNAVAILABLE,
    }
)
assert FINDING_CODES | {PRECHECK_BLOCKED} <= set(PROBLEM_CODES)


class Mode(StrEnum):
    WARN = "warn"  # findings are warnings; the claim is sent
    BLOCK = "block"  # a claim with findings is not sent (rejected locally)
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing KUHR's control is expected to reject, found before sending."""

    code: str
    message: str
    regningsnummer: str | None = None  # None: about the claim as a whole
    guid: str | None = None
    takstkode: str | None = None
    merknad: str | None = None  # the KUHR merknad this foresees, when known (470, 766)

    @property
    def blocking(self) -> bool:
        """Whether block mode stops the claim for it (a missing table is not the claim's fault)."""
        return self.code != TAKSTER_UNAVAILABLE

    def as_dict(self, *, blocking: bool = False) -> dict[str, Any]:
        """The receipt form (Norwegian keys, like the receipt's `problemer`)."""
        out: dict[str, Any] = {
            "kode": self.code,
            "melding": self.message,
            "regningsnummer": self.regningsnummer,
            "guid": self.guid,
        }
        if self.takstkode is not None:
            out["takstkode"] = self.takstkode
        if self.merknad is not None:
            out["forventetMerknad"] = self.merknad
        out["alvorlighet"] = "feil" if blocking and self.blocking else "advarsel"
        return out

    def as_problem(self, *, blocking: bool = False) -> Problem:
        severity = Severity.ERROR if blocking and self.blocking else Severity.WARNING
        return Problem(self.code, self.message, severity=severity)


# --------------------------------------------------------------------------- fagområde


@cache
def praksistyper() -> dict[str, str]:
    """Praksistype → fagområde (`bridge/data/praksistyper.csv`, from Helfo's code list)."""
    text = resources.files("bridge.data").joinpath("praksistyper.csv").read_text("utf-8")
    lines = (line for line in io.StringIO(text) if not line.startswith("#"))
    return {row["praksistype"]: row["fagomraade"] for row in csv.DictReader(lines)}


def fagomraade_for(praksistype: str | None) -> str | None:
    """FALE → LE, TANN → TH …; None for an unknown or missing type, and for a type without a
    takst section (OKSY, RHFO, TPOF …)."""
    if not praksistype:
        return None
    return praksistyper().get(praksistype.strip().upper()) or None


# --------------------------------------------------------------------------- reading the rules

_SEPARATORS = re.compile(r"[,;\s]+")
_FILLER = frozenset({"og", "eller", "and", "or", ""})
_YES = frozenset({"ja", "j", "true", "1", "yes", "y", "alle"})
_NO = frozenset({"nei", "n", "false", "0", "no"})


@lru_cache(maxsize=4096)
def code_list(text: str | None) -> tuple[str, ...]:
    """`"2ad, 2ae eller 2ak"` → ('2ad', '2ae', '2ak'). Cached: a table has few distinct rule
    texts, and they are read for every takst of every claim."""
    return tuple(t.strip(".") for t in _SEPARATORS.split(text or "") if t.lower() not in _FILLER)


def _forbids(row: Takstkode, other: str) -> bool:
    """Whether `row`'s ugyldig_kombinasjon rules out `other` on the same regning: "Alle",
    "Alle unntatt A, B", or a list of codes."""
    text = (row.ugyldig_kombinasjon or "").strip()
    if not text or other == row.takstkode:
        return False
    lowered = text.lower()
    if lowered == "alle":
        return True
    if lowered.startswith("alle unntatt"):
        return other not in code_list(text[len("alle unntatt") :])
    return other in code_list(text)


@lru_cache(maxsize=4096)
def _diagnose_requirement(text: str | None) -> tuple[bool, tuple[str, ...]]:
    """(required, acceptable codes; empty = any diagnosis). `L7*` matches by prefix."""
    value = (text or "").strip()
    if not value or value.lower() in _NO:
        return False, ()
    if value.lower() in _YES:
        return True, ()
    return True, code_list(value)


def _diagnose_matches(wanted: str, kode: str) -> bool:
    if wanted.endswith("*"):
        return kode.upper().startswith(wanted[:-1].upper())
    return kode.upper() == wanted.upper()


def repetition_factor(row: Takstkode, antall: int) -> Decimal:
    """What `antall` uses of a takst are worth in units of its first use: each repetition at
    repetisjonsprosent (default 100), from repetition number redusert_ref_fra_repetisjon on at
    redusert_repetisjonsprosent."""
    factor = Decimal(1)
    normal = row.repetisjonsprosent if row.repetisjonsprosent is not None else Decimal(100)
    for repetition in range(1, antall):
        reduced = (
            row.redusert_ref_fra_repetisjon is not None
            and row.redusert_repetisjonsprosent is not None
            and repetition >= row.redusert_ref_fra_repetisjon
        )
        factor += (row.redusert_repetisjonsprosent if reduced else normal) / 100
    return factor


# --------------------------------------------------------------------------- the rules


def _day_text(day: date) -> str:
    return day.strftime("%d.%m.%Y")


def _minute_text(moment: datetime) -> str:
    return moment.astimezone(OSLO).strftime("%d.%m.%Y %H:%M")


def _amount(value: Decimal) -> str:
    return f"{value.quantize(CENT, ROUND_HALF_UP)}"


def _periods(rows: Iterable[Takstkode]) -> str:
    return ", ".join(
        f"{_day_text(r.fradato) if r.fradato else '…'}–{_day_text(r.tildato) if r.tildato else ''}"
        for r in rows
    )


def _patient(regning: Regning) -> str | None:
    if regning.pasient and regning.pasient.identifikasjon:
        return regning.pasient.identifikasjon.id
    return None


def _skipped(regning: Regning) -> bool:
    """A kreditering or an egenandel correction refers to an earlier regning: not priced."""
    return bool(regning.kreditering or regning.korrigeringBetaltEgenandel)


class _Check:
    """The findings of one claim, gathered regning by regning."""

    def __init__(self, table: TakstTable, now: datetime, fagomraade: str | None) -> None:
        self.table = table
        self.now = now
        self.fagomraade = fagomraade
        self.check_takster = table.has_fagomraade(fagomraade)
        self.findings: list[Finding] = []

    def add(
        self,
        regning: Regning | None,
        code: str,
        text: str,
        *,
        takstkode: str | None = None,
        merknad: str | None = None,
    ) -> None:
        nr = regning.regningsnummer if regning else None
        guid = regning.guid if regning else None
        message = f"Regning {nr}: {text}" if regning else text
        self.findings.append(Finding(code, message, nr, guid, takstkode, merknad))

    def regning(self, regning: Regning, alle: list[Regning]) -> None:
        tidspunkt = regning.tidspunkt.astimezone(OSLO)
        if tidspunkt > self.now:
            self.add(
                regning,
                REGNING_IN_FUTURE,
                f"it is dated {_minute_text(tidspunkt)}, after the moment it is checked "
                f"({_minute_text(self.now)}); KUHR rejects a regning dated in the future "
                "(merknad 766).",
                merknad="766",
            )
        self.enkel_kontakt(regning, alle)
        if _skipped(regning):
            return
        day = tidspunkt.date()
        if self.check_takster:
            self.takster(regning, day)
        self.nlkkoder(regning, day)

    def enkel_kontakt(self, regning: Regning, alle: list[Regning]) -> None:
        codes = [t.kode for t in regning.takster or ()]
        enkel = [c for c in codes if c in ENKEL_KONTAKT]
        patient = _patient(regning)
        if not enkel or set(codes) & KONSULTASJON or patient is None or _skipped(regning):
            return
        for other in alle:
            if other is regning or _skipped(other) or _patient(other) != patient:
                continue
            konsultasjon = [t.kode for t in other.takster or () if t.kode in KONSULTASJON]
            if not konsultasjon:
                continue
            if abs(other.tidspunkt - regning.tidspunkt) <= KONSULTASJON_WINDOW:
                self.add(
                    regning,
                    ENKEL_KONTAKT_NEAR_KONSULTASJON,
                    f"takst {enkel[0]} is on a regning of its own within 60 minutes of "
                    f"consultation takst {konsultasjon[0]} on regning {other.regningsnummer} "
                    "for the same patient; KUHR rejects 1bd/1be/1bk used together with a "
                    "consultation (merknad 470).",
                    takstkode=enkel[0],
                    merknad="470",
                )
                return

    def takster(self, regning: Regning, day: date) -> None:
        takster = regning.takster or []
        valid: dict[int, Takstkode] = {}
        for index, takst in enumerate(takster):
            row = self.takst(regning, takst, day)
            if row is not None:
                valid[index] = row
        codes = [t.kode for t in takster]
        self.combinations(regning, takster, valid)
        for index, row in valid.items():
            self.requirements(regning, takster[index].kode, row, codes)
        self.regning_total(regning, takster, valid)

    def takst(self, regning: Regning, takst: Takst, day: date) -> Takstkode | None:
        kode = takst.kode
        rows = self.table.rows(kode, self.fagomraade)
        if not rows:
            self.add(regning, TAKST_UNKNOWN, self._unknown_text(kode), takstkode=kode)
            return None
        row = next((r for r in reversed(rows) if r.covers(day)), None)
        if row is None:
            self.add(
                regning,
                TAKST_NOT_VALID_ON_DATE,
                f"takst {kode} was not valid on {_day_text(day)} (valid {_periods(rows)}).",
                takstkode=kode,
            )
            return None
        if row.refusjon is not None:
            allowed = [row.refusjon]
            if regning.arsakFriEgenandel and row.egenandel:
                allowed.append(row.refusjon + row.egenandel)  # Helfo pays the egenandel too
            if takst.belop not in allowed:
                also = f" ({_amount(allowed[1])} with fri egenandel)" if len(allowed) > 1 else ""
                self.add(
                    regning,
                    TAKST_AMOUNT_DIFFERS,
                    f"takst {kode} is claimed at {_amount(takst.belop)}, but its refusjon on "
                    f"{_day_text(day)} is {_amount(row.refusjon)}{also}.",
                    takstkode=kode,
                )
        if row.maks_repetisjoner is not None and takst.antall - 1 > row.maks_repetisjoner:
            self.add(
                regning,
                TAKST_REPETITIONS_EXCEEDED,
                f"takst {kode} is used {takst.antall} times, but it may be repeated at most "
                f"{row.maks_repetisjoner} times after the first.",
                takstkode=kode,
            )
        return row

    def _unknown_text(self, kode: str) -> str:
        fag = self.fagomraade
        text = f"takst {kode} is not " + (f"a takst of fagområde {fag}" if fag else "in the table")
        elsewhere = self.table.fagomraader_of(kode)
        if elsewhere:
            text += f" (it is one of fagområde {', '.join(elsewhere)})"
        similar = [c for c in self.table.similar_codes(kode) if self.table.rows(c, self.fagomraade)]
        if similar:
            text += f"; did you mean {' or '.join(similar)}?"
        return text + ("" if text.endswith("?") else ".")

    def combinations(
        self, regning: Regning, takster: list[Takst], valid: dict[int, Takstkode]
    ) -> None:
        reported: set[frozenset[str]] = set()
        for i, row in valid.items():
            for j, other in enumerate(takster):
                pair = frozenset({row.takstkode, other.kode})
                if i == j or len(pair) < 2 or pair in reported:
                    continue
                other_row = valid.get(j)
                rule = row if _forbids(row, other.kode) else None
                if rule is None and other_row is not None and _forbids(other_row, row.takstkode):
                    rule = other_row
                if rule is None:
                    continue
                reported.add(pair)
                partner = other.kode if rule is row else row.takstkode
                self.add(
                    regning,
                    TAKST_INVALID_COMBINATION,
                    f"takst {rule.takstkode} cannot be combined with {partner} on the same "
                    f"regning (its ugyldig_kombinasjon: {rule.ugyldig_kombinasjon}).",
                    takstkode=rule.takstkode,
                )

    def requirements(self, regning: Regning, kode: str, row: Takstkode, codes: list[str]) -> None:
        needed = [c for c in code_list(row.krever_takst) if c != kode]
        if needed and not set(needed) & set(codes):
            self.add(
                regning,
                TAKST_REQUIRES_TAKST,
                f"takst {kode} requires {'one of the takster ' if len(needed) > 1 else 'takst '}"
                f"{', '.join(needed)} on the same regning.",
                takstkode=kode,
            )
        required, wanted = _diagnose_requirement(row.krever_diagnose)
        if not required:
            return
        diagnoser = [d.kode for d in regning.diagnoser or ()]
        if not wanted and diagnoser:
            return
        if wanted and any(_diagnose_matches(w, d) for w in wanted for d in diagnoser):
            return
        which = f" ({', '.join(wanted)})" if wanted else ""
        has = "the regning has no diagnosis" if not diagnoser else "the regning has none of them"
        self.add(
            regning,
            TAKST_REQUIRES_DIAGNOSE,
            f"takst {kode} requires a diagnosis{which}, and {has}.",
            takstkode=kode,
        )

    def regning_total(
        self, regning: Regning, takster: list[Takst], valid: dict[int, Takstkode]
    ) -> None:
        """The regning's amount against its takster, repetitions priced by the table. Only
        when every amount on the regning is a takst the table knows."""
        priced_elsewhere = regning.nlkkoder or any(
            p.belop is not None for p in regning.prosedyrekoder or ()
        )
        if not takster or len(valid) != len(takster) or priced_elsewhere:
            return
        zero = regning.belop == 0
        if zero and (self.fagomraade is None or self.fagomraade in EGENANDEL_REPORT_FAGOMRAADER):
            return  # an egenandel report (None: the praksis may be a tannlege's)
        expected = sum(
            (t.belop * repetition_factor(valid[i], t.antall) for i, t in enumerate(takster)),
            Decimal(0),
        ).quantize(CENT, ROUND_HALF_UP)
        if regning.belop.quantize(CENT, ROUND_HALF_UP) != expected:
            repeated = any(t.antall > 1 for t in takster)
            self.add(
                regning,
                REGNING_AMOUNT_DIFFERS,
                f"its amount is {_amount(regning.belop)}, but its takster come to "
                f"{_amount(expected)}"
                + (" (repetitions at the table's repetisjonsprosent)" if repeated else "")
                + (
                    "; a regning of 0 reports egenandeler only for tannlege and tannpleier"
                    if zero
                    else ""
                )
                + ".",
            )

    def nlkkoder(self, regning: Regning, day: date) -> None:
        if not regning.nlkkoder or not self.table.has_nlk:
            return
        for nlk in regning.nlkkoder:
            rows = self.table.nlk(nlk.kode)
            if not rows:
                self.add(
                    regning,
                    NLK_UNKNOWN,
                    f"NLK code {nlk.kode} is not in the laboratory code list (nlkkoder).",
                    takstkode=nlk.kode,
                )
            elif not any(r.covers(day) for r in rows):
                periods = ", ".join(
                    f"{_day_text(r.fradato) if r.fradato else '…'}–"
                    f"{_day_text(r.tildato) if r.tildato else ''}"
                    for r in rows
                )
                self.add(
                    regning,
                    NLK_NOT_VALID_ON_DATE,
                    f"NLK code {nlk.kode} was not valid on {_day_text(day)} (valid {periods}).",
                    takstkode=nlk.kode,
                )


def precheck_melding(
    melding: Behandlerkravmelding | Behandlerkrav,
    table: TakstTable,
    *,
    now: datetime,
    praksis_fagomraade: str | None,
) -> list[Finding]:
    """Every finding for the claim, regning by regning in the claim's order.

    `now` is the moment the claim is checked (aware; KUHR compares with its receipt time).
    `praksis_fagomraade` (LE, TH …; see `fagomraade_for`) picks the takst codes that count;
    None accepts a code of any fagområde."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    krav = melding.behandlerkrav if isinstance(melding, Behandlerkravmelding) else melding
    check = _Check(table, now.astimezone(OSLO), praksis_fagomraade)
    if not table.fagomraader:
        check.add(
            None,
            TAKSTER_UNAVAILABLE,
            "No takst table has been synced for this environment, so takster were not "
            "checked; run `bkm-bridge takster sync`.",
        )
    elif not check.check_takster:
        check.add(
            None,
            TAKSTER_UNAVAILABLE,
            f"The takst table has no takstkoder for fagområde {praksis_fagomraade}, so takster "
            f"were not checked; run `bkm-bridge takster sync --fagomraade {praksis_fagomraade}`.",
        )
    for regning in krav.regninger:
        check.regning(regning, krav.regninger)
    return check.findings


# --------------------------------------------------------------------------- the step


@dataclass(frozen=True)
class PrecheckOutcome:
    findings: list[Finding]
    mode: Mode

    @property
    def blocks(self) -> bool:
        return self.mode is Mode.BLOCK and any(f.blocking for f in self.findings)

    def dicts(self) -> list[dict[str, Any]]:
        return [f.as_dict(blocking=self.mode is Mode.BLOCK) for f in self.findings]

    def problems(self) -> list[Problem]:
        """The findings as problems; in block mode with `PRECHECK_BLOCKED` saying why the claim
        was not sent."""
        blocking = self.mode is Mode.BLOCK
        out = [f.as_problem(blocking=blocking) for f in self.findings]
        if self.blocks:
            n = sum(1 for f in self.findings if f.blocking)
            out.append(
                Problem(
                    "PRECHECK_BLOCKED",
                    f"The pre-control found {n} problem(s) KUHR is expected to reject and "
                    "precheck.mode is block, so the claim was not sent. Fix them, or set "
                    'precheck.mode = "warn" to send anyway.',
                )
            )
        return out
