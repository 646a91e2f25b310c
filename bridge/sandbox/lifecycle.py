"""The life of a claim on the sandbox clock. When a behandling starts, every later moment is
drawn once (from the seeded RNG) and stored: klar_til_behandling halfway to
sendt_til_behandling, which comes after 1–2 s, control done
10–20 s later (or hours later for the share that goes to manual control), vedtak at the next
working-day 16:00 (one vedtakId per praksis and run), payment 2–3 working days after that.
Statuses are then read off the clock lazily, so advancing the clock shows them at once.
"""

from __future__ import annotations

import math
import random
import uuid
from decimal import Decimal

from bridge.sandbox.merknader import MerknadRef
from bridge.sandbox.settings import SandboxSettings
from bridge.sandbox.store import Behandling, ClaimStore, RegningRecord, Vedtak
from bridge.sandbox.workdays import next_vedtak_run, utbetaling_time

INNSENDING_ID_START = 100001812530000
VEDTAK_ID_START = 100001812900000


def kid_for(number: str) -> str:
    """A KID: the number's last 9 digits and a MOD10 (Luhn) check digit."""
    digits = number[-9:]
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return digits + str((10 - total % 10) % 10)


class Lifecycle:
    def __init__(self, settings: SandboxSettings, store: ClaimStore, seed: int) -> None:
        self._settings = settings
        self._store = store
        self.rng = random.Random(seed)
        self._next_innsending = INNSENDING_ID_START
        self._next_vedtak = VEDTAK_ID_START

    def new_melding_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _innsending_id(self) -> int:
        self._next_innsending += 1
        return self._next_innsending

    def start(
        self,
        *,
        start: float,
        praksis_id: str,
        regninger: tuple[RegningRecord, ...],
        utbetales: Decimal,
        rebehandling: bool = False,
        innsending_merknader: tuple[MerknadRef, ...] = (),
        vedtak_merknader: tuple[MerknadRef, ...] = (),
    ) -> Behandling:
        """A behandling beginning at `start` (receipt, or the moment of a rebehandling)."""
        s = self._settings
        rng = self.rng
        # A rebehandling concerns a melding already received: it goes straight to control.
        sendt_at = start if rebehandling else start + rng.uniform(*s.mottatt_seconds)
        # The basic technical check is done before the melding is sent on: klar_til_behandling
        # in between (no draw of its own, so seeded runs keep their other times).
        klar_at = start + (sendt_at - start) / 2
        kontroll_at = sendt_at + rng.uniform(*s.kontroll_seconds)
        manuell_at = None
        if s.manual_control_share > 0 and rng.random() < s.manual_control_share:
            manuell_at = kontroll_at
            kontroll_at = manuell_at + rng.uniform(*s.manual_control_seconds)
        any_godkjent = any(r.godkjent for r in regninger)
        held = (
            not rebehandling
            and s.unsent_control_share > 0
            and rng.random() < s.unsent_control_share
        )
        if held:  # ready, but never sent to control: nothing follows
            return Behandling(
                innsending_id=self._innsending_id(),
                rebehandling=rebehandling,
                klar_at=klar_at,
                sendt_at=math.inf,
                manuell_at=None,
                kontrollert_at=math.inf,
                regninger=regninger,
                utbetales=utbetales,
                any_godkjent=any_godkjent,
                vedtak=Vedtak("", praksis_id, math.inf, math.inf, ""),
                ikke_til_kontroll=True,
            )
        vedtak = self._vedtak(praksis_id, kontroll_at)
        if any_godkjent:
            vedtak.total += utbetales
        return Behandling(
            innsending_id=self._innsending_id(),
            rebehandling=rebehandling,
            klar_at=klar_at,
            sendt_at=sendt_at,
            manuell_at=manuell_at,
            kontrollert_at=kontroll_at,
            regninger=regninger,
            utbetales=utbetales,
            any_godkjent=any_godkjent,
            vedtak=vedtak,
            innsending_merknader=innsending_merknader,
            vedtak_merknader=vedtak_merknader,
        )

    def _vedtak(self, praksis_id: str, kontrollert_at: float) -> Vedtak:
        run = next_vedtak_run(kontrollert_at)
        key = (praksis_id, run.date())
        vedtak = self._store.vedtak.get(key)
        if vedtak is None:
            self._next_vedtak += 1
            vedtak_id = str(self._next_vedtak)
            days = self.rng.randint(*self._settings.utbetaling_working_days)
            vedtak = Vedtak(
                vedtak_id=vedtak_id,
                praksis_id=praksis_id,
                run_at=run.timestamp(),
                utbetalt_at=utbetaling_time(run.date(), days).timestamp(),
                kid=kid_for(vedtak_id),
            )
            self._store.vedtak[key] = vedtak
        return vedtak
