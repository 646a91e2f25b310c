"""One sandbox's state and operations, without HTTP: what the routes in app.py and admin.py
call. All mutation happens on the server's event loop; a lock guards the rest (bench fills).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import simplejson

from bridge.core.model import (
    BehandlerkravmeldingListe,
    BehandlerkravmeldingStatus,
    Feilkode,
    Feilmelding,
    Meldingsstatus,
    PraksisListe,
    SendInnResponse,
)
from bridge.sandbox import views
from bridge.sandbox.clock import OSLO, SandboxClock, from_epoch
from bridge.sandbox.control import ControlContext, control
from bridge.sandbox.crypto import JweError, KeyRing, jwe_key_from_jwk, unwrap_nested_jwt
from bridge.sandbox.faults import FaultConfig, FaultState
from bridge.sandbox.keys import KeyMaterial, load_or_create_keys
from bridge.sandbox.lifecycle import Lifecycle
from bridge.sandbox.registry import Registry, build_registry
from bridge.sandbox.settings import (
    ADMIN_PREFIX,
    DEV_CLIENT_ID,
    HELSEID_AUDIENCE,
    OPNE_DATA_PREFIX,
    SCOPE_HELSEID,
    SCOPE_MASKINPORTEN,
    SandboxSettings,
)
from bridge.sandbox.store import ClaimStore, Melding, RegningRecord
from bridge.sandbox.takster import TakstTable, bundled_rows
from bridge.sandbox.technical import TechnicalResult, check_json, content_digest, feil
from bridge.sandbox.tokens import AccessGrant, TokenService


class Sandbox:
    """A sandbox's registry, keys, tokens, clock, claims and faults, and what can be done
    with them."""

    def __init__(self, settings: SandboxSettings, keys: KeyMaterial | None = None) -> None:
        self._lock = threading.RLock()
        self.keys = keys or load_or_create_keys(settings.state_dir, settings.jwe_key_bits)
        self.registry: Registry = build_registry(self.keys.dev_client, settings.config)
        self.settings = settings
        self.clock = SandboxClock(self.settings.clock, self.settings.speed)
        self.keyring = KeyRing(jwe_key_from_jwk(self.keys.jwe), bits=self.settings.jwe_key_bits)
        self.tokens = TokenService(self.settings, self.registry, self.keys.issuer)
        self.takster = TakstTable(bundled_rows())
        self.takster.add(self.registry.takst_rows)
        self.faults = FaultState()
        self._reset_state()

    def _reset_state(self) -> None:
        self.store = ClaimStore()
        self.lookups = {"overview": 0, "details": 0}  # status requests served, for tests
        self.lifecycle = Lifecycle(self.settings, self.store, self.settings.seed)
        self.faults.reset(FaultConfig.from_json(self.settings.faults), self.settings.seed)

    # ------------------------------------------------------------------ facts for clients

    @property
    def info(self) -> dict[str, Any]:
        s = self.settings
        return {
            "environment": "sandbox",
            "base_url": s.base_url,
            "api_url": s.api_url,
            "jwks_url": s.api_url + "/jwk",
            "client_id": DEV_CLIENT_ID,
            "private_jwk": {
                **simplejson.loads(self.keys.dev_client.export_private()),
                "alg": "RS256",
            },
            "maskinporten": {
                "token_url": s.maskinporten_token_url,
                "audience": s.maskinporten_issuer,
                "scope": SCOPE_MASKINPORTEN,
            },
            "helseid": {
                "token_url": s.helseid_token_url,
                "audience": s.helseid_token_url,
                "scope": SCOPE_HELSEID,
                "api_audience": HELSEID_AUDIENCE,
            },
            "admin_url": s.base_url + ADMIN_PREFIX,
            "opne_data_url": s.base_url + OPNE_DATA_PREFIX,
            "clock": s.clock.astimezone(OSLO).isoformat(timespec="seconds"),
            "speed": s.speed,
        }

    # ------------------------------------------------------------------ API operations

    def authenticate(self, authorization: str | None) -> AccessGrant:
        return self.tokens.authenticate(authorization)

    def praksiser(self, grant: AccessGrant) -> PraksisListe:
        actor = self.registry.actors.get(grant.actor)
        entries = actor.praksiser.values() if actor else ()
        return PraksisListe(praksiser=[e.praksis for e in entries])

    def submit(self, grant: AccessGrant, body: bytes) -> tuple[int, SendInnResponse]:
        """Decrypt, then `receive`; (HTTP status, answer). Decryption needs no lock."""
        try:
            payload = self.keyring.decrypt(body, max_plaintext=self.settings.max_decompressed_bytes)
            payload, nested = unwrap_nested_jwt(payload)
        except JweError as exc:
            with self._lock:
                self.store.stats.received += 1
                problem = feil(Feilkode.UKJENT_FORMAT, str(exc))
                return self._reject(grant, self.clock.now(), None, [problem])
        return self.receive(grant, payload, nested=nested)

    def receive(
        self, grant: AccessGrant, payload: bytes, *, nested: bool = False
    ) -> tuple[int, SendInnResponse]:
        """The technical control of a decrypted melding; if it passes, store it and start its
        control. (The bench also calls this directly to fill the store without HTTP.)"""
        checked = check_json(payload, nested_jwt=nested)
        with self._lock:
            self.store.stats.received += 1
            now = self.clock.now()
            if checked.feil or checked.melding is None:
                return self._reject(grant, now, checked.praksis_id, checked.feil)
            melding = checked.melding
            actor = self.registry.actors.get(grant.actor)
            if actor is None or melding.praksisId not in actor.praksiser:
                problem = feil(
                    Feilkode.UKJENT_PRAKSISID,
                    f"Oppgitt praksisId {melding.praksisId} finnes ikke for helseaktøren",
                )
                return self._reject(grant, now, melding.praksisId, [problem])
            digest = content_digest(checked.data or {})
            if self.store.is_duplicate(grant.actor, digest):
                problem = feil(
                    Feilkode.DUPLIKAT_KRAV,
                    "Meldingen er identisk med en tidligere melding som allerede er mottatt",
                )
                return self._reject(grant, now, melding.praksisId, [problem])
            melding_id = self.lifecycle.new_melding_id()
            self._accept(grant.actor, melding_id, now, checked, digest)
            return 200, SendInnResponse(
                behandlerkravmeldingId=melding_id, status=Meldingsstatus.MOTTATT
            )

    def _reject(
        self,
        grant: AccessGrant,
        now: float,
        praksis_id: str | None,
        problems: list[Feilmelding],
    ) -> tuple[int, SendInnResponse]:
        melding_id = self.lifecycle.new_melding_id()
        self.store.add(Melding(melding_id, grant.actor, praksis_id, now, None, None))
        return 400, SendInnResponse(
            behandlerkravmeldingId=melding_id,
            status=Meldingsstatus.FEIL_I_MELDING,
            feilmeldinger=problems,
        )

    def _accept(
        self, actor: str, melding_id: str, now: float, checked: TechnicalResult, digest: bytes
    ) -> Melding:
        assert checked.melding is not None
        melding = checked.melding
        ctx = ControlContext(
            takster=self.takster,
            has_frikort=self.registry.has_frikort,
            previous=lambda guid: self.store.previous(actor, guid),
        )
        outcomes = control(melding, from_epoch(now), ctx)
        records = tuple(
            RegningRecord(
                guid=o.regning.guid,
                regningsnummer=o.regning.regningsnummer,
                belop=self.store.amount(o.regning.belop),
                godkjent=o.godkjent,
                kreditering=bool(o.regning.kreditering),
                merknader=o.merknader,
            )
            for o in outcomes
        )
        behandling = self.lifecycle.start(
            start=now,
            praksis_id=melding.praksisId,
            regninger=records,
            utbetales=sum((o.utbetales for o in outcomes if o.godkjent), Decimal(0)),
        )
        for outcome in outcomes:
            if outcome.krediterer is not None:
                outcome.krediterer.kreditert_at = behandling.kontrollert_at
        stored = Melding(
            melding_id=melding_id,
            actor=actor,
            praksis_id=melding.praksisId,
            mottatt_at=now,
            sum_krav=self.store.amount(melding.behandlerkrav.belop),
            antall=melding.behandlerkrav.antallRegninger,
            behandlinger=(behandling,),
        )
        self.store.add(stored, digest)
        return stored

    def overview(
        self, grant: AccessGrant, fom: date | None, tom: date | None
    ) -> BehandlerkravmeldingListe:
        self.lookups["overview"] += 1
        now = self.clock.now()
        rows: list[BehandlerkravmeldingStatus] = []
        for melding in reversed(self.store.of_actor(grant.actor)):
            day = datetime.fromtimestamp(melding.mottatt_at, OSLO).date()
            if (fom and day < fom) or (tom and day > tom):
                continue
            rows.extend(views.entries(melding, now, details=False, kontonr=self._kontonr))
        return BehandlerkravmeldingListe(behandlerkravmeldinger=rows)

    def details(self, grant: AccessGrant, melding_id: str) -> BehandlerkravmeldingListe | None:
        self.lookups["details"] += 1
        melding = self.store.get(grant.actor, melding_id)
        if melding is None:
            return None
        rows = views.entries(melding, self.clock.now(), details=True, kontonr=self._kontonr)
        return BehandlerkravmeldingListe(behandlerkravmeldinger=rows)

    def _kontonr(self, praksis_id: str) -> str | None:
        for actor in self.registry.actors.values():
            entry = actor.praksiser.get(praksis_id)
            if entry is not None:
                return entry.kontonr
        return None

    # ------------------------------------------------------------------ admin operations

    def rotate_keys(self, *, keep_old: bool) -> dict[str, Any]:
        with self._lock:
            new = self.keyring.rotate(keep_old=keep_old)
            return {"kid": new.kid, "kids": self.keyring.kids()}

    def rebehandling(
        self, melding_id: str, decisions: dict[str, str] | None = None
    ) -> BehandlerkravmeldingStatus | None:
        """A new control of a stored melding. By default every avvist regning is approved (the
        rule that rejected it was wrong); `decisions` maps guid → godkjent/avvist instead."""
        with self._lock:
            melding = self.store.meldinger.get(melding_id)
            if melding is None or melding.feil_i_melding or melding.praksis_id is None:
                return None
            last = melding.behandlinger[-1]
            records = []
            utbetales = Decimal(0)
            for old in last.regninger:
                wanted = (decisions or {}).get(old.guid)
                godkjent = wanted == "godkjent" if wanted else True
                records.append(
                    replace(old, godkjent=godkjent, merknader=() if godkjent else old.merknader)
                )
                if godkjent and not old.godkjent:
                    utbetales += old.belop
                elif old.godkjent and not godkjent:
                    utbetales -= old.belop
            behandling = self.lifecycle.start(
                start=self.clock.now(),
                praksis_id=melding.praksis_id,
                regninger=tuple(records),
                utbetales=utbetales,
                rebehandling=True,
            )
            melding.behandlinger = (*melding.behandlinger, behandling)
            for old, new in zip(last.regninger, records, strict=True):
                if self.store.previous(melding.actor, old.guid) is old:
                    self.store.set_latest(melding.actor, new)
            return views.entries(melding, self.clock.now(), details=True, kontonr=self._kontonr)[-1]

    def set_faults(self, data: dict[str, Any]) -> dict[str, Any]:
        config = FaultConfig.from_json(data)
        with self._lock:
            self.faults.configure(config, self.settings.seed)
        return config.as_json()

    def stats(self, *, by_guid: bool = True) -> dict[str, Any]:
        stats = self.store.stats
        out: dict[str, Any] = {
            "submissions_received": stats.received,
            "submissions_accepted": stats.accepted,
            "submissions_rejected": stats.rejected,
            "regninger_accepted": stats.regninger_accepted,
            "meldinger_stored": len(self.store.meldinger),
            "tokens_issued": self.tokens.issued,
            "overview_requests": self.lookups["overview"],
            "details_requests": self.lookups["details"],
            "faults": {**self.faults.counts, "requests_seen": self.faults.requests},
        }
        if by_guid:
            out["by_guid"] = dict(self.store.accepted_by_guid())
        return out

    def reset(self) -> None:
        with self._lock:
            self.clock.set(self.settings.clock)
            self.clock.set_speed(self.settings.speed)
            self.tokens.lifetime = self.settings.token_lifetime_seconds
            self._reset_state()
