"""One vocabulary for where a file version stands, shared by the journal, the receipts, the
migration's progress and report, `status --local` and the status page.

`State` is the journal's state machine (the values are stored in journals: never rename one).
`Status` is the word people and scripts read: the overall `status` of a receipt, a report row's
outcome, a dry run's outcome. `status_of(state)` is what a state says by itself; a receipt
refines `controlled` with KUHR's control result (godkjent, delvis_godkjent, avvist) and the
payment words.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class State(StrEnum):
    SEEN = "seen"
    REJECTED = "rejected"
    CONVERTED = "converted"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    FEIL_I_MELDING = "feil_i_melding"
    CONTROLLED = "controlled"
    PAID = "paid"
    NO_PAYMENT = "no_payment"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"
    FAILED = "failed"


class Status(StrEnum):
    VENTER = "venter"
    SENDT = "sendt"
    FEILET_MIDLERTIDIG = "feilet_midlertidig"
    AVVIST_LOKALT = "avvist_lokalt"
    FEIL_I_MELDING = "feil_i_melding"
    DUPLIKAT = "duplikat"
    GODKJENT = "godkjent"
    DELVIS_GODKJENT = "delvis_godkjent"
    AVVIST = "avvist"
    SENDT_TIL_UTBETALING = "sendt_til_utbetaling"
    UTBETALT = "utbetalt"
    INGEN_UTBETALING = "ingen_utbetaling"
    IGNORERT = "ignorert"
    KONTROLLERT = "kontrollert"  # controlled, before the regninger's results are read
    # KUHR's kontrollstatus ikke_sendt_til_kontroll: received, not (yet) sent to control
    IKKE_SENDT_TIL_KONTROLL = "ikke_sendt_til_kontroll"
    KONVERTERT = "konvertert"  # a dry run: converted, would be sent
    IKKE_BEHANDLET = "ikke_behandlet"  # a migration report: not reached in this run


# The overall `status` words, and the sentence a receipt carries when the caller gives none.
# For clinic staff: Norwegian, saying what happened and what to do (operator advice about
# flags and settings goes to the log and the CLI, never here).
STATUS_SENTENCES: dict[str, str] = {
    "venter": "Filen står i kø eller sendes nå til Helfo. Du trenger ikke gjøre noe.",
    "sendt": (
        "Helfo har mottatt kravet, men kontrollen er ikke ferdig ennå. Du trenger ikke gjøre "
        "noe; kvitteringen oppdateres når svaret kommer."
    ),
    "feilet_midlertidig": (
        "Kravet kunne ikke sendes eller følges opp akkurat nå, men det er ikke feil i kravet. "
        "bkm-bridge prøver igjen automatisk. Varer det mer enn en time, kontakt IT-ansvarlig."
    ),
    "avvist_lokalt": (
        "Kravet er ikke sendt til Helfo. Rett feilene under problemer i journalsystemet og "
        "send kravet på nytt."
    ),
    "feil_i_melding": (
        "Helfo avviste hele meldingen (se feilmeldinger), så ingen regninger er behandlet. "
        "Rett feilene i journalsystemet og send kravet på nytt."
    ),
    "duplikat": (
        "Det samme kravet er allerede sendt fra en annen fil, så det er ikke sendt en gang "
        "til. Du trenger ikke gjøre noe."
    ),
    "godkjent": "Alle regningene er godkjent av Helfo. Du trenger ikke gjøre noe.",
    "delvis_godkjent": (
        "Noen regninger er avvist av Helfo (se merknadene), de andre er godkjent. Rett de "
        "avviste regningene i journalsystemet og send dem på nytt."
    ),
    "avvist": (
        "Alle regningene er avvist av Helfo (se merknadene). Rett regningene i "
        "journalsystemet og send dem på nytt."
    ),
    "sendt_til_utbetaling": (
        "De godkjente regningene er vedtatt og sendt til utbetaling. Du trenger ikke gjøre noe."
    ),
    "utbetalt": "Helfo har utbetalt kravet (se vedtak). Du trenger ikke gjøre noe.",
    "ingen_utbetaling": (
        "Helfo har bestemt at det ikke blir noen utbetaling (se vedtak). Er du uenig, ta "
        "kontakt med Helfo."
    ),
    "ignorert": "Filen er ikke et behandlerkrav og er ikke sendt. Du trenger ikke gjøre noe.",
    "kontrollert": (
        "Helfo har kontrollert kravet; resultatet for hver regning står under regninger."
    ),
    "konvertert": "Prøvekjøring: filen kan leses og ville blitt sendt. Ingenting er sendt.",
    "ikke_behandlet": (
        "Kjøringen stoppet før denne filen ble behandlet. Kjør den på nytt for å fortsette."
    ),
    "ikke_sendt_til_kontroll": (
        "Helfo har mottatt kravet, men ikke sendt det til kontroll ennå. Du trenger ikke gjøre "
        "noe; kvitteringen oppdateres når det skjer."
    ),
}

# Each status word as people read it in a line of text (log lines, summaries, tables):
# "avvist_lokalt" → "avvist lokalt". Scripts keep the words themselves.
STATUS_LABELS: dict[str, str] = {s.value: s.value.replace("_", " ") for s in Status}


def status_label(word: str) -> str:
    """`avvist_lokalt` → `avvist lokalt`; an unknown word is returned as it is."""
    return STATUS_LABELS.get(str(word), str(word))


_OF_STATE = {
    State.SEEN: Status.VENTER,
    State.CONVERTED: Status.VENTER,
    State.SUBMITTING: Status.VENTER,
    State.SUBMITTED: Status.SENDT,
    State.REJECTED: Status.AVVIST_LOKALT,
    State.FEIL_I_MELDING: Status.FEIL_I_MELDING,
    State.CONTROLLED: Status.KONTROLLERT,
    State.PAID: Status.UTBETALT,
    State.NO_PAYMENT: Status.INGEN_UTBETALING,
    State.DUPLICATE: Status.DUPLIKAT,
    State.SKIPPED: Status.IGNORERT,
    State.FAILED: Status.FEILET_MIDLERTIDIG,
}


# The one Norwegian vocabulary for journal states: the status word each state says by
# itself. `status --local`, receipts and reports show these, never the English state names.
STATE_WORDS: dict[State, str] = {state: status.value for state, status in _OF_STATE.items()}


def status_of(state: State) -> Status:
    """The word a journal state says by itself (without KUHR's per-regning results)."""
    return _OF_STATE[state]


def state_word(state: State | str) -> str:
    """The Norwegian word of a journal state (`rejected` → `avvist_lokalt`)."""
    return STATE_WORDS[State(state)]


# The words that end a command with 0 (`watch --once` included); every other word
# (avvist_lokalt, feil_i_melding, feilet_midlertidig, avvist, delvis_godkjent, venter,
# ikke_behandlet …) needs someone to act.
FINE_OUTCOMES = frozenset(
    {
        Status.SENDT,
        Status.KONTROLLERT,
        Status.GODKJENT,
        Status.SENDT_TIL_UTBETALING,
        Status.UTBETALT,
        Status.INGEN_UTBETALING,
        Status.DUPLIKAT,
        Status.IGNORERT,
        Status.KONVERTERT,
    }
)
# Outcomes that need someone to act, and outcomes of files not finished yet.
FAILED = frozenset({Status.AVVIST_LOKALT, Status.FEIL_I_MELDING, Status.FEILET_MIDLERTIDIG})
UNFINISHED = frozenset({Status.VENTER, Status.IKKE_BEHANDLET})
# Journal states that went well, and those that did not (status page colours).
GOOD_STATES = frozenset({State.CONTROLLED, State.PAID, State.NO_PAYMENT, State.DUPLICATE})
BAD_STATES = frozenset({State.REJECTED, State.FEIL_I_MELDING, State.FAILED})


# Whether `ikke_sendt_til_kontroll` can be final: the status documentation
# (endepunkt_hent_status_innsendte_behandlerkravmeldinger.md, "Statuser i
# behandlingsprosessen") lists it as "Kravet er ikke sendt til kontroll", says the three steps
# "går i sekvens, er asynkrone … og kan variere i behandlingstid", and names one dead end only:
# meldingsstatus feil_i_melding, "den kan ikke behandles videre" (final here). It gives
# ikke_sendt_til_kontroll neither a way on nor a duration. So it is not taken as final (a
# claim in it may still be controlled, e.g. after a rebehandling), and it is not followed
# forever either: after `unsent_control_max` (bridge.flow.options) the bridge stops polling
# and the receipt says what to do.


def unsent_control_stopped(sent_at: datetime | None) -> str:
    """The receipt's `melding` once the bridge has stopped following a claim KUHR did not send
    to control (`sent_at`: when it was sent, local time)."""
    when = f" (sendt {sent_at.strftime('%d.%m.%Y kl. %H:%M')})" if sent_at else ""
    return (
        f"Helfo har mottatt kravet{when}, men har ikke sendt det til kontroll, og bkm-bridge "
        "følger ikke lenger med på det av seg selv. Sjekk kravet i tjenesteportalen for "
        "helseaktører, eller kontakt Helfo og oppgi behandlerkravmeldingId fra denne "
        "kvitteringen. Ikke send filen på nytt: Helfo har allerede kravet."
    )
