"""Problems found in a file before anything is sent: a code, a sentence, and where.

Every local check (reading, schema, mapping, sums) reports through `Problem`, so the CLI,
the receipts and the journal all speak about bad input the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


# Every local problem code and what it means. The README lists this table; tests check
# that every code the code base emits is listed here.
PROBLEM_CODES: dict[str, str] = {
    "FILE_UNREADABLE": "The file could not be read (missing, deleted while read, no permission).",
    "CONVERT_CRASHED": "Converting the file ended the conversion process repeatedly (migrate).",
    "FILE_EMPTY": "The file is empty.",
    "FILE_TOO_LARGE": "The file is larger than the configured limit (max_file_bytes).",
    "NOT_XML": "The file is not XML at all (no '<' where a document should start).",
    "XML_MALFORMED": "The XML is not well-formed: broken tags, truncated, or bad characters.",
    "ENCODING_INVALID": "The bytes do not match the declared or detected character encoding.",
    "ENCODING_MISMATCH": (
        "The file declares one encoding but its bytes are in another (æøå would break)."
    ),
    "DTD_FORBIDDEN": "The file has a DOCTYPE or entity declarations; these are refused for safety.",
    "UNKNOWN_NAMESPACE": ("The root or claim element is in a namespace no installed schema knows."),
    "NOT_A_BKM": (
        "The XML is a known message type but not a behandlerkravmelding (e.g. an AppRec)."
    ),
    "ENVELOPE_INVALID": (
        "The MsgHead or Base64Container envelope is broken or holds no BehandlerKrav."
    ),
    "SCHEMA_INVALID": (
        "The claim does not follow the BKM schema (missing, extra or malformed element)."
    ),
    "LEGACY_VARIANT": (
        "Warning: the file deviates from the KITH description in a way real EPJs write and "
        "that has one meaning (GUID in braces, V/DN swapped in a TypeId, blanks around a code, "
        "a bare identifier, a non-BKM MsgInfo/Type, 7-digit fractions, a signature); it was "
        "read with that meaning."
    ),
    "LEGACY_AMBIGUOUS": (
        "The file deviates from the KITH description in a way that can mean more than one "
        "thing (e.g. a bare identifier whose kind cannot be told); refused rather than guessed."
    ),
    "VALUE_INVALID": "A value cannot be converted (bad date, amount, number or boolean).",
    "COUNT_MISMATCH": "Krav/AntallRegninger differs from the number of Enkeltregning elements.",
    "SUM_MISMATCH": "Krav/SumKravSamlet differs from the sum of the regninger's amounts.",
    "GUID_DERIVED": "A regning has no GUID; a stable one was derived from sender and RegningNr.",
    "PRAKSIS_MISSING": "No praksisId was given or could be resolved for the claim.",
    "MODEL_INVALID": "The mapped claim does not satisfy the JSON BKM model.",
    "REGNING_IN_FUTURE": (
        "Pre-control: a regning is dated after the moment it is checked (KUHR merknad 766)."
    ),
    "ENKEL_KONTAKT_NEAR_KONSULTASJON": (
        "Pre-control: 1bd/1be/1bk on a regning of its own within 60 minutes of a consultation "
        "takst for the same patient (KUHR merknad 470)."
    ),
    "TAKST_UNKNOWN": (
        "Pre-control: a takst code is not in the takst table for the praksis's fagområde."
    ),
    "TAKST_NOT_VALID_ON_DATE": (
        "Pre-control: a takst code was not valid on the regning's treatment date."
    ),
    "TAKST_AMOUNT_DIFFERS": (
        "Pre-control: a takst's amount differs from the table's refusjon on the treatment date."
    ),
    "TAKST_REPETITIONS_EXCEEDED": (
        "Pre-control: a takst's antall exceeds the table's maks_repetisjoner."
    ),
    "REGNING_AMOUNT_DIFFERS": (
        "Pre-control: a regning's amount differs from its takster priced with antall and "
        "repetisjonsprosent."
    ),
    "TAKST_INVALID_COMBINATION": (
        "Pre-control: two takster on one regning are an ugyldig_kombinasjon in the takst table."
    ),
    "TAKST_REQUIRES_TAKST": (
        "Pre-control: a takst requires another takst (krever_takst) the regning does not have."
    ),
    "TAKST_REQUIRES_DIAGNOSE": (
        "Pre-control: a takst requires a diagnosis (krever_diagnose) the regning does not have."
    ),
    "NLK_UNKNOWN": "Pre-control: an NLK laboratory code is not in the nlkkoder table.",
    "NLK_NOT_VALID_ON_DATE": (
        "Pre-control: an NLK laboratory code was not valid on the treatment date."
    ),
    "TAKSTER_UNAVAILABLE": (
        "Pre-control: takster could not be checked (no table for the fagområde, or the cache "
        "cannot be read)."
    ),
    "PRECHECK_BLOCKED": (
        "The pre-control found problems and precheck.mode is block, so the claim was not sent."
    ),
    # The API documentation's code lists and conditional rules (bridge.core.rules).
    "KODEVERK_CODE_UNKNOWN": (
        "A code is not in the code list the API documentation gives for its field (kjønn, ID "
        "type, moderasjonskode, kodeverk 8410; a warning for 7461, 8426, 8401)."
    ),
    "FIELD_FORMAT_INVALID": (
        "A value does not have the documented form (tannkode, trygdenasjon's landkode)."
    ),
    "FIELD_REQUIRED": (
        "A field the documentation requires in this case is missing (avdeling and RESH, "
        "henvisningsdato for kjeveortoped, henvisningsId for ortoptist, stonadspunkt …)."
    ),
    "FIELD_NOT_USED": (
        "A field is given that the documentation says this praksis type does not use (warning)."
    ),
    "BETALT_EGENANDEL_KORRIGERING_INVALID": (
        "A korrigering of betalt egenandel that does not set betaltEgenandel to true."
    ),
    "KREDITERING_AMOUNT_POSITIVE": (
        "A kreditering with a positive amount; it should be negative (warning)."
    ),
    "RECEIPT_PATH_TAKEN": (
        "A link, FIFO, device or folder was where a receipt goes; it was not followed or read."
    ),
    "PRAKSIS_NOT_CHECKED": (
        "Dry run: the praksis list could not be fetched, so the claim's praksis was not checked."
    ),
}


# What clinic staff read for each code (JSON receipt `melding`, AppRec Error DN): Norwegian,
# what is wrong and what to do. No flags or settings here: that advice is in the problem's own
# message, which goes to the log and the CLI (and, where it names no setting, to the receipt's
# `detalj` for the IT person).
_FIX_IN_EPJ = "Rett dette i journalsystemet og send kravet på nytt."
_ASK_IT = "Kontakt IT-ansvarlig; kravet sendes når feilen er rettet."
STAFF_TEXT: dict[str, str] = {
    "FILE_UNREADABLE": (
        "Filen kunne ikke leses (den ble borte, eller bkm-bridge har ikke tilgang). Lagre "
        "kravet på nytt fra journalsystemet; skjer det igjen, kontakt IT-ansvarlig."
    ),
    "CONVERT_CRASHED": f"Filen kunne ikke behandles av bkm-bridge. {_ASK_IT}",
    "FILE_EMPTY": "Filen er tom. Lag kravet på nytt i journalsystemet.",
    "FILE_TOO_LARGE": (
        "Filen er større enn bkm-bridge tar imot. Del kravet i flere mindre krav i "
        "journalsystemet, eller kontakt IT-ansvarlig."
    ),
    "NOT_XML": (
        "Filen er ikke et behandlerkrav (ikke XML). Sjekk at journalsystemet lagrer kravet i "
        "riktig mappe og format, og lag kravet på nytt."
    ),
    "XML_MALFORMED": (
        "Filen er ødelagt eller ufullstendig. Lag kravet på nytt i journalsystemet; skjer "
        "det igjen, kontakt leverandøren av journalsystemet."
    ),
    "ENCODING_INVALID": (
        "Filen har tegn som ikke kan leses (for eksempel æ, ø, å). Lag kravet på nytt; "
        "skjer det igjen, kontakt leverandøren av journalsystemet."
    ),
    "ENCODING_MISMATCH": (
        "Filen sier at den bruker én tegnkoding, men bruker en annen, så æ, ø og å ville "
        f"blitt feil. {_ASK_IT}"
    ),
    "DTD_FORBIDDEN": (
        "Filen har innhold som av sikkerhetshensyn ikke tas imot (DOCTYPE). Kontakt "
        "leverandøren av journalsystemet."
    ),
    "UNKNOWN_NAMESPACE": (
        "Filen er en meldingstype eller versjon bkm-bridge ikke kjenner. Kontakt "
        "IT-ansvarlig eller leverandøren av journalsystemet."
    ),
    "NOT_A_BKM": "Filen er ikke et behandlerkrav og er ikke sendt. Du trenger ikke gjøre noe.",
    "ENVELOPE_INVALID": (
        "Konvolutten rundt kravet (MsgHead) er ødelagt eller tom. Lag kravet på nytt i "
        "journalsystemet."
    ),
    "SCHEMA_INVALID": (
        "Kravet mangler et felt, har et felt for mye eller et felt med feil form (se "
        f"detalj og linje). {_FIX_IN_EPJ}"
    ),
    "LEGACY_VARIANT": (
        "Filen avviker fra KITH-beskrivelsen på en måte som bare kan bety én ting (se detalj "
        "og linje), og kravet er lest slik. Du trenger ikke gjøre noe; gi gjerne leverandøren "
        "av journalsystemet beskjed."
    ),
    "LEGACY_AMBIGUOUS": (
        "Filen avviker fra KITH-beskrivelsen på en måte som kan bety mer enn én ting (se "
        f"detalj og linje), og bkm-bridge gjetter ikke. {_FIX_IN_EPJ}"
    ),
    "VALUE_INVALID": (
        f"Et felt har en verdi som ikke kan brukes (dato, beløp eller tall). {_FIX_IN_EPJ}"
    ),
    "COUNT_MISMATCH": (
        f"Antall regninger i kravet stemmer ikke med regningene som ligger i det. {_FIX_IN_EPJ}"
    ),
    "SUM_MISMATCH": f"Summen av kravet stemmer ikke med summen av regningene. {_FIX_IN_EPJ}",
    "GUID_DERIVED": (
        "En regning mangler GUID; bkm-bridge har laget en fast GUID for den. Du trenger ikke "
        "gjøre noe."
    ),
    "PRAKSIS_MISSING": (
        "Kravet er ikke sendt fordi bkm-bridge ikke vet hvilken praksis hos Helfo det gjelder. "
        "Kontakt IT-ansvarlig, som må knytte avsenderen til en praksis; send så kravet på nytt."
    ),
    "MODEL_INVALID": f"Kravet mangler opplysninger Helfo krever. {_FIX_IN_EPJ}",
    "REGNING_IN_FUTURE": (
        "En regning er datert fram i tid; Helfo ville avvist den (merknad 766). Rett datoen "
        "og send regningen på nytt."
    ),
    "ENKEL_KONTAKT_NEAR_KONSULTASJON": (
        "Enkel kontakt (1bd/1be/1bk) er ført på egen regning mindre enn 60 minutter fra en "
        "konsultasjon for samme pasient; Helfo ville avvist den (merknad 470). Før takstene "
        "på samme regning, eller fjern den."
    ),
    "TAKST_UNKNOWN": f"En takstkode finnes ikke i takstlisten for praksisen. {_FIX_IN_EPJ}",
    "TAKST_NOT_VALID_ON_DATE": (
        f"En takstkode gjaldt ikke på behandlingsdatoen. Velg riktig takst. {_FIX_IN_EPJ}"
    ),
    "TAKST_AMOUNT_DIFFERS": (
        f"Beløpet for en takst er ikke det takstlisten sier for datoen. {_FIX_IN_EPJ}"
    ),
    "TAKST_REPETITIONS_EXCEEDED": (
        f"En takst er ført flere ganger enn takstlisten tillater. {_FIX_IN_EPJ}"
    ),
    "REGNING_AMOUNT_DIFFERS": (
        f"Beløpet på en regning stemmer ikke med takstene på den. {_FIX_IN_EPJ}"
    ),
    "TAKST_INVALID_COMBINATION": (
        f"To takster på samme regning kan ikke brukes sammen. {_FIX_IN_EPJ}"
    ),
    "TAKST_REQUIRES_TAKST": (
        f"En takst krever en annen takst som regningen ikke har. {_FIX_IN_EPJ}"
    ),
    "TAKST_REQUIRES_DIAGNOSE": (
        f"En takst krever en diagnose som regningen ikke har. {_FIX_IN_EPJ}"
    ),
    "NLK_UNKNOWN": f"En laboratoriekode (NLK) finnes ikke i kodelisten. {_FIX_IN_EPJ}",
    "NLK_NOT_VALID_ON_DATE": (
        f"En laboratoriekode (NLK) gjaldt ikke på behandlingsdatoen. {_FIX_IN_EPJ}"
    ),
    "TAKSTER_UNAVAILABLE": (
        "Takstene kunne ikke sjekkes før sending (takstlisten mangler). Kontakt IT-ansvarlig."
    ),
    "PRECHECK_BLOCKED": (
        "Kravet er ikke sendt fordi forhåndskontrollen fant feil Helfo ville avvist (se "
        f"forhandskontroll). {_FIX_IN_EPJ}"
    ),
    # The API documentation's code lists and conditional rules (bridge.core.rules).
    "KODEVERK_CODE_UNKNOWN": (
        "En kode i kravet er ikke en av kodene Helfo har beskrevet for feltet (se detalj). Er "
        "det en feil, rett den i journalsystemet og send kravet på nytt."
    ),
    "FIELD_FORMAT_INVALID": (
        f"Et felt i kravet har feil form, for eksempel en tannkode (se detalj). {_FIX_IN_EPJ}"
    ),
    "FIELD_REQUIRED": (
        "Kravet mangler en opplysning Helfo krever for denne praksisen eller behandlingen (se "
        f"detalj). {_FIX_IN_EPJ}"
    ),
    "FIELD_NOT_USED": (
        "Kravet har en opplysning som ikke brukes for denne typen praksis (se detalj). Kravet "
        "er sendt likevel; be leverandøren av journalsystemet se på det."
    ),
    "BETALT_EGENANDEL_KORRIGERING_INVALID": (
        "En korrigering kan bare endre egenandelen fra ikke betalt til betalt; Helfo ville "
        f"avvist denne. {_FIX_IN_EPJ}"
    ),
    "KREDITERING_AMOUNT_POSITIVE": (
        "En kreditering har et positivt beløp, men skal ha minusbeløp. Kravet er sendt; sjekk "
        "krediteringen i journalsystemet."
    ),
    "RECEIPT_PATH_TAKEN": (
        "Der kvitteringen skal ligge, lå det noe annet enn en vanlig fil. Kontakt IT-ansvarlig."
    ),
    "PRAKSIS_NOT_CHECKED": (
        "Prøvekjøring: det var ikke mulig å sjekke hos Helfo hvilken praksis kravet gjelder, så "
        "det er ikke kontrollert om kravet kan sendes. Kontakt IT-ansvarlig."
    ),
}
# Codes whose own message gives operator advice (flags, settings, registrations): it goes
# to the log and the CLI only, and a receipt carries just the staff sentence.
OPERATOR_DETAIL: frozenset[str] = frozenset(
    {"PRAKSIS_MISSING", "PRECHECK_BLOCKED", "FILE_TOO_LARGE", "TAKSTER_UNAVAILABLE"}
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file, in words a clinic's IT person understands."""

    code: str
    message: str
    line: int | None = None
    path: str | None = None
    severity: Severity = Severity.ERROR

    def __post_init__(self) -> None:
        if self.code not in PROBLEM_CODES:
            raise ValueError(f"unknown problem code {self.code!r}")

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def format(self, filename: str) -> str:
        """`FILE:LINE: CODE: sentence`, the one-line form used on stderr."""
        where = f"{filename}:{self.line}" if self.line else filename
        text = f"{where}: {self.code}: {self.message}"
        if self.path:
            text += f" (at {self.path})"
        if self.severity is Severity.WARNING:
            text += " [warning]"
        return text

    @property
    def staff_text(self) -> str:
        """What clinic staff read about it (Norwegian, what to do)."""
        return STAFF_TEXT[self.code]

    @property
    def detail_for_staff(self) -> str | None:
        """The technical message, for the receipt's `detalj`; None when it is operator
        advice (flags, settings) that belongs in the log only. A RECEIPT_PATH_TAKEN message
        is already Norwegian and names the file: it is the staff text itself."""
        if self.code in OPERATOR_DETAIL or self.code == "RECEIPT_PATH_TAKEN":
            return None
        return self.message

    def as_dict(self) -> dict[str, object]:
        """The receipt form: kode, melding (Norwegian, for staff), detalj (technical), linje
        (Norwegian keys, like KUHR's feilmeldinger)."""
        melding = self.message if self.code == "RECEIPT_PATH_TAKEN" else self.staff_text
        out: dict[str, object] = {"kode": self.code, "melding": melding}
        detail = self.detail_for_staff
        if detail:
            out["detalj"] = detail
        if self.line is not None:
            out["linje"] = self.line
        if self.path:
            out["sti"] = self.path
        if self.severity is Severity.WARNING:
            out["alvorlighet"] = "advarsel"
        return out


def has_errors(problems: list[Problem]) -> bool:
    return any(p.is_error for p in problems)


assert set(STAFF_TEXT) == set(PROBLEM_CODES), "every problem code needs a staff sentence"
