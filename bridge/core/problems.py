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
}


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

    def as_dict(self) -> dict[str, object]:
        """The receipt form: kode, melding, linje (Norwegian keys, like KUHR's feilmeldinger)."""
        out: dict[str, object] = {"kode": self.code, "melding": self.message}
        if self.line is not None:
            out["linje"] = self.line
        if self.path:
            out["sti"] = self.path
        if self.severity is Severity.WARNING:
            out["alvorlighet"] = "advarsel"
        return out


def has_errors(problems: list[Problem]) -> bool:
    return any(p.is_error for p in problems)
