"""One legacy file → one JSON BKM: read → schema → map → model → checks.

`convert` is the functional core: bytes in, a `ConvertResult` out, no I/O, and it never raises
on bad input (every problem comes back with a code, a sentence and a line).
`bridge.files.reading.convert_file` is the shell around it that reads a file with a size limit.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bridge.core import mapping
from bridge.core.legacy import lenient
from bridge.core.legacy.read import Envelope, read_legacy
from bridge.core.legacy.schemas import default_registry
from bridge.core.model import Behandlerkrav, Behandlerkravmelding
from bridge.core.problems import Problem, Severity, has_errors
from bridge.core.rules import check_rules, regning_index
from bridge.runtime.gcpause import gc_paused

if TYPE_CHECKING:
    from lxml import etree

    from bridge.core.legacy.schemas import SchemaRegistry

DEFAULT_MAX_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class ConvertContext:
    praksis_id: str | None = None  # None: map and check only (validate), no praksisId
    allow_mismatch: bool = False  # True: COUNT/SUM_MISMATCH are reported as warnings
    registry: SchemaRegistry | None = None  # None: the built-in schemas
    max_bytes: int = DEFAULT_MAX_BYTES
    # False: leave ConvertResult.envelope empty (`convert --out` never shows the MsgHead's
    # facts, and reading them costs about as much as mapping half a claim)
    envelope: bool = True
    # The praksis type (FALE, TANN …), when known: the documented rules that depend on it run
    # too (bridge.core.rules); None: only those that hold for every praksis.
    praksistype: str | None = None


@dataclass
class ConvertResult:
    melding: Behandlerkravmelding | None = None
    behandlerkrav: Behandlerkrav | None = None
    envelope: Envelope | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not has_errors(self.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]


def _registry(context: ConvertContext) -> SchemaRegistry:
    if context.registry is not None:
        return context.registry

    return default_registry()


def convert(data: bytes, context: ConvertContext) -> ConvertResult:
    """Convert one legacy BKM document. Pure: no I/O, never raises on bad input."""
    with gc_paused():
        return _convert(data, context)


def _convert(data: bytes, context: ConvertContext) -> ConvertResult:
    if len(data) > context.max_bytes:
        return ConvertResult(problems=[too_large(len(data), context.max_bytes)])
    document, problems = read_legacy(data)
    if document is None:
        return ConvertResult(problems=problems)
    # Before the facts are read and the schema checks: real-world deviations with one meaning
    # are read in the parsed tree (the bytes stay as they are), the ambiguous ones refused.
    problems.extend(lenient.normalise(document, data))
    if has_errors(problems):
        return ConvertResult(problems=problems)
    result = ConvertResult(
        envelope=document.envelope if context.envelope else None, problems=problems
    )

    table = mapping.table_for(document.namespace)
    if table is None:
        result.problems.append(_unknown_namespace(document.namespace, document.krav))
        return result
    schema_problems = _registry(context).validate(document.krav)
    if schema_problems:
        result.problems.extend(schema_problems)
        return result

    data_, value_problems = mapping.map_behandlerkrav(
        document.krav, table, sender_identity=lambda: document.envelope.sender_identity
    )
    result.problems.extend(value_problems)
    if has_errors(value_problems):
        return result
    try:
        krav = Behandlerkrav.model_validate(data_)
    except ValidationError as err:
        result.problems.extend(_model_problems(err, document.krav, table))
        return result
    result.behandlerkrav = krav
    result.problems.extend(check_totals(krav, document.krav, context.allow_mismatch))
    rules = check_rules(krav, praksistype=context.praksistype)
    if rules:
        result.problems.extend(_at_lines(rules, document.krav, table))
    if result.ok and context.praksis_id:
        result.melding = Behandlerkravmelding(praksisId=context.praksis_id, behandlerkrav=krav)
    return result


def check_totals(krav: Behandlerkrav, element: etree._Element, allow: bool) -> list[Problem]:
    """AntallRegninger and SumKravSamlet must agree with the regninger: a truncated or
    half-edited file must never be submitted (unless the operator explicitly allows it)."""
    severity = Severity.WARNING if allow else Severity.ERROR
    krav_el = _first_descendant(element, "Krav")
    line = krav_el.sourceline if krav_el is not None else element.sourceline
    problems = []
    count = len(krav.regninger)
    if krav.antallRegninger != count:
        problems.append(
            Problem(
                "COUNT_MISMATCH",
                f"Krav/AntallRegninger says {krav.antallRegninger} but the file holds {count} "
                "Enkeltregning; the file may be truncated or half-edited.",
                line=line,
                severity=severity,
            )
        )
    # A kreditering or korrigering that refers by guid may have no belop: it adds nothing.
    total = sum((r.belop for r in krav.regninger if r.belop is not None), Decimal(0))
    if krav.belop != total:
        problems.append(
            Problem(
                "SUM_MISMATCH",
                f"Krav/SumKravSamlet is {krav.belop} but the regninger add up to {total}.",
                line=line,
                severity=severity,
            )
        )
    return problems


def _at_lines(
    problems: list[Problem], krav: etree._Element, table: mapping.MappingTable
) -> list[Problem]:
    """The rules' problems with the line of the Enkeltregning each is about."""
    regninger = mapping.regning_elements(krav, table)
    out = []
    for problem in problems:
        index = regning_index(problem)
        line = regninger[index].sourceline if index is not None and index < len(regninger) else None
        out.append(replace(problem, line=line or krav.sourceline))
    return out


def _first_descendant(element: etree._Element, localname: str) -> etree._Element | None:
    for child in element:
        if isinstance(child.tag, str) and child.tag.rpartition("}")[2] == localname:
            return child
    return None


def too_large(size: int, limit: int) -> Problem:
    return Problem(
        "FILE_TOO_LARGE",
        f"The file is {size:,} bytes; the limit is {limit:,} bytes (setting max_file_bytes). "
        "A behandlerkravmelding this large is almost certainly not one; split it or raise "
        "the limit.",
    )


def unreadable(err: OSError) -> Problem:
    """FILE_UNREADABLE with the reason; a file that vanished was listed, then deleted."""
    reason = (
        "it was deleted before it could be read"
        if err.errno == errno.ENOENT
        else (err.strerror or type(err).__name__)
    )
    return Problem("FILE_UNREADABLE", f"The file could not be read: {reason}.")


def _unknown_namespace(namespace: str, element: etree._Element) -> Problem:
    known = ", ".join(sorted(mapping.tables())) or "none"
    return Problem(
        "UNKNOWN_NAMESPACE",
        f"BehandlerKrav is in namespace {namespace or '(none)'!r}, which this bridge has no "
        f"mapping for. Known: {known}.",
        line=element.sourceline,
    )


def _model_problems(
    err: ValidationError, krav: etree._Element, table: mapping.MappingTable
) -> list[Problem]:
    regninger = mapping.regning_elements(krav, table)
    problems = []
    for item in err.errors(include_url=False):
        loc = item["loc"]
        line = krav.sourceline
        if (
            len(loc) >= 2
            and loc[0] == "regninger"
            and isinstance(loc[1], int)
            and loc[1] < len(regninger)
        ):
            line = regninger[loc[1]].sourceline
        problems.append(
            Problem(
                "MODEL_INVALID",
                f"behandlerkrav.{_dotted(loc)}: {item['msg']}.",
                line=line,
            )
        )
    return problems


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out
