"""The merknad texts. KUHR's own wording where the documentation shows it (470, 710, 766 on a
regning, 458 on an innsending, 1478 on a vedtak); the 9xxx numbers are the sandbox's own rules.
A stored merknad is its number and the values that fill its text,
`("766", ("07.01.2026 08:05", "06.01.2026 15:30"))`: the text is rendered when it is read, so
100,000 stored claims do not keep 100,000 copies of long sentences. A number without a text
here (one the admin API gave for a rebehandling) carries its whole text as its only value.
"""

from __future__ import annotations

MerknadRef = tuple[str, tuple[str, ...]]
# The first value of a merknad whose whole text was given (no text here fills with it).
_GIVEN = "\0"

TEKSTER: dict[str, str] = {
    # {0}: the regningsnummer of the consultation.
    "470": (
        "Takst 1bd/1be/1bk for enkel pasientkontakt, forespørsel, rådgivning ved papirbrev "
        "eller telefon står som ugyldig kombinasjon med alle takster. Her er takst 1bd/1bk "
        "skrevet på ny regning, og brukt 60 minutter før/etter konsultasjonstakst på "
        "regningsnummer {0}. Refusjonskrav for takst 1bd/1bk er avslått under forutsetning av "
        "at taksten er brukt i forbindelse med konsultasjon."
    ),
    "710": (
        "Samhandler har registrert at pasienten har frikort. Frikortvedtak er ikke registrert i "
        "frikortregisteret. Fra 1. april 2011 vil slike regninger bli automatisk avvist."
    ),
    # {0}: the regning's time, {1}: when the melding was received (dd.mm.yyyy HH:MM).
    "766": (
        "Enkeltregning er datert frem i tid, oppgitt konsultasjonstid er {0}, "
        "innsending er mottatt {1}"
    ),
    # {0}: the takst code.
    "9001": "Takstkode {0} finnes ikke i takstlisten.",
    # {0}: the takst code, {1}: the treatment date.
    "9002": "Takstkode {0} var ikke gyldig på behandlingsdatoen {1}.",
    # {0}: the treatment date, {1}: the date received.
    "9003": "Regningen er eldre enn tre år (behandlet {0}, mottatt {1}). Kravet er foreldet.",
    # {0}: the guid.
    "9004": (
        "Regningen som skal krediteres (guid {0}) er ikke mottatt og godkjent tidligere, "
        "eller er allerede kreditert. Krediteringen er avvist."
    ),
    # {0}: the guid.
    "9006": (
        "Regningen som skal korrigeres (guid {0}) er ikke mottatt og godkjent tidligere. "
        "Korrigeringen av betalt egenandel er avvist."
    ),
    # {0}: the guid.
    "9007": (
        "Regningen med guid {0} er registrert med betalt egenandel. Det er kun mulig å endre "
        "betalt egenandel fra ikke betalt til betalt. Korrigeringen er avvist."
    ),
    "9008": "Regningen er avvist ved rebehandling i KUHR.",
    # On the innsending (egenandeler reported more than 14 days after the treatment).
    "458": (
        "For behandling som kommer inn under frikort for helsetjenester, skal egenandelene "
        "rapporteres til Helfo minst hver 14. dag. Helfo anbefaler innsending via Helsenettet, "
        "ta kontakt med din EPJ-leverandør for oppkobling. Har du unntak fra å levere via "
        "Helsenettet, kan du bruke opplastningstjenesten i tjenesteportal for helseaktør "
        "https://internett-portal.helsedirektoratet.no"
    ),
    # On the vedtak that pays such an innsending.
    "1478": (
        "1. januar 2021 ble de to frikort-ordningene for helsetjenester slått sammen til én "
        "ordning, med ett felles egenandelstak. Du må rapportere senest 14 dager etter "
        "behandlingen, for å unngå at frikortet til pasientene blir forsinket. Ved å se på din "
        "oversikt over takstbruk øverst på side 2 i dette vedtaket, vil du se snittalderen på "
        "dine regninger med egenandeler. Snittalderen bør være en god del lavere enn 14 dager, "
        "fordi du ved innsendingen hver 14. dag rapporterer inn egenandeler som er fra 0 til 14 "
        "dager gamle."
    ),
    # {0}: the guid.
    "9005": (
        "Regning med guid {0} er allerede godkjent. Send en kreditering av den godkjente "
        "regningen før en korrigert regning sendes inn."
    ),
}


def merknad(nummer: str, *args: str) -> MerknadRef:
    if nummer not in TEKSTER:
        raise KeyError(f"no text for merknad {nummer}")
    return nummer, args


def given(nummer: str, tekst: str | None = None) -> MerknadRef:
    """A merknad named from outside (the admin API): a known number with its own text, or any
    number with the text given."""
    if tekst is None:
        if nummer not in TEKSTER:
            raise ValueError(f"merknad {nummer} needs a tekst (the sandbox has no text for it)")
        if "{0}" in TEKSTER[nummer]:
            raise ValueError(f"merknad {nummer} needs a tekst (its text has values to fill)")
        return nummer, ()
    return nummer, (_GIVEN, tekst)


def tekst(ref: MerknadRef) -> str:
    nummer, args = ref
    if args[:1] == (_GIVEN,):
        return args[1]
    return TEKSTER[nummer].format(*args)
