"""Choosing the praksisId: explicit, configured rules, automatic (single, none, ambiguous)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import paths

from bridge.config import PraksisRule
from bridge.core.model import Behandlerkrav, PraksisListe, load_json
from bridge.core.praksis import PraksisResolutionError, Sender, resolve_praksis

FIXTURES = paths.FIXTURES / "kuhr"
KURBADET = Sender(orgnr="999999999")


@pytest.fixture(scope="module")
def krav() -> Behandlerkrav:
    """The seed's workflow claim: regninger on 2026-01-06 and (by mistake) 2026-02-06."""
    data = load_json((FIXTURES / "seed-workflow-claim.json").read_text(encoding="utf-8"))
    return Behandlerkrav.model_validate(data["behandlerkrav"])


def _seed_listing() -> dict[str, Any]:
    return load_json((FIXTURES / "seed-praksiser.json").read_text(encoding="utf-8"))


def _listing(*extra: dict[str, Any]) -> PraksisListe:
    data = _seed_listing()
    data["praksiser"].extend(extra)
    return PraksisListe.model_validate(data)


def _praksis(praksis_id: str, orgnr: str, fra: str, til: str | None, status: str = "ok") -> dict:
    return {
        "praksisId": praksis_id,
        "navn": f"Praksis {praksis_id}",
        "orgnr": orgnr,
        "type": "FALE",
        "status": status,
        "gyldigePerioder": [{"fraOgMedDato": fra, "tilOgMedDato": til}],
    }


def test_automatic_single_match(krav: Behandlerkrav) -> None:
    found = resolve_praksis(krav, sender=KURBADET, praksiser=_listing())
    assert (found.praksis_id, found.how) == ("1004326178", "automatic")
    assert found.praksis is not None and found.praksis.navn == "Kurbadet Helsesenter"


def test_listing_is_fetched_lazily(krav: Behandlerkrav) -> None:
    calls: list[int] = []

    def fetch() -> PraksisListe:
        calls.append(1)
        return _listing()

    resolve_praksis(krav, sender=KURBADET, explicit="42", praksiser=fetch)
    assert calls == []
    resolve_praksis(krav, sender=KURBADET, praksiser=fetch)
    assert calls == [1]


def test_explicit_wins_over_everything(krav: Behandlerkrav) -> None:
    rules = [PraksisRule(sender_orgnr="999999999", praksis_id="from-rule")]
    found = resolve_praksis(
        krav, sender=KURBADET, explicit="1004326468", rules=rules, praksiser=_listing()
    )
    assert (found.praksis_id, found.how) == ("1004326468", "explicit")


def test_rules_first_match_by_orgnr_hpr_and_folder(krav: Behandlerkrav, tmp_path: Path) -> None:
    watched = tmp_path / "legevakt"
    rules = [
        PraksisRule(folder=watched, praksis_id="by-folder"),
        PraksisRule(sender_hpr="565501872", praksis_id="by-hpr"),
        PraksisRule(sender_orgnr="999999999", praksis_id="by-orgnr"),
    ]
    listing = _listing()
    in_folder = resolve_praksis(
        krav, sender=KURBADET, rules=rules, folder=watched / "2026", praksiser=listing
    )
    assert (in_folder.praksis_id, in_folder.how) == ("by-folder", "rule 1")
    by_hpr = resolve_praksis(
        krav, sender=Sender(orgnr="999999999", hpr="565501872"), rules=rules,
        folder=tmp_path / "other", praksiser=listing,
    )  # fmt: skip
    assert (by_hpr.praksis_id, by_hpr.how) == ("by-hpr", "rule 2")
    by_org = resolve_praksis(krav, sender=KURBADET, rules=rules, praksiser=listing)
    assert (by_org.praksis_id, by_org.how) == ("by-orgnr", "rule 3")
    # No rule matches another sender: falls through to automatic.
    other = Sender(orgnr="999999998")
    assert resolve_praksis(krav, sender=other, rules=rules, praksiser=listing).praksis_id == (
        "1004326468"
    )


def test_rule_with_two_criteria_needs_both(krav: Behandlerkrav) -> None:
    rules = [PraksisRule(sender_orgnr="999999999", sender_hpr="1", praksis_id="both")]
    found = resolve_praksis(krav, sender=KURBADET, rules=rules, praksiser=_listing())
    assert found.how == "automatic"


def test_none_when_no_praksis_of_the_orgnr(krav: Behandlerkrav) -> None:
    with pytest.raises(PraksisResolutionError) as caught:
        resolve_praksis(krav, sender=Sender(orgnr="123456789"), praksiser=_listing())
    message = str(caught.value)
    assert "no praksis has the sender's orgnr 123456789" in message
    # The error lists what there is: id, navn, orgnr, type, periods.
    assert "1004326178  Kurbadet Helsesenter  orgnr 999999999  type FALE" in message
    assert "2020-01-01–2028-07-15" in message
    assert "1004326468  Sentrum Legevakt" in message


def test_none_when_not_valid_on_every_regning_date(krav: Behandlerkrav) -> None:
    # Valid until 2026-01-31: covers regninger 4 and 5 but not 6 (2026-02-06).
    listing = PraksisListe.model_validate(
        {"praksiser": [_praksis("77", "555555555", "2020-01-01", "2026-01-31")]}
    )
    with pytest.raises(PraksisResolutionError) as caught:
        resolve_praksis(krav, sender=Sender(orgnr="555555555"), praksiser=listing)
    assert "valid on 2026-01-06, 2026-02-06" in str(caught.value)
    assert [p.praksisId for p in caught.value.candidates] == ["77"]


def test_status_not_ok_is_not_a_candidate(krav: Behandlerkrav) -> None:
    listing = PraksisListe.model_validate(
        {"praksiser": [_praksis("78", "555555555", "2020-01-01", None, status="ikke_ok")]}
    )
    with pytest.raises(PraksisResolutionError, match="status ikke_ok"):
        resolve_praksis(krav, sender=Sender(orgnr="555555555"), praksiser=listing)


def test_ambiguous_lists_the_candidates(krav: Behandlerkrav) -> None:
    listing = _listing(_praksis("1004326999", "999999999", "2025-01-01", None))
    with pytest.raises(PraksisResolutionError) as caught:
        resolve_praksis(krav, sender=KURBADET, praksiser=listing)
    assert "2 praksiser of orgnr 999999999" in str(caught.value)
    assert sorted(p.praksisId for p in caught.value.candidates) == ["1004326178", "1004326999"]
    assert "--praksis-id" in str(caught.value)


def test_no_sender_orgnr_needs_explicit_choice(krav: Behandlerkrav) -> None:
    with pytest.raises(PraksisResolutionError, match="names no sender orgnr"):
        resolve_praksis(krav, sender=Sender(), praksiser=_listing())


def test_empty_listing(krav: Behandlerkrav) -> None:
    with pytest.raises(PraksisResolutionError, match="no praksis is registered"):
        resolve_praksis(krav, sender=KURBADET, praksiser=PraksisListe())
