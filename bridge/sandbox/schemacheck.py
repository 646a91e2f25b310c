"""The JSON-format part of KUHR's technical control: the melding against the sandbox's own
schema (bridge/sandbox/schema), each violation turned into the code and the kind of message
endepunkt_send_inn_behandlerkravmelding.md gives, with the JSON path.

UKJENT_FELT for a field the schema does not have; MANGLER_PRAKSISID / MANGLER_BEHANDLERKRAV /
MANGLER_REGNINGER / MANGLER_GUID for those four fields missing (also null, empty, or an empty
list); UKJENT_FORMAT for every other missing field, wrong type or wrong value. Messages name the
field and what was expected, never the value sent: it may be patient data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from jsonschema.protocols import Validator

from bridge.sandbox.schema import behandlerkravmelding_schema
from bridge.sandbox.wire import Feilkode, Feilmelding

MAX_FEILMELDINGER = 20
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TYPE_WORDS = {
    "string": "tekst",
    "number": "et tall",
    "integer": "et heltall",
    "boolean": "true eller false",
    "object": "et JSON-objekt",
    "array": "en liste",
}
# The four fields with a code of their own when missing (the path's list indexes as None).
_MANGLER: dict[tuple[str | None, ...], Feilkode] = {
    ("praksisId",): Feilkode.MANGLER_PRAKSISID,
    ("behandlerkrav",): Feilkode.MANGLER_BEHANDLERKRAV,
    ("behandlerkrav", "regninger"): Feilkode.MANGLER_REGNINGER,
    ("behandlerkrav", "regninger", None, "guid"): Feilkode.MANGLER_GUID,
}
_ORDER = {Feilkode.UKJENT_FELT: 0, Feilkode.UKJENT_FORMAT: 2}


def _is_integer(checker: Any, instance: Any) -> bool:
    """JSON's integer: also a number written with a zero fraction (1.0), as JSON Schema says."""
    if isinstance(instance, bool):
        return False
    if isinstance(instance, int):
        return True
    return isinstance(instance, Decimal) and instance.is_finite() and instance == int(instance)


def _date_time(instance: object) -> bool:
    """YYYY-MM-DDTHH:mm:ss±hh:mm and a real moment: the only form the API documents."""
    if not isinstance(instance, str):
        return True
    if not _DATE_TIME.match(instance):
        return False
    datetime.fromisoformat(instance)  # raises ValueError for 2026-02-30 or 25:00
    return True


def _date(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    if not _DATE.match(instance):
        return False
    datetime.strptime(instance, "%Y-%m-%d")
    return True


def _inlined(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every `#/$defs/…` reference replaced by its definition (the schema has
    no recursion): jsonschema then checks a melding in half the time."""
    if isinstance(node, list):
        return [_inlined(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _inlined(v, defs) for k, v in node.items() if k not in ("$ref", "$defs")}
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        out = {**_inlined(defs[ref.removeprefix("#/$defs/")], defs), **out}
    return out


@cache
def _validator() -> Validator:
    formats = FormatChecker(formats=())
    formats.checks("date-time", raises=ValueError)(_date_time)
    formats.checks("date", raises=ValueError)(_date)
    cls = validators.extend(
        Draft202012Validator,
        type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
    )
    schema = behandlerkravmelding_schema()
    cls.check_schema(schema)
    return cls(_inlined(schema, schema["$defs"]), format_checker=formats)


def json_path(parts: Iterable[str | int]) -> str:
    """("behandlerkrav", "regninger", 0, "guid") → behandlerkrav.regninger[0].guid"""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _shape(parts: Sequence[str | int]) -> tuple[str | None, ...]:
    return tuple(None if isinstance(p, int) else p for p in parts)


def _mangler(parts: Sequence[str | int]) -> Feilmelding | None:
    """The documented code and text when one of the four coded fields is missing."""
    kode = _MANGLER.get(_shape(parts))
    if kode is None:
        return None
    name = str(parts[-1])
    where = json_path(parts[:-1])
    text = f"Mangler påkrevd felt {name}" + (f" i {where}" if len(parts) > 1 else "")
    return Feilmelding(kode=kode.value, melding=text)


def _missing(parts: list[str | int], note: str = "") -> Feilmelding:
    found = _mangler(parts)
    if found is not None:
        return found
    text = f"Mangler påkrevd felt {json_path(parts)}" + (f" ({note})" if note else "")
    return Feilmelding(kode=Feilkode.UKJENT_FORMAT.value, melding=text)


def _invalid(parts: list[str | int], expected: str) -> Feilmelding:
    return Feilmelding(
        kode=Feilkode.UKJENT_FORMAT.value,
        melding=f"Ugyldig verdi i {json_path(parts)}: forventet {expected}",
    )


def _expected_type(types: str | list[str]) -> str:
    names = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    return " eller ".join(_TYPE_WORDS.get(t, t) for t in names)


def _from_error(error: ValidationError) -> list[Feilmelding]:
    parts = list(error.absolute_path)
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance
    if kind == "additionalProperties":
        known = schema.get("properties", {})
        return [
            Feilmelding(
                kode=Feilkode.UKJENT_FELT.value,
                melding=f"Ukjent felt i JSON: {json_path([*parts, key])}",
            )
            for key in sorted(k for k in instance if k not in known)
        ]
    if kind == "required":
        note = ""
        if "else" in error.schema_path:
            note = "kan bare utelates på en kreditering eller en korrigering av betalt egenandel"
        return [
            _missing([*parts, name], note) for name in error.validator_value if name not in instance
        ]
    if kind == "dependentRequired":
        return [
            _missing([*parts, needed], f"skal være med når {key} er oppgitt")
            for key, needs in error.validator_value.items()
            if key in instance
            for needed in needs
            if needed not in instance
        ]
    if instance is None or instance == "" or instance == []:  # null or empty: missing
        coded = _mangler(parts)
        if coded is not None:
            return [coded]
    if kind == "type":
        return [_invalid(parts, _expected_type(error.validator_value))]
    if kind == "enum":
        codes = ", ".join(str(v) for v in error.validator_value if v is not None)
        return [_invalid(parts, f"en av kodene {codes}")]
    if kind == "minLength":
        return [_invalid(parts, "tekst som ikke er tom")]
    if kind == "minItems":
        return [_invalid(parts, "en liste med minst ett element")]
    if kind == "minimum":
        return [_invalid(parts, f"minst {error.validator_value}")]
    expected = schema.get("x-forventet") or "en verdi som dokumentasjonen beskriver"
    return [_invalid(parts, expected)]


def schema_feil(data: Any) -> list[Feilmelding]:
    """Every way `data` departs from the schema, as feilmeldinger (at most 20, in a stable
    order: unknown fields, the coded missing fields, then the rest; each by path)."""
    found: dict[tuple[str, str], Feilmelding] = {}
    for error in _validator().iter_errors(data):
        for feil in _from_error(error):
            found.setdefault((feil["kode"], feil["melding"]), feil)
    ordered = sorted(
        found.values(), key=lambda f: (_ORDER.get(Feilkode(f["kode"]), 1), f["melding"])
    )
    return ordered[:MAX_FEILMELDINGER]
