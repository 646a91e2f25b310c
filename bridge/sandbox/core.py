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
from jwcrypto import jwk

from bridge.sandbox import views
from bridge.sandbox.clock import OSLO, SandboxClock, from_epoch
from bridge.sandbox.control import (
    ControlContext,
    control,
    innsending_merknader,
    vedtak_merknader,
)
from bridge.sandbox.crypto import JweError, KeyRing, jwe_key_from_jwk, unwrap_nested_jwt
from bridge.sandbox.faults import FaultConfig, FaultState
from bridge.sandbox.keys import KeyMaterial, load_or_create_keys
from bridge.sandbox.lifecycle import Lifecycle
from bridge.sandbox.merknader import MerknadRef, merknad
from bridge.sandbox.registry import Client, Registry, build_registry
from bridge.sandbox.settings import (
    ADMIN_PREFIX,
    DEV_CLIENT_ID,
    HELSEID_AUDIENCE,
    HELSEID_AUTHORIZE_PATH,
    HELSEID_DISCOVERY_PATH,
    HELSEID_PAR_PATH,
    OPNE_DATA_PREFIX,
    SCOPE_HELSEID,
    SCOPE_MASKINPORTEN,
    TEST_TOKEN_PATH,
    SandboxSettings,
)
from bridge.sandbox.store import ClaimStore, Melding, RegningRecord
from bridge.sandbox.takster import TakstTable, bundled_rows
from bridge.sandbox.technical import TechnicalResult, check_json, content_digest, feil
from bridge.sandbox.tokens import AccessGrant, TokenService
from bridge.sandbox.wire import (
    BehandlerkravmeldingListe,
    BehandlerkravmeldingStatus,
    Feilkode,
    Feilmelding,
    Meldingsstatus,
    PraksisListe,
    SendInnResponse,
)

# A rebehandling's decision for one regning: approved or not, and the merknader to show (None:
# the old ones for a regning that stays avvist, 9008 for one newly avvist).
Decision = tuple[bool, tuple[MerknadRef, ...] | None]


