"""Sentences for clinic staff about trouble that is not the claim's fault: something planted
where a receipt goes, and a failure of KUHR or of the login service that the bridge retries by
itself. Norwegian, saying what happened and what to do; advice about settings goes to the log.
Pure: the callers say what happened and when the next try is."""

from __future__ import annotations

from datetime import datetime

from bridge.core.problems import Problem, Severity

# What lstat found, in the receipt's words (keys: bridge.files.fsutil.kind_of).
_KINDS = {
    "symbolic link": "en symbolsk lenke",
    "reparse point (link)": "en lenke",
    "FIFO": "en FIFO (navngitt rør)",
    "socket": "en socket",
    "device": "en enhetsfil",
    "directory": "en mappe",
    "special file": "en spesialfil",
}


def receipt_path_problem(name: str, kind: str, *, replaced: bool) -> Problem:
    """A warning for the JSON receipt: `name` (a receipt's file name) held a `kind` instead of
    a regular file; `replaced`: the receipt now stands in its place."""
    what = _KINDS.get(kind, "noe annet enn en vanlig fil")
    if replaced:
        text = (
            f"Der kvitteringen {name} skal ligge, lå det {what} i stedet for en vanlig fil. "
            "bkm-bridge har ikke fulgt eller lest den, men erstattet den med kvitteringen. "
            "Be IT-ansvarlig finne ut hvem som la den der: noen kan ha prøvd å få bkm-bridge "
            "til å lese filer utenfor mappen."
        )
    else:
        text = (
            f"Der kvitteringen {name} skal ligge, ligger det {what}, så den kan ikke skrives. "
            "Be IT-ansvarlig flytte eller fjerne den; kvitteringen skrives da innen et minutt."
        )
    return Problem("RECEIPT_PATH_TAKEN", text, severity=Severity.WARNING)


# Why a step failed for now (keys: what the pipeline records as the failure's kind).
FAILURE_KINDS = {
    "token": (
        "bkm-bridge fikk ikke logget inn hos Helfo: innloggingstjenesten (Maskinporten eller "
        "HelseID) svarte ikke, eller avviste forespørselen."
    ),
    "kuhr_unavailable": "KUHR (Helfo) svarte ikke, eller svarte med en feil.",
    "kuhr_access": "KUHR (Helfo) avviste tilgangen til bkm-bridge.",
    "kuhr_answer": "KUHR (Helfo) svarte med noe bkm-bridge ikke kunne bruke.",
    "kuhr_key": "KUHRs krypteringsnøkkel kunne ikke hentes eller brukes.",
    "internal": "Det oppstod en uventet feil i bkm-bridge.",
}


def transient_message(kind: str, *, retry_at: datetime, maybe_sent: bool) -> str:
    """The receipt's `melding` while a failure is retried: what is wrong, whether the claim
    may have reached KUHR, and when the bridge tries again (a local time)."""
    cause = FAILURE_KINDS.get(kind, FAILURE_KINDS["internal"])
    if maybe_sent:
        sent = (
            "Det er ikke sikkert om kravet kom fram. bkm-bridge sjekker det hos KUHR før det "
            "eventuelt sendes på nytt, så det blir ikke sendt to ganger."
        )
    else:
        sent = "Kravet er ikke sendt ennå."
    when = retry_at.strftime("%H:%M:%S")
    day = retry_at.strftime("%d.%m.%Y")
    return (
        f"{cause} {sent} bkm-bridge prøver igjen automatisk {day} kl. {when}. Du trenger "
        "ikke gjøre noe nå; varer det mer enn en time, kontakt IT-ansvarlig."
    )
