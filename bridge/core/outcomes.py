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
STATUS_SENTENCES: dict[str, str] = {
    "venter": "The file is queued or being sent to KUHR; nothing to do yet.",
    "sendt": "KUHR has received the claim; the control result is not ready yet.",
    "feilet_midlertidig": (
        "Sending or following the claim failed for a transient reason; the bridge will retry."
    ),
    "avvist_lokalt": (
        "The file was not sent: fix the problems listed under problemer and save the file again."
    ),
    "feil_i_melding": (
        "KUHR refused the message (see feilmeldinger); nothing was processed. Fix and resend."
    ),
    "duplikat": "The same content was already taken from another file; it was not sent again.",
    "godkjent": "All regninger were approved.",
    "delvis_godkjent": (
        "Some regninger were rejected (see their merknader); the others were approved."
    ),
    "avvist": "All regninger were rejected (see their merknader).",
    "sendt_til_utbetaling": "The approved regninger are part of a vedtak and sent for payment.",
    "utbetalt": "The payment has been made (see vedtak).",
    "ingen_utbetaling": "KUHR decided that no payment will be made (see vedtak).",
    "ignorert": "The file is not a behandlerkravmelding and was ignored.",
    "kontrollert": "KUHR has controlled the claim; each regning's result is in regninger.",
    "ikke_sendt_til_kontroll": (
        "KUHR har tatt imot kravet, men ikke sendt det til kontroll ennå. bkm-bridge følger "
        "med og skriver en ny kvittering når det skjer; du trenger ikke gjøre noe nå."
    ),
    "konvertert": "Dry run: the file converts cleanly and would be sent.",
    "ikke_behandlet": "The run ended before this file was processed; run it again to go on.",
}


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


def status_of(state: State) -> Status:
    """The word a journal state says by itself (without KUHR's per-regning results)."""
    return _OF_STATE[state]


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
        f"KUHR har tatt imot kravet{when}, men har ikke sendt det til kontroll, og bkm-bridge "
        "følger ikke lenger med på det av seg selv. Sjekk kravet i tjenesteportalen for "
        "helseaktører, eller kontakt Helfo og oppgi behandlerkravmeldingId fra denne "
        "kvitteringen. Ikke send filen på nytt: KUHR har allerede kravet."
    )
