"""The merknad texts. KUHR's own wording where the documentation shows it (470, 710, 766); the
9xxx numbers are the sandbox's own rules. A stored merknad is its number and the values that
fill its text, `("766", ("07.01.2026 08:05", "06.01.2026 15:30"))`: the text is rendered when
it is read, so 100,000 stored claims do not keep 100,000 copies of long sentences.
"""

from __future__ import annotations

MerknadRef = tuple[str, tuple[str, ...]]

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
    "9005": (
        "Regning med guid {0} er allerede godkjent. Send en kreditering av den godkjente "
        "regningen før en korrigert regning sendes inn."
    ),
}


def merknad(nummer: str, *args: str) -> MerknadRef:
    if nummer not in TEKSTER:
        raise KeyError(f"no text for merknad {nummer}")
    return nummer, args


def tekst(ref: MerknadRef) -> str:
    nummer, args = ref
    return TEKSTER[nummer].format(*args)
