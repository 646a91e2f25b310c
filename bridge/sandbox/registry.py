"""Who the sandbox knows: helseaktører (actors) with their praksiser, the test persons who can
log in on its HelseID login page, the OAuth clients that act for them, the frikort register and
extra takst rows. Defaults follow the seed workflow; a TOML file (see docs/sandbox.md) adds to
them.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, cast

from jwcrypto import jwk

from bridge.sandbox.settings import DEV_CLIENT_ID, SCOPE_HELSEID, SCOPE_MASKINPORTEN
from bridge.sandbox.wire import GyldigPeriode, Praksis

DEFAULT_ACTOR = "lege"
# A synthetic fødselsnummer (month + 80, valid check digits): the seed workflow's fastlege.
DEFAULT_PID = "15837510047"
DEFAULT_ORGNR = "999999999"
TENANCIES = ("single", "multi")


@dataclass(frozen=True)
class PraksisEntry:
    """A praksis as listed by GET data/praksis, plus where its money goes."""

    praksis: Praksis
    kontonr: str | None = None


@dataclass
class Actor:
    """A helseaktør: a behandler (HelseID `pid`) and/or a virksomhet (orgnr)."""

    name: str
    pid: str | None = None
    orgnr: str | None = None
    praksiser: dict[str, PraksisEntry] = field(default_factory=dict)


@dataclass(frozen=True)
class Person:
    """A test person of the HelseID login page (as SyntPop's test helseaktører in HelseID's
    test environment): a synthetic fødselsnummer, a name, an HPR number when authorised."""

    pid: str
    name: str
    hpr_number: str | None = None
    profession: str | None = None
    security_level: str = "4"  # 4: BankID and the like; 3: MinID (KUHR wants 4)
    idp: str = "testidp-oidc"


@dataclass
class Client:
    """An OAuth client registered for both token endpoints (and HelseID's login).

    HelseID for virksomheter: a single-tenant client belongs to its actor's organisation and
    may name one of `child_orgnrs` (its underenheter); a multi-tenant client (an EPJ supplier's)
    may name any parent in `may_act_for` (delegated in Altinn) and any child under it."""

    client_id: str
    actor: str
    public_keys: list[jwk.JWK]
    scopes: frozenset[str] = frozenset({SCOPE_MASKINPORTEN, SCOPE_HELSEID})
    may_act_for: frozenset[str] = frozenset()
    tenancy: str = "single"
    child_orgnrs: frozenset[str] = frozenset()
    name: str = "bkm-bridge"
    # Login redirects (RFC 8252): a loopback address with any port matches its registered path.
    redirect_uris: tuple[str, ...] = ("http://127.0.0.1/callback", "http://localhost/callback")

    def key_for(self, kid: str | None) -> jwk.JWK | None:
        for key in self.public_keys:
            if kid is None or key.get("kid") == kid:
                return key
        return None

    def add_key(self, key: jwk.JWK) -> None:
        """Register one more public key (what HelseID selvbetjening / Samarbeidsportalen do)."""
        self.public_keys = [k for k in self.public_keys if k.get("kid") != key.get("kid")]
        self.public_keys.append(key)

    def remove_key(self, kid: str) -> bool:
        kept = [k for k in self.public_keys if k.get("kid") != kid]
        removed = len(kept) != len(self.public_keys)
        self.public_keys = kept
        return removed


PRAKSIS_FIELDS = frozenset({"praksisId", "navn", "orgnr", "type", "status", "gyldigePerioder"})


def _praksis(row: Mapping[str, Any]) -> PraksisEntry:
    """A praksis row of the config (or the defaults) as GET data/praksis lists it."""
    unknown = sorted(set(row) - PRAKSIS_FIELDS - {"kontonr"})
    if unknown:
        raise ValueError(f"praksis {row.get('praksisId')!r}: unknown field(s) {', '.join(unknown)}")
    if not row.get("praksisId"):
        raise ValueError("a praksis needs praksisId")
    praksis: dict[str, Any] = {"praksisId": str(row["praksisId"])}  # the documented key order
    for name in ("navn", "orgnr", "type"):
        if row.get(name) is not None:
            praksis[name] = str(row[name])
    praksis["status"] = str(row.get("status") or "ok")
    praksis["gyldigePerioder"] = [_periode(p) for p in row.get("gyldigePerioder") or []]
    kontonr = row.get("kontonr")
    return PraksisEntry(cast(Praksis, praksis), str(kontonr) if kontonr is not None else None)


def _periode(row: Mapping[str, Any]) -> GyldigPeriode:
    fra = _date(row.get("fraOgMedDato"))
    if fra is None:
        raise ValueError("a gyldig periode needs fraOgMedDato")
    til = _date(row.get("tilOgMedDato"))
    return GyldigPeriode(
        fraOgMedDato=fra.isoformat(), tilOgMedDato=til.isoformat() if til else None
    )


def _date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def default_actor() -> Actor:
    rows = [
        {
            "praksisId": "1004326178",
            "navn": "Kurbadet Helsesenter",
            "orgnr": "999999999",
            "type": "FALE",
            "status": "ok",
            "gyldigePerioder": [{"fraOgMedDato": "2020-01-01", "tilOgMedDato": "2028-07-15"}],
            "kontonr": "12345678901",
        },
        {
            "praksisId": "1004326468",
            "navn": "Sentrum Legevakt",
            "orgnr": "999999998",
            "type": "LEVA",
            "status": "ok",
            "gyldigePerioder": [{"fraOgMedDato": "2024-01-01", "tilOgMedDato": "2028-07-15"}],
            "kontonr": "12345678902",
        },
    ]
    praksiser = {entry.praksis["praksisId"]: entry for entry in map(_praksis, rows)}
    return Actor(DEFAULT_ACTOR, pid=DEFAULT_PID, orgnr=DEFAULT_ORGNR, praksiser=praksiser)


def default_persons() -> list[Person]:
    """The login page's test persons: the seed workflow's fastlege; a behandler with no praksis
    registered at Helfo; one who logs in on security level 3 (which KUHR refuses)."""
    return [
        Person(DEFAULT_PID, "Kari Fastlege", hpr_number="9144900", profession="LE"),
        Person("12846810054", "Ola Uten Praksis", hpr_number="9144901", profession="FT"),
        Person("03915910083", "Per Nivå Tre", hpr_number="9144902", profession="LE",
               security_level="3", idp="testidp-minid"),
    ]  # fmt: skip


class Registry:
    """Lookups by client id, HelseID pid and orgnr. Built once; read on every request."""

    def __init__(self) -> None:
        self.actors: dict[str, Actor] = {}
        self.persons: dict[str, Person] = {}
        self.clients: dict[str, Client] = {}
        self.frikort: set[str] = set()
        self.takst_rows: list[dict[str, Any]] = []
        self._by_pid: dict[str, Actor] = {}
        self._by_orgnr: dict[str, Actor] = {}

    def add_actor(self, actor: Actor) -> None:
        self.actors[actor.name] = actor
        self._reindex()

    def add_person(self, person: Person) -> None:
        self.persons[person.pid] = person

    def add_client(self, client: Client) -> None:
        if client.actor not in self.actors:
            raise ValueError(f"client {client.client_id!r} names unknown actor {client.actor!r}")
        self.clients[client.client_id] = client

    def _reindex(self) -> None:
        self._by_pid = {a.pid: a for a in self.actors.values() if a.pid}
        self._by_orgnr = {a.orgnr: a for a in self.actors.values() if a.orgnr}

    def actor_by_pid(self, pid: str) -> Actor | None:
        return self._by_pid.get(pid)

    def actor_by_orgnr(self, orgnr: str) -> Actor | None:
        return self._by_orgnr.get(orgnr)

    def has_frikort(self, patient_id: str | None) -> bool:
        return patient_id is not None and patient_id in self.frikort


def build_registry(dev_client_key: jwk.JWK, config: Path | None = None) -> Registry:
    """The default actor and dev client, then whatever `config` (TOML) adds or replaces."""
    registry = Registry()
    registry.add_actor(default_actor())
    registry.frikort.add("14057012345")  # the documentation's example patient with frikort
    for person in default_persons():
        registry.add_person(person)
    actor = registry.actors[DEFAULT_ACTOR]
    children = frozenset(
        str(e.praksis["orgnr"]) for e in actor.praksiser.values() if e.praksis.get("orgnr")
    )
    registry.add_client(
        Client(DEV_CLIENT_ID, DEFAULT_ACTOR, [dev_client_key], child_orgnrs=children)
    )
    if config is not None:
        load_config(registry, config)
    return registry


def load_config(registry: Registry, path: Path) -> None:
    """Add the actors, clients, frikort holders and takst rows described in a TOML file."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"actors", "persons", "clients", "frikort", "takster"})
    if unknown:
        raise ValueError(f"{path}: unknown table(s): {', '.join(unknown)}")
    for row in data.get("actors", []):
        praksiser = {e.praksis["praksisId"]: e for e in map(_praksis, row.get("praksiser", []))}
        registry.add_actor(
            Actor(str(row["name"]), pid=row.get("pid"), orgnr=row.get("orgnr"), praksiser=praksiser)
        )
    for row in data.get("persons", []):
        registry.add_person(_person(row))
    for row in data.get("clients", []):
        registry.add_client(_client(row, path.parent))
    registry.frikort.update(str(holder) for holder in data.get("frikort", {}).get("holders", []))
    registry.takst_rows.extend(dict(row) for row in data.get("takster", []))


def _client(row: Mapping[str, Any], base: Path) -> Client:
    keys: list[Mapping[str, Any]] = []
    if "public_jwk" in row:
        keys.append(row["public_jwk"])
    if "public_jwk_file" in row:
        loaded = json.loads((base / row["public_jwk_file"]).read_text("utf-8"))
        keys.extend(loaded.get("keys", [loaded]))
    if not keys:
        raise ValueError(f"client {row.get('client_id')!r} needs public_jwk or public_jwk_file")
    public = [_public_key(key) for key in keys]
    scopes = frozenset(row.get("scopes", [SCOPE_MASKINPORTEN, SCOPE_HELSEID]))
    tenancy = str(row.get("tenancy", "single"))
    if tenancy not in TENANCIES:
        raise ValueError(f"client {row.get('client_id')!r}: tenancy must be single or multi")
    extra: dict[str, Any] = {}
    if "redirect_uris" in row:
        extra["redirect_uris"] = tuple(str(u) for u in row["redirect_uris"])
    return Client(
        client_id=str(row["client_id"]),
        actor=str(row["actor"]),
        public_keys=public,
        scopes=scopes,
        may_act_for=frozenset(str(o) for o in row.get("may_act_for", [])),
        tenancy=tenancy,
        child_orgnrs=frozenset(str(o) for o in row.get("child_orgnrs", [])),
        name=str(row.get("name", row["client_id"])),
        **extra,
    )


PERSON_FIELDS = frozenset({"pid", "name", "hpr_number", "profession", "security_level", "idp"})


def _person(row: Mapping[str, Any]) -> Person:
    unknown = sorted(set(row) - PERSON_FIELDS)
    if unknown:
        raise ValueError(f"person {row.get('name')!r}: unknown field(s) {', '.join(unknown)}")
    if not row.get("pid") or not row.get("name"):
        raise ValueError("a person needs pid and name")
    return Person(
        pid=str(row["pid"]),
        name=str(row["name"]),
        hpr_number=str(row["hpr_number"]) if row.get("hpr_number") else None,
        profession=str(row["profession"]) if row.get("profession") else None,
        security_level=str(row.get("security_level", "4")),
        idp=str(row.get("idp", "testidp-oidc")),
    )


def _public_key(data: Mapping[str, Any]) -> jwk.JWK:
    key = jwk.JWK(**dict(data))
    if key.has_private:
        # Never keep a client's private key: only the public half is needed to verify it.
        key = jwk.JWK.from_json(key.export_public())
    return key