class RebehandlingError(LookupError):
    """No stored melding fits what a rebehandling asked for (the text says why)."""


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
        self.listen_url = settings.base_url  # where it listens (differs behind a TLS front)
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
            "listen_url": self.listen_url,
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
                "authority": s.helseid_issuer,
                "token_url": s.helseid_token_url,
                "audience": s.helseid_token_url,
                "scope": SCOPE_HELSEID,
                "api_audience": HELSEID_AUDIENCE,
                "discovery_url": s.url(HELSEID_DISCOVERY_PATH),
                "par_url": s.url(HELSEID_PAR_PATH),
                "authorize_url": s.url(HELSEID_AUTHORIZE_PATH),
                "dpop": True,
            },
            "test_token": {"url": s.url(TEST_TOKEN_PATH), "key": s.test_token_key},
            "admin_url": s.base_url + ADMIN_PREFIX,
            "opne_data_url": s.base_url + OPNE_DATA_PREFIX,
            "clock": s.clock.astimezone(OSLO).isoformat(timespec="seconds"),
            "speed": s.speed,
        }

    # ------------------------------------------------------------------ API operations

    def authenticate(
        self,
        authorization: str | None,
        dpop: str | None = None,
        method: str = "GET",
        path: str = "",
    ) -> AccessGrant:
        """The grant of a request's token; `path` is the request's, under the sandbox's own
        address (what a DPoP proof's `htu` must name)."""
        return self.tokens.authenticate(
            authorization, dpop=dpop, method=method, url=self.settings.base_url + path
        )

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
            if checked.feil or checked.krav is None:
                return self._reject(grant, now, checked.praksis_id, checked.feil)
            krav = checked.krav
            actor = self.registry.actors.get(grant.actor)
            if actor is None or krav.praksis_id not in actor.praksiser:
                problem = feil(
                    Feilkode.UKJENT_PRAKSISID,
                    f"Oppgitt praksisId {krav.praksis_id} finnes ikke for helseaktøren",
                )
                return self._reject(grant, now, krav.praksis_id, [problem])
            digest = content_digest(checked.data or {})
            if self.store.is_duplicate(grant.actor, digest):
                problem = feil(
                    Feilkode.DUPLIKAT_KRAV,
                    "Meldingen er identisk med en tidligere melding som allerede er mottatt",
                )
                return self._reject(grant, now, krav.praksis_id, [problem])
            melding_id = self.lifecycle.new_melding_id()
            self._accept(grant.actor, melding_id, now, checked, digest)
            return 200, SendInnResponse(
                behandlerkravmeldingId=melding_id, status=Meldingsstatus.MOTTATT.value
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
            status=Meldingsstatus.FEIL_I_MELDING.value,
            feilmeldinger=problems,
        )

    def _accept(
        self, actor: str, melding_id: str, now: float, checked: TechnicalResult, digest: bytes
    ) -> Melding:
        assert checked.krav is not None
        krav = checked.krav
        ctx = ControlContext(
            takster=self.takster,
            has_frikort=self.registry.has_frikort,
            previous=lambda guid: self.store.previous(actor, guid),
        )
        mottatt = from_epoch(now)
        outcomes = control(krav, mottatt, ctx)
        records = tuple(
            RegningRecord(
                guid=o.regning.guid,
                regningsnummer=o.regning.regningsnummer,
                belop=self.store.amount(o.regning.belop or Decimal(0)),
                godkjent=o.godkjent,
                kreditering=o.regning.kreditering,
                merknader=o.merknader,
                betalt_egenandel=o.regning.betalt_egenandel,
                korrigering=o.regning.korrigering,
            )
            for o in outcomes
        )
        merknader = innsending_merknader(krav, mottatt)
        behandling = self.lifecycle.start(
            start=now,
            praksis_id=krav.praksis_id,
            regninger=records,
            utbetales=sum((o.utbetales for o in outcomes if o.godkjent), Decimal(0)),
            innsending_merknader=merknader,
            vedtak_merknader=vedtak_merknader(merknader),
        )
        for outcome in outcomes:
            if outcome.krediterer is not None:
                outcome.krediterer.kreditert_at = behandling.kontrollert_at
            if outcome.korrigerer is not None:
                outcome.korrigerer.betalt_egenandel = outcome.regning.betalt_egenandel
        stored = Melding(
            melding_id=melding_id,
            actor=actor,
            praksis_id=krav.praksis_id,
            mottatt_at=now,
            sum_krav=self.store.amount(krav.belop),
            antall=krav.antall_regninger,
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
        self,
        melding_id: str | None = None,
        *,
        guid: str | None = None,
        decisions: dict[str, Decision] | None = None,
    ) -> BehandlerkravmeldingStatus:
        """A new control of a stored melding, as KUHR does after correcting an error of its own:
        a new entry with rebehandling=true, its own innsendingId, kontrollresultat and payment
        (the difference to what was paid). The melding is named by id, or found by the guid of
        one of its regninger. Without `decisions`, a melding named by id has every regning
        approved and one found by guid has that regning approved; regninger not decided keep
        their last result."""
        with self._lock:
            melding = self._to_rebehandle(melding_id, guid)
            assert melding.praksis_id is not None
            last = melding.behandlinger[-1]
            if decisions is None:
                wanted = [guid] if guid is not None and melding_id is None else None
                decisions = {
                    r.guid: (True, None)
                    for r in last.regninger
                    if wanted is None or r.guid in wanted
                }
            unknown = sorted(set(decisions) - {r.guid for r in last.regninger})
            if unknown:
                raise ValueError(f"melding {melding.melding_id} has no regning {unknown[0]}")
            records = []
            utbetales = Decimal(0)
            for old in last.regninger:
                godkjent, merknader = decisions.get(old.guid, (old.godkjent, old.merknader))
                if merknader is None:
                    kept = old.merknader if not old.godkjent and old.merknader else None
                    merknader = () if godkjent else kept or (merknad("9008"),)
                if godkjent and merknader:
                    raise ValueError(f"regning {old.guid}: a godkjent regning has no merknader")
                records.append(replace(old, godkjent=godkjent, merknader=merknader))
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
                innsending_merknader=last.innsending_merknader,
                vedtak_merknader=last.vedtak_merknader,
            )
            melding.behandlinger = (*melding.behandlinger, behandling)
            for old, new in zip(last.regninger, records, strict=True):
                if self.store.previous(melding.actor, old.guid) is old:
                    self.store.set_latest(melding.actor, new)
            return views.entries(melding, self.clock.now(), details=True, kontonr=self._kontonr)[-1]

    def _to_rebehandle(self, melding_id: str | None, guid: str | None) -> Melding:
        """The accepted melding named by id, or the latest accepted one carrying the guid."""
        if melding_id is not None:
            melding = self.store.meldinger.get(melding_id)
            if melding is None or melding.feil_i_melding:
                raise RebehandlingError(f"no accepted melding {melding_id}")
            if guid is not None and guid not in {
                r.guid for r in melding.behandlinger[-1].regninger
            }:
                raise RebehandlingError(f"melding {melding_id} has no regning {guid}")
            return melding
        if guid is None:
            raise ValueError("give behandlerkravmeldingId or guid")
        carrying = [
            m
            for m in self.store.meldinger.values()
            if not m.feil_i_melding and any(r.guid == guid for r in m.behandlinger[-1].regninger)
        ]
        if not carrying:
            raise RebehandlingError(f"no accepted melding has a regning {guid}")
        if len({m.actor for m in carrying}) > 1:
            raise ValueError(f"regning {guid} is known for several actors: give the melding id")
        return carrying[-1]  # the store keeps meldinger in the order received

    def register_client_key(self, client_id: str, data: dict[str, Any]) -> list[str]:
        """Register one more public key for a client (what the self-service portals do); its
        key ids afterwards."""
        client = self._client(client_id)
        key = jwk.JWK(**{k: v for k, v in data.items() if k != "exp"})
        if key.has_private:
            raise ValueError("register the public key only (the JWK holds a private key)")
        if not key.get("kid"):
            raise ValueError("the JWK needs a kid")
        client.add_key(key)
        return [str(k.get("kid")) for k in client.public_keys]

    def remove_client_key(self, client_id: str, kid: str) -> list[str]:
        client = self._client(client_id)
        if not client.remove_key(kid):
            raise LookupError(f"client {client_id} has no key {kid}")
        return [str(k.get("kid")) for k in client.public_keys]

    def client_keys(self, client_id: str) -> list[str]:
        return [str(k.get("kid")) for k in self._client(client_id).public_keys]

    def _client(self, client_id: str) -> Client:
        client = self.registry.clients.get(client_id)
        if client is None:
            raise LookupError(f"no client {client_id}")
        return client

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
            "tokens_by_grant": dict(self.tokens.issued_by_grant),
            "client_keys_used": dict(self.tokens.keys_used),
            "dpop_proofs_checked": self.tokens.dpop.checked,
            "dpop_requests": dict(self.tokens.dpop_requests),
            "api_nonce_challenges": self.tokens.api_nonce_challenges,
            "logins": self.tokens.logins.logins,
            "refreshes": self.tokens.logins.refreshes,
            "active_logins": self.tokens.logins.active(),
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
            self.tokens.logins.refresh_lifetime = self.settings.refresh_token_lifetime_seconds
            self._reset_state()
