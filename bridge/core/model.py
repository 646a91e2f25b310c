"""Pydantic models of the JSON BKM and of the KUHR Krav API's responses.

Field names are the API's own (praksisId, regninger, takster, belop …) so a reader finds the
JSON field `regninger[].takster[].belop` under that name here. The claim models forbid unknown
fields (KUHR answers UKJENT_FELT to those); the response models ignore fields they do not know,
so a client keeps working when KUHR adds one.

Money is `Decimal` end to end: `dump_json` writes amounts as JSON numbers with exactly the
digits they were read with (435.00 stays 435.00), never through binary floating point.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, get_args

import simplejson
from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from bridge.runtime.gcpause import gc_paused


def _seconds_iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


# An amount in NOK. Stays Decimal in python mode; written as a JSON number by dump_json.
# pydantic refuses NaN and Infinity for Decimal by default (allow_inf_nan=False).
Belop = Decimal
# YYYY-MM-DDTHH:mm:ss±hh:mm, the only form the API documents for a point in time.
Tidspunkt = Annotated[AwareDatetime, PlainSerializer(_seconds_iso, return_type=str)]
Dato = Annotated[date, PlainSerializer(date.isoformat, return_type=str)]


class _Claim(BaseModel):
    """Base of the claim (request) models: unknown fields are an error, as at KUHR."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)


