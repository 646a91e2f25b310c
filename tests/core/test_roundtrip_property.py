"""Property: any claim the legacy XML can carry survives model → XML → convert unchanged.

Claims are generated within what the XML can hold (see `bridge.core.legacy.writer`): no fields
without an XML source, the same teeth on every takst of a regning, henvistFra being the
relatertBehandler, trimmed text, and tokens without blanks where the schema collapses them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.paths import FIXTURES

from bridge.core.convert import ConvertContext, convert
from bridge.core.legacy.writer import write_bkm_xml
from bridge.core.model import Behandlerkrav, Behandlerkravmelding, dump_json, load_json, to_jsonable
from bridge.core.timezone import OSLO

PRAKSIS_ID = "1004326178"
ICPC2 = "2.16.578.1.12.4.1.1.7170"
ICD10 = "2.16.578.1.12.4.1.1.7110"

LETTERS = "abcdefghijklmnopqrstuvwxyzæøåABCDEFGHIJKLMNOPQRSTUVWXYZÆØÅéüöÉŠ"


def _word(min_size: int = 1, max_size: int = 12) -> st.SearchStrategy[str]:
    return st.text(LETTERS, min_size=min_size, max_size=max_size)


names = st.lists(_word(), min_size=1, max_size=3).flatmap(
    lambda words: st.sampled_from([" ", "-"]).map(lambda sep: sep.join(words))
)
# Free text with markup characters, punctuation and inner line breaks (trimmed at the ends,
# as the mapping trims text).
merknader = (
    st.text(LETTERS + " 0123456789.,;:!?&<>\"'/()%€\n", min_size=1, max_size=80)
    .map(str.strip)
    .filter(bool)
)
codes = st.from_regex(r"[A-Z0-9]{1,6}", fullmatch=True)
digits = st.from_regex(r"[0-9]{1,11}", fullmatch=True)
fnr = st.from_regex(r"[0-9]{11}", fullmatch=True)
hpr = st.from_regex(r"[0-9]{7,9}", fullmatch=True)
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2035, 12, 31))
amounts = st.integers(min_value=0, max_value=5_000_000).map(lambda ore: Decimal(ore).scaleb(-2))


def _oslo(instant: datetime) -> datetime:
    return instant.astimezone(OSLO)


# Any instant (whole seconds), plus instants around the DST changes (last Sundays of March and
# October, 00:00-03:00 UTC), where the Oslo wall clock skips or repeats an hour.
any_instant = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
).map(lambda d: _oslo(d.replace(microsecond=0)))


def _last_sunday(year: int, month: int) -> date:
    day = date(year, month, 31)
    return day - timedelta(days=(day.weekday() + 1) % 7)


dst_instant = st.builds(
    lambda year, month, seconds: _oslo(
        datetime.combine(_last_sunday(year, month), datetime.min.time(), UTC)
        + timedelta(seconds=seconds)
    ),
    st.integers(2005, 2035),
    st.sampled_from([3, 10]),
    st.integers(0, 3 * 3600 - 1),
)
tidspunkter = st.one_of(any_instant, dst_instant)


def _wall_clock_is_ambiguous(moment: datetime) -> bool:
    """True when the Oslo wall-clock reading of `moment` names two instants (autumn hour)."""
    wall = moment.replace(tzinfo=None)
    first = wall.replace(tzinfo=OSLO, fold=0)
    second = wall.replace(tzinfo=OSLO, fold=1)
    return first.utcoffset() != second.utcoffset()


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


diagnoser = st.lists(
    st.fixed_dictionaries({"kode": codes}, optional={"kodeverk": st.sampled_from([ICPC2, ICD10])}),
    min_size=1,
    max_size=3,
)


@st.composite
def pasienter(draw: st.DrawFn) -> dict[str, Any]:
    pasient: dict[str, Any] = {"etternavn": draw(names)}
    optional = {
        "fornavn": names,
        "kjonn": st.sampled_from(["1", "2", "9"]),
        "trygdenasjon": st.sampled_from(["NO", "SE", "DK", "DE"]),
        "identifikasjon": st.fixed_dictionaries(
            {"id": fnr}, optional={"type": st.sampled_from(["FNR", "DNR", "HNR"])}
        ),
        "fodselsdato": dates,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            pasient[key] = draw(strategy)
    # The documented rules (bridge.core.rules): without an ident, fødselsdato and both names.
    if "identifikasjon" not in pasient:
        pasient.setdefault("fodselsdato", draw(dates))
        pasient.setdefault("fornavn", draw(names))
    return pasient


@st.composite
def regninger(draw: st.DrawFn) -> dict[str, Any]:
    kreditering = draw(_optional(st.booleans()))
    sign = -1 if kreditering else 1
    teeth = draw(
        _optional(st.lists(st.from_regex(r"[0-4][0-8][IMDOBPLG]?", fullmatch=True), min_size=1))
    )
    takster = [
        {
            "belop": sign * draw(amounts),
            "kode": draw(st.from_regex(r"[0-9]{1,3}[a-z]{0,2}|L[0-9]{1,2}", fullmatch=True)),
            "antall": draw(st.integers(1, 9)),
            **({"tenner": [{"tannkode": t} for t in teeth]} if teeth else {}),
        }
        for _ in range(draw(st.integers(1, 4)))
    ]
    regning: dict[str, Any] = {
        "guid": str(draw(st.uuids())),
        "regningsnummer": draw(digits),
        "tidspunkt": draw(tidspunkter),
        "takster": takster,
        "belop": sign * draw(amounts),
    }
    relatert = draw(
        _optional(
            st.fixed_dictionaries(
                {"id": hpr}, optional={"type": st.sampled_from(["HPR", "FNR", "DNR"])}
            )
        )
    )
    henvisning = {
        key: value
        for key, value in {
            "dato": draw(_optional(dates)),
            "id": draw(_optional(digits)),
            "diagnoser": draw(_optional(diagnoser)),
            # The XML has one RelatertBehandler, read back as both fields.
            "henvistFra": {"id": relatert["id"]} if relatert else None,
        }.items()
        if value is not None
    }
    optional: dict[str, Any] = {
        "korrigeringBetaltEgenandel": st.booleans(),
        "betaltEgenandel": st.booleans(),
        "merknad": merknader,
        "pasient": pasienter(),
        "arsakFriEgenandel": st.sampled_from(["A", "B", "F", "G", "H"]),
        "diagnoser": diagnoser,
        "sjeldenMedisinskTilstand": codes,
        "utforendeBehandler": st.fixed_dictionaries(
            {"id": hpr, "type": st.sampled_from(["FNR", "DNR", "HPR"])}
        ),
        "moderasjonskode": st.just("S"),
        "stonadspunkt": st.from_regex(r"[0-9]{1,2}[a-z]?", fullmatch=True),
        "prosedyrekoder": st.lists(
            st.fixed_dictionaries({"kode": codes}, optional={"kodeverk": st.just("M")}),
            min_size=1,
            max_size=3,
        ),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            regning[key] = draw(strategy)
    # The documented rules (bridge.core.rules): a korrigering only sets betaltEgenandel to
    # true; stønadspunkt 1 names the sjelden medisinsk tilstand.
    if regning.get("korrigeringBetaltEgenandel"):
        regning["betaltEgenandel"] = True
    if regning.get("stonadspunkt") == "1":
        regning.setdefault("sjeldenMedisinskTilstand", draw(codes))
    if kreditering is not None:
        regning["kreditering"] = kreditering
    if relatert:
        regning["relatertBehandler"] = relatert
    if henvisning:
        regning["henvisning"] = henvisning
    return regning


@st.composite
def krav(draw: st.DrawFn) -> Behandlerkrav:
    items = draw(st.lists(regninger(), min_size=1, max_size=5))
    data: dict[str, Any] = {
        "regninger": items,
        "antallRegninger": len(items),
        "belop": sum((r["belop"] for r in items), Decimal("0.00")),
    }
    for key, strategy in {"avdeling": names, "navnEPJ": names, "reshId": digits}.items():
        value = draw(_optional(strategy))
        if value is not None:
            data[key] = value
    return Behandlerkrav.model_validate(data)


@st.composite
def write_options(draw: st.DrawFn) -> dict[str, Any]:
    encoding = draw(st.sampled_from(["UTF-8", "ISO-8859-1", "windows-1252", "UTF-16"]))
    bom = encoding == "UTF-16" or (encoding == "UTF-8" and draw(st.booleans()))
    return {
        "envelope": draw(st.sampled_from(["msghead", "bare", "base64"])),
        "encoding": encoding,
        "bom": bom,
        "layout": draw(st.sampled_from(["refusjon", "sumkrav"])),
        "guid_tag": draw(st.sampled_from(["GUID", "Guid"])),
        "local_time": draw(st.booleans()),
        "pretty": draw(st.booleans()),
    }


def _roundtrip(claim: Behandlerkrav, options: dict[str, Any]) -> Behandlerkrav:
    data = write_bkm_xml(claim, **options)
    result = convert(data, ConvertContext(praksis_id=PRAKSIS_ID))
    assert result.problems == [], [p.format("generated.xml") for p in result.problems]
    assert result.melding is not None
    assert result.melding.praksisId == PRAKSIS_ID
    assert result.behandlerkrav is not None
    return result.behandlerkrav


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(claim=krav(), options=write_options())
def test_written_claims_convert_back_unchanged(
    claim: Behandlerkrav, options: dict[str, Any]
) -> None:
    if options["local_time"] and any(
        _wall_clock_is_ambiguous(r.tidspunkt) for r in claim.regninger
    ):
        # A wall-clock time in the repeated autumn hour cannot say which of the two instants
        # it was; those claims go through with explicit offsets instead.
        options["local_time"] = False
    back = _roundtrip(claim, options)
    assert dump_json(back) == dump_json(claim)
    assert to_jsonable(back) == to_jsonable(claim)  # amounts compared as Decimal
    assert back.belop == sum((r.belop for r in back.regninger), Decimal(0))


def _one_regning_at(moment: datetime) -> Behandlerkrav:
    return Behandlerkrav.model_validate(
        {
            "regninger": [
                {
                    "guid": "3e0f9a1c-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
                    "regningsnummer": "1",
                    "tidspunkt": moment,
                    "takster": [{"belop": Decimal("100.00"), "kode": "2ad"}],
                    "belop": Decimal("100.00"),
                }
            ],
            "antallRegninger": 1,
            "belop": Decimal("100.00"),
        }
    )


# 2014-10-26: Oslo clocks go back from 03:00 CEST to 02:00 CET, so 02:30 happens twice.
FIRST_0230 = datetime(2014, 10, 26, 0, 30, tzinfo=UTC)  # 02:30+02:00
SECOND_0230 = datetime(2014, 10, 26, 1, 30, tzinfo=UTC)  # 02:30+01:00


@pytest.mark.parametrize("instant", [FIRST_0230, SECOND_0230])
def test_repeated_autumn_hour_round_trips_with_offsets(instant: datetime) -> None:
    claim = _one_regning_at(instant.astimezone(OSLO))
    back = _roundtrip(claim, {"local_time": False})
    assert back.regninger[0].tidspunkt == instant


def test_repeated_autumn_hour_as_wall_clock_reads_as_the_first_occurrence() -> None:
    claim = _one_regning_at(SECOND_0230.astimezone(OSLO))
    back = _roundtrip(claim, {"local_time": True})
    assert back.regninger[0].tidspunkt.isoformat() == "2014-10-26T02:30:00+02:00"


def test_spring_gap_instants_are_written_as_existing_wall_clock_times() -> None:
    # 2014-03-30 01:00 UTC is the instant Oslo jumps from 02:00 CET to 03:00 CEST.
    claim = _one_regning_at(datetime(2014, 3, 30, 1, 0, tzinfo=UTC).astimezone(OSLO))
    back = _roundtrip(claim, {"local_time": True})
    assert back.regninger[0].tidspunkt.isoformat() == "2014-03-30T03:00:00+02:00"


@pytest.mark.parametrize("name", ["alle-felter", "seed-arbeidsflyt", "seed-arbeidsflyt-rettet"])
@pytest.mark.parametrize("envelope", ["msghead", "bare", "base64"])
def test_reference_claims_round_trip(name: str, envelope: str) -> None:
    text = (FIXTURES / f"{name}.expected.json").read_text(encoding="utf-8")
    melding = Behandlerkravmelding.model_validate(load_json(text))
    data = write_bkm_xml(melding.behandlerkrav, envelope=envelope)
    result = convert(data, ConvertContext(praksis_id=melding.praksisId))
    assert result.problems == []
    assert result.melding is not None
    assert dump_json(result.melding) == dump_json(melding)
