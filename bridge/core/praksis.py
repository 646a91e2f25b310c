"""Which praksisId a claim is sent for: the legacy XML does not carry one.

In order: an explicit id (flag); the first configured rule that matches (watched folder,
sender orgnr, sender HPR); otherwise automatic – the actor's praksiser with status `ok` whose
orgnr is the MsgHead sender's and whose gyldigePerioder cover every regning's date. Zero or
several candidates is an error that lists what there is to choose from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

from bridge.core.model import Behandlerkrav, Praksis, PraksisListe
from bridge.core.timezone import OSLO
from bridge.errors import BridgeError


class PraksisRule(Protocol):
    """A configured rule (`[[praksis.rules]]`, bridge.config.PraksisRule): claims matching
    every given criterion go to `praksis_id`."""

    @property
    def praksis_id(self) -> str: ...
    @property
    def folder(self) -> Path | None: ...
    @property
    def sender_orgnr(self) -> str | None: ...
    @property
    def sender_hpr(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Sender:
    """What the file says about who sent it (from the MsgHead envelope, when there is one)."""

    orgnr: str | None = None
    hpr: str | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    praksis_id: str
    how: str  # "explicit", "rule N", "automatic"
    praksis: Praksis | None = None


class PraksisResolutionError(BridgeError):
    """No single praksis fits; `candidates` are the praksiser worth showing the user."""

    def __init__(self, message: str, candidates: Sequence[Praksis] = ()) -> None:
        self.candidates = list(candidates)
        super().__init__(message)

    def __str__(self) -> str:
        text = self.args[0]
        if self.candidates:
            text += "\n" + "\n".join("  " + describe(p) for p in self.candidates)
        return text


def periods_text(praksis: Praksis) -> str:
    """`2020-01-01–2028-07-15, 2029-01-01–` (an open end stays open)."""
    return ", ".join(
        f"{p.fraOgMedDato.isoformat()}–{p.tilOgMedDato.isoformat() if p.tilOgMedDato else ''}"
        for p in praksis.gyldigePerioder
    )


def describe(praksis: Praksis) -> str:
    """One line naming a praksis: id, navn, orgnr, type, status and periods."""
    periods = periods_text(praksis)
    return (
        f"{praksis.praksisId}  {praksis.navn or '-'}  orgnr {praksis.orgnr or '-'}  "
        f"type {praksis.type or '-'}  status {praksis.status}  gyldig {periods or '-'}"
    )


def regning_dates(krav: Behandlerkrav) -> list[date]:
    """Each regning's day in Norwegian time (a claim at 00:30 belongs to that Oslo day)."""
    return sorted({r.tidspunkt.astimezone(OSLO).date() for r in krav.regninger})


def _is_within(folder: Path, rule_folder: Path) -> bool:
    try:
        folder.resolve().relative_to(rule_folder.resolve())
    except ValueError:
        return False
    return True


def matching_rule(
    rules: Sequence[PraksisRule], sender: Sender, folder: Path | None
) -> tuple[int, PraksisRule] | None:
    """The first rule whose every given criterion matches (1-based index, rule)."""
    for number, rule in enumerate(rules, start=1):
        if rule.folder is not None and (folder is None or not _is_within(folder, rule.folder)):
            continue
        if rule.sender_orgnr is not None and rule.sender_orgnr != sender.orgnr:
            continue
        if rule.sender_hpr is not None and rule.sender_hpr != sender.hpr:
            continue
        return number, rule
    return None


def automatic(praksiser: PraksisListe, sender: Sender, krav: Behandlerkrav) -> Praksis:
    """The one ok praksis of the sender's orgnr valid on every regning's date."""
    days = regning_dates(krav)
    when = ", ".join(d.isoformat() for d in days)
    if not praksiser.praksiser:
        raise PraksisResolutionError(
            "no praksis is registered for this actor at KUHR; register one with Helfo "
            "or check that the token is for the right organisation"
        )
    if sender.orgnr is None:
        raise PraksisResolutionError(
            "the file names no sender orgnr (no MsgHead), so the praksis cannot be chosen "
            "automatically; give --praksis-id or a [[praksis.rules]] entry. Praksiser:",
            praksiser.praksiser,
        )
    same_org = [p for p in praksiser.praksiser if p.orgnr == sender.orgnr]
    fitting = [p for p in same_org if p.status == "ok" and all(p.valid_on(d) for d in days)]
    if len(fitting) == 1:
        return fitting[0]
    if not fitting:
        if same_org:
            reason = (
                f"no praksis of orgnr {sender.orgnr} has status ok and is valid on {when}; "
                "give --praksis-id or a [[praksis.rules]] entry. Praksiser of that orgnr:"
            )
            raise PraksisResolutionError(reason, same_org)
        raise PraksisResolutionError(
            f"no praksis has the sender's orgnr {sender.orgnr}; give --praksis-id or a "
            "[[praksis.rules]] entry. Praksiser:",
            praksiser.praksiser,
        )
    raise PraksisResolutionError(
        f"{len(fitting)} praksiser of orgnr {sender.orgnr} are ok and valid on {when}; "
        "choose one with --praksis-id or a [[praksis.rules]] entry:",
        fitting,
    )


def resolve_praksis(
    krav: Behandlerkrav,
    *,
    sender: Sender,
    explicit: str | None = None,
    rules: Sequence[PraksisRule] = (),
    folder: Path | None = None,
    praksiser: Callable[[], PraksisListe] | PraksisListe | None = None,
) -> Resolution:
    """Explicit, then rules, then automatic. `praksiser` is fetched only when needed."""
    if explicit:
        return Resolution(explicit, "explicit")
    hit = matching_rule(rules, sender, folder)
    if hit is not None:
        number, rule = hit
        return Resolution(rule.praksis_id, f"rule {number}")
    if praksiser is None:
        raise PraksisResolutionError("no praksisId given and no praksis list to choose from")
    listing = praksiser() if callable(praksiser) else praksiser
    found = automatic(listing, sender, krav)
    return Resolution(found.praksisId, "automatic", found)