class _Response(BaseModel):
    """Base of the response models: tolerate fields KUHR adds later."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# --------------------------------------------------------------------------- the claim


class Identifikasjon(_Claim):
    id: str
    type: str | None = None


class Diagnose(_Claim):
    kodeverk: str | None = None
    kode: str


class Eea(_Claim):
    """EHIC/EEA document facts. The docs renamed these fields twice; the older spellings are
    accepted and the current (2026-03-12) names are written."""

    dok: str | None = Field(None, validation_alias=AliasChoices("dok", "Dok"))
    cardId: str | None = Field(None, validation_alias=AliasChoices("cardId", "CardId"))
    id: str | None = Field(None, validation_alias=AliasChoices("id", "Id"))
    trygdekontorNavn: str | None = Field(
        None, validation_alias=AliasChoices("trygdekontorNavn", "TrygdekontorNavn")
    )
    trygdekontorNr: str | None = Field(
        None, validation_alias=AliasChoices("trygdekontorNr", "TrygdekontorNr")
    )
    gyldighetFra: str | None = Field(
        None, validation_alias=AliasChoices("gyldighetFra", "eeaGyldighetFra")
    )
    gyldighet: str | None = Field(None, validation_alias=AliasChoices("gyldighet", "eeaGyldighet"))
    utstedelsesdato: str | None = None


class Pasient(_Claim):
    etternavn: str | None = None
    fornavn: str | None = None
    kjonn: str | None = None
    trygdenasjon: str | None = None
    identifikasjon: Identifikasjon | None = None
    fodselsdato: Dato | None = None
    eea: Eea | None = None


class Henvisning(_Claim):
    dato: Dato | None = None
    id: str | None = None
    diagnoser: list[Diagnose] | None = None
    henvistFra: Identifikasjon | None = None


class UtforendeBehandler(_Claim):
    """The current shape (since 2026-04-23) is `{identifikasjon: {id, type}, type}`, `type`
    from kodeverk 8401. The superseded flat `{id, type}` (type FNR/DNR/HPR: the XML mapping
    table's, and claims journaled before) is still read. Either is always written in the
    current shape.

    Held flat (`id`, `type` = FNR/DNR/HPR) when there is no 8401 type, which is all the legacy
    XML's Behandlerident can say (bridge.legacy.writer reads these); as `identifikasjon` plus
    the 8401 `type` otherwise."""

    id: str | None = None
    type: str | None = None
    identifikasjon: Identifikasjon | None = None

    @model_validator(mode="after")
    def _has_identity(self) -> UtforendeBehandler:
        if self.id is None and self.identifikasjon is None:
            raise ValueError("utforendeBehandler needs id or identifikasjon")
        if self.id is not None and self.identifikasjon is not None:
            raise ValueError("utforendeBehandler has both id (superseded) and identifikasjon")
        if self.identifikasjon is not None and self.type is None:
            self.id, self.type = self.identifikasjon.id, self.identifikasjon.type
            self.identifikasjon = None
        return self

    @model_serializer(mode="wrap")
    def _current_shape(self, handler: SerializerFunctionWrapHandler) -> Any:
        if self.id is None:
            return handler(self)
        ident = {"id": self.id} if self.type is None else {"id": self.id, "type": self.type}
        return {"identifikasjon": ident}


class Rekvirent(_Claim):
    organisasjon: str | None = None
    hprNr: str | None = None


class Tann(_Claim):
    tannkode: str


class Takst(_Claim):
    belop: Belop
    kode: str
    antall: int = Field(1, ge=1)
    tenner: list[Tann] | None = None


class NlkKode(_Claim):
    belop: Belop
    kode: str
    antall: int = Field(1, ge=1)


class Prosedyrekode(_Claim):
    kodeverk: str | None = None
    kode: str
    belop: Belop | None = None


class Regning(_Claim):
    guid: str
    korrigeringBetaltEgenandel: bool | None = None
    betaltEgenandel: bool | None = None
    kreditering: bool | None = None
    debitor: str | None = None
    regningsnummer: str
    tidspunkt: Tidspunkt
    merknad: str | None = None
    pasient: Pasient | None = None
    arsakFriEgenandel: str | None = None
    diagnoser: list[Diagnose] | None = None
    sjeldenMedisinskTilstand: str | None = None
    henvisning: Henvisning | None = None
    utforendeBehandler: UtforendeBehandler | None = None
    relatertBehandler: Identifikasjon | None = None
    rekvirent: Rekvirent | None = None
    moderasjonskode: str | None = None
    stonadspunkt: str | None = None
    takster: list[Takst] | None = None
    nlkkoder: list[NlkKode] | None = None
    prosedyrekoder: list[Prosedyrekode] | None = None
    # The docs show these (NPR fields, 2026-04-23) only as empty lists; their entries are
    # taken to have the prosedyrekode shape until KUHR documents them.
    norpatkoder: list[Prosedyrekode] | None = None
    ncrpkoder: list[Prosedyrekode] | None = None
    # Behandling.Refusjon: left out where the guid refers to the original regning (a kreditering
    # or a korrigering of betalt egenandel need not repeat Behandling and Pasient).
    belop: Belop | None = None

    @model_validator(mode="after")
    def _documented_pairs(self) -> Regning:
        if self.belop is None and not (self.kreditering or self.korrigeringBetaltEgenandel):
            raise ValueError(
                "belop is required (only a kreditering or a korrigering of betalt egenandel, "
                "which refer to the original regning by guid, may leave it out)"
            )
        # "Om det angis at egenandel er betalt eller ikke så skal [korrigering] være med":
        # false on an original.
        if self.betaltEgenandel is not None and self.korrigeringBetaltEgenandel is None:
            self.korrigeringBetaltEgenandel = False
        return self


class Behandlerkrav(_Claim):
    avdeling: str | None = None
    navnEPJ: str | None = None
    reshId: str | None = None
    regninger: list[Regning]
    antallRegninger: int
    belop: Belop


class Behandlerkravmelding(_Claim):
    """The body of POST /kuhr/krav/v1/process/sendinnbehandlerkravmelding (before JWE)."""

    praksisId: str
    behandlerkrav: Behandlerkrav


# --------------------------------------------------------------------------- statuses


class Meldingsstatus(StrEnum):
    MOTTATT = "mottatt"
    KLAR_TIL_BEHANDLING = "klar_til_behandling"
    SENDT_TIL_BEHANDLING = "sendt_til_behandling"
    FERDIG_BEHANDLET = "ferdig_behandlet"
    FEIL_I_MELDING = "feil_i_melding"


class Kontrollstatus(StrEnum):
    IKKE_SENDT_TIL_KONTROLL = "ikke_sendt_til_kontroll"
    KONTROLLERES = "kontrolleres"
    KONTROLLERES_MANUELT = "kontrolleres_manuelt"
    FERDIG_KONTROLLERT = "ferdig_kontrollert"


class Utbetalingsstatus(StrEnum):
    IKKE_SENDT_TIL_UTBETALING = "ikke_sendt_til_utbetaling"
    SENDT_TIL_UTBETALING = "sendt_til_utbetaling"
    UTBETALT = "utbetalt"
    INGEN_UTBETALING = "ingen_utbetaling"


class Regningsstatus(StrEnum):
    BEHANDLES = "behandles"
    GODKJENT = "godkjent"
    AVVIST = "avvist"


class Feilkode(StrEnum):
    """Technical-control codes of the submit endpoint (HTTP 400, status feil_i_melding)."""

    UKJENT_FORMAT = "UKJENT_FORMAT"
    UKJENT_FELT = "UKJENT_FELT"
    MANGLER_PRAKSISID = "MANGLER_PRAKSISID"
    MANGLER_BEHANDLERKRAV = "MANGLER_BEHANDLERKRAV"
    MANGLER_REGNINGER = "MANGLER_REGNINGER"
    MANGLER_GUID = "MANGLER_GUID"
    UKJENT_PRAKSISID = "UKJENT_PRAKSISID"
    DUPLIKAT_KRAV = "DUPLIKAT_KRAV"


# --------------------------------------------------------------------------- responses


class GyldigPeriode(_Response):
    fraOgMedDato: Dato
    tilOgMedDato: Dato | None = None

    def covers(self, day: date) -> bool:
        return self.fraOgMedDato <= day and (self.tilOgMedDato is None or day <= self.tilOgMedDato)


class Praksis(_Response):
    praksisId: str
    navn: str | None = None
    orgnr: str | None = None
    type: str | None = None
    status: str = "ok"
    gyldigePerioder: list[GyldigPeriode] = []

    def valid_on(self, day: date) -> bool:
        return any(p.covers(day) for p in self.gyldigePerioder)


class PraksisListe(_Response):
    praksiser: list[Praksis] = []


class Feilmelding(_Response):
    kode: str
    melding: str


class SendInnResponse(_Response):
    behandlerkravmeldingId: str | None = None
    status: str
    feilmeldinger: list[Feilmelding] | None = None


def _as_text(value: Any) -> Any:
    return str(value) if isinstance(value, int) else value


class Merknad(_Response):
    """A control remark. The docs show `nummer` both as 470 and as "710"; it is kept as text."""

    nummer: str
    tekst: str = ""

    @model_validator(mode="before")
    @classmethod
    def _nummer_as_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and "nummer" in data:
            data = {**data, "nummer": _as_text(data["nummer"])}
        return data


class RegningResultat(_Response):
    status: str
    guid: str | None = None
    regningsnummer: str | None = None
    merknader: list[Merknad] = []


class Innsending(_Response):
    """The details endpoint's example (endepunkt_hent_status_innsendte_behandlerkravmeldinger.md,
    "Eksempel: Hente detaljer for ett krav") carries the sums here, inside `innsending`; its
    field table and the workflow example put them on the entry. Both are read."""

    innsendingId: str | None = None
    sumKravbelop: Belop | None = None
    sumUtbetaltbelop: Belop | None = None
    antallRegninger: int | None = None
    regninger: list[RegningResultat] = []
    merknader: list[Merknad] = []


class Utbetaling(_Response):
    belop: Belop | None = None
    # Documented as a date, shown as a date-time in the examples: both are accepted.
    utbetaltdato: Tidspunkt | Dato | None = None
    kontonr: str | None = None
    kid: str | None = None


class Vedtak(_Response):
    utbetaling: Utbetaling | None = None
    merknader: list[Merknad] = []


class BehandlerkravmeldingStatus(_Response):
    """One entry of GET data/behandlerkravmelding (overview) or …/{id} (details)."""

    behandlerkravmeldingId: str
    meldingsstatus: str
    kontrollstatus: str | None = None
    utbetalingsstatus: str | None = None
    innsendingId: str | None = None
    rebehandling: bool | None = None
    vedtakId: str | None = None
    praksisId: str | None = None
    mottattidspunkt: Tidspunkt | None = None
    sumKravbelop: Belop | None = None
    sumUtbetaltbelop: Belop | None = None
    antallRegninger: int | None = None
    innsending: Innsending | None = None
    vedtak: Vedtak | None = None

    @model_validator(mode="after")
    def _sums_from_innsending(self) -> BehandlerkravmeldingStatus:
        """Where the entry has no sums (or no innsendingId), take those inside `innsending`."""
        inner = self.innsending
        if inner is not None:
            for name in ("innsendingId", "sumKravbelop", "sumUtbetaltbelop", "antallRegninger"):
                if getattr(self, name) is None and getattr(inner, name) is not None:
                    setattr(self, name, getattr(inner, name))
        return self


class BehandlerkravmeldingListe(_Response):
    behandlerkravmeldinger: list[BehandlerkravmeldingStatus] = []


# --------------------------------------------------------------------------- JSON


def _amount_field_names() -> frozenset[str]:
    """Names of every Decimal field of the models above. pydantic writes Decimals as JSON
    strings ("435.00"); `dump_json` turns exactly these back into JSON numbers."""
    names: set[str] = set()
    others: set[str] = set()
    for model in _Claim.__subclasses__() + _Response.__subclasses__():
        for name, info in model.model_fields.items():
            types = get_args(info.annotation) or (info.annotation,)
            (names if Decimal in types else others).add(name)
    clash = names & others
    if clash:  # a text field with an amount's name would be unquoted: refuse at import
        raise TypeError(f"fields {sorted(clash)} are amounts in one model and not in another")
    return frozenset(names)


AMOUNT_FIELDS = _amount_field_names()
_QUOTED_AMOUNT = re.compile(
    r'"(' + "|".join(sorted(AMOUNT_FIELDS)) + r')":( ?)"(-?[0-9]+(?:\.[0-9]*)?(?:E[+-]?[0-9]+)?)"'
)


def to_jsonable(model: BaseModel) -> dict[str, Any]:
    """The model as plain data (Decimal kept), with empty fields left out."""
    with gc_paused():
        return model.model_dump(mode="python", exclude_none=True, by_alias=True)


def dump_json(model: BaseModel | dict[str, Any], *, indent: int | None = 2) -> str:
    """JSON text with amounts as exact JSON numbers (UTF-8 safe: non-ASCII kept as is).

    Models are serialised by pydantic (fast) and their Decimal strings unquoted by name; plain
    data goes through simplejson's Decimal support. Both give the digits the value was read
    with: 435.00 stays 435.00."""
    if isinstance(model, BaseModel):
        with gc_paused():
            text = model.model_dump_json(exclude_none=True, by_alias=True, indent=indent)
        return _QUOTED_AMOUNT.sub(r'"\1":\2\3', text)
    return simplejson.dumps(model, use_decimal=True, ensure_ascii=False, indent=indent)


def load_json(text: str | bytes) -> Any:
    """Parse JSON keeping every number with a fraction as an exact Decimal."""
    return simplejson.loads(text, use_decimal=True)
