"""The sandbox's own statement of what the KUHR Krav API answers: status and error code values
and the shapes of the JSON responses (TypedDicts, so the OpenAPI page shows them), read from
the endpoint documentation. The answers themselves are plain dicts, written by `dump`.

Nothing here comes from the bridge: a stand-in that reused the client's models could only
agree with the client.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any, NotRequired

import simplejson
from typing_extensions import TypedDict


def dump(data: Any) -> str:
    """JSON text; Decimal amounts as exact JSON numbers (435.00 stays 435.00), UTF-8 kept."""
    return simplejson.dumps(data, use_decimal=True, ensure_ascii=False)


def load(text: str | bytes) -> Any:
    """Parse JSON keeping every number with a fraction as an exact Decimal (NaN is refused)."""
    return simplejson.loads(text, use_decimal=True)


class Feilkode(StrEnum):
    """endepunkt_send_inn_behandlerkravmelding.md, Feilmeldingskoder (HTTP 400)."""

    UKJENT_FORMAT = "UKJENT_FORMAT"
    UKJENT_FELT = "UKJENT_FELT"
    MANGLER_PRAKSISID = "MANGLER_PRAKSISID"
    MANGLER_BEHANDLERKRAV = "MANGLER_BEHANDLERKRAV"
    MANGLER_REGNINGER = "MANGLER_REGNINGER"
    MANGLER_GUID = "MANGLER_GUID"
    UKJENT_PRAKSISID = "UKJENT_PRAKSISID"
    DUPLIKAT_KRAV = "DUPLIKAT_KRAV"


class Meldingsstatus(StrEnum):
    """The documented table, plus ferdig_behandlet, which the workflow example shows once the
    control is done."""

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
    """ "Status for regningen. Enten behandles, godkjent eller avvist"."""

    BEHANDLES = "behandles"
    GODKJENT = "godkjent"
    AVVIST = "avvist"


# --------------------------------------------------------------------------- response shapes


class Feilmelding(TypedDict):
    kode: str
    melding: str


class SendInnResponse(TypedDict):
    behandlerkravmeldingId: str
    status: str
    feilmeldinger: NotRequired[list[Feilmelding]]


class GyldigPeriode(TypedDict):
    fraOgMedDato: str
    tilOgMedDato: str | None


class Praksis(TypedDict):
    praksisId: str
    navn: NotRequired[str]
    orgnr: NotRequired[str]
    type: NotRequired[str]
    status: str
    gyldigePerioder: list[GyldigPeriode]


class PraksisListe(TypedDict):
    praksiser: list[Praksis]


class Merknad(TypedDict):
    nummer: str
    tekst: str


class RegningResultat(TypedDict):
    status: str
    guid: str
    regningsnummer: str
    merknader: list[Merknad]


class Innsending(TypedDict):
    sumKravbelop: NotRequired[Decimal]
    sumUtbetaltbelop: NotRequired[Decimal]
    antallRegninger: NotRequired[int]
    regninger: list[RegningResultat]
    merknader: list[Merknad]


class Utbetaling(TypedDict):
    belop: Decimal
    utbetaltdato: str
    kontonr: str | None
    kid: str


class Vedtak(TypedDict):
    utbetaling: NotRequired[Utbetaling]
    merknader: list[Merknad]


class BehandlerkravmeldingStatus(TypedDict):
    """One entry of GET data/behandlerkravmelding (overview) or …/{id} (details); fields not
    known yet are left out."""

    behandlerkravmeldingId: str
    meldingsstatus: str
    kontrollstatus: NotRequired[str]
    utbetalingsstatus: NotRequired[str]
    innsendingId: NotRequired[str]
    rebehandling: NotRequired[bool]
    vedtakId: NotRequired[str]
    praksisId: NotRequired[str]
    mottattidspunkt: str
    sumKravbelop: NotRequired[Decimal]
    sumUtbetaltbelop: NotRequired[Decimal]
    antallRegninger: NotRequired[int]
    innsending: NotRequired[Innsending]
    vedtak: NotRequired[Vedtak]


class BehandlerkravmeldingListe(TypedDict):
    behandlerkravmeldinger: list[BehandlerkravmeldingStatus]
