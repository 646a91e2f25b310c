"""KUHR's technical control of a decrypted melding: JSON format, unknown fields (named), the
required fields with their own codes, then the model. Praksis and duplicate checks need the
caller's state and are done by the caller.
"""

from __future__ import annotations

import hashlib
import types
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Union, get_args, get_origin

import simplejson
from pydantic import AliasChoices, BaseModel, ValidationError

from bridge.core.model import Behandlerkravmelding, Feilkode, Feilmelding, load_json

MAX_FEILMELDINGER = 20
# Registered JWT claims a JOSE library may add to a nested JWT's claims set.
JWT_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})


@dataclass
class TechnicalResult:
    melding: Behandlerkravmelding | None = None
    data: dict[str, Any] | None = None
    feil: list[Feilmelding] = field(default_factory=list)

    @property
    def praksis_id(self) -> str | None:
        value = (self.data or {}).get("praksisId")
        return value if isinstance(value, str) and value else None


def feil(kode: Feilkode, melding: str) -> Feilmelding:
    return Feilmelding(kode=kode.value, melding=melding)


def check_json(payload: bytes, *, nested_jwt: bool = False) -> TechnicalResult:
    """Parse and check a melding; `feil` is empty when it may be stored."""
    try:
        data = load_json(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        where = ""
        if hasattr(exc, "lineno"):
            where = f" (linje {exc.lineno}, kolonne {exc.colno})"
        return TechnicalResult(
            feil=[feil(Feilkode.UKJENT_FORMAT, f"Behandlerkravmelding har ikke JSON-format{where}")]
        )
    if not isinstance(data, dict):
        return TechnicalResult(
            feil=[feil(Feilkode.UKJENT_FORMAT, "Behandlerkravmelding må være et JSON-objekt")]
        )
    if nested_jwt:
        data = {k: v for k, v in data.items() if k not in JWT_CLAIMS}
    result = TechnicalResult(data=data)
    result.feil.extend(_unknown_fields(data, Behandlerkravmelding, ""))
    result.feil.extend(_missing_fields(data))
    if result.feil:
        result.feil = result.feil[:MAX_FEILMELDINGER]
        return result
    try:
        result.melding = Behandlerkravmelding.model_validate(data)
    except ValidationError as exc:
        result.feil = [_from_pydantic(error) for error in exc.errors()[:MAX_FEILMELDINGER]]
    return result


def _missing_fields(data: dict[str, Any]) -> list[Feilmelding]:
    out: list[Feilmelding] = []
    if data.get("praksisId") in (None, ""):
        out.append(feil(Feilkode.MANGLER_PRAKSISID, "Mangler påkrevd felt praksisId"))
    krav = data.get("behandlerkrav")
    if krav is None:
        out.append(feil(Feilkode.MANGLER_BEHANDLERKRAV, "Mangler påkrevd felt behandlerkrav"))
        return out
    if not isinstance(krav, dict):
        return out  # a wrong type: the model names it
    regninger = krav.get("regninger")
    if not regninger:
        out.append(
            feil(Feilkode.MANGLER_REGNINGER, "Mangler påkrevd felt regninger i behandlerkrav")
        )
        return out
    if isinstance(regninger, list):
        for index, regning in enumerate(regninger):
            if isinstance(regning, dict) and regning.get("guid") in (None, ""):
                out.append(
                    feil(
                        Feilkode.MANGLER_GUID,
                        f"Mangler påkrevd felt guid i behandlerkrav.regninger[{index}]",
                    )
                )
    return out


def _unknown_fields(data: dict[str, Any], model: type[BaseModel], where: str) -> list[Feilmelding]:
    out: list[Feilmelding] = []
    fields = _field_tree(model)
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            out.append(feil(Feilkode.UKJENT_FELT, f"Ukjent felt i JSON: {path}"))
            continue
        inner, is_list = fields[key]
        if inner is None:
            continue
        if is_list and isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    out.extend(_unknown_fields(item, inner, f"{path}[{index}]"))
        elif isinstance(value, dict):
            out.extend(_unknown_fields(value, inner, path))
    return out


@cache
def _field_tree(model: type[BaseModel]) -> dict[str, tuple[type[BaseModel] | None, bool]]:
    """Every JSON name a model accepts → (nested model or None, whether it is a list)."""
    tree: dict[str, tuple[type[BaseModel] | None, bool]] = {}
    for name, info in model.model_fields.items():
        nested = _nested(info.annotation)
        names = {name}
        if isinstance(info.validation_alias, AliasChoices):
            names.update(c for c in info.validation_alias.choices if isinstance(c, str))
        elif isinstance(info.validation_alias, str):
            names.add(info.validation_alias)
        for json_name in names:
            tree[json_name] = nested
    return tree


def _nested(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _nested(arg)
            if found[0] is not None:
                return found
        return None, False
    if origin is list:
        inner, _ = _nested(get_args(annotation)[0])
        return inner, True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _from_pydantic(error: Any) -> Feilmelding:
    path = ""
    for part in error.get("loc", ()):
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if error.get("type") == "missing":
        return feil(Feilkode.UKJENT_FORMAT, f"Mangler påkrevd felt {path}")
    # The message only, never the input: it may hold patient data.
    return feil(Feilkode.UKJENT_FORMAT, f"Ugyldig verdi i {path}: {error.get('msg', '')}")


def content_digest(data: dict[str, Any]) -> bytes:
    """The identity of a melding's content for the duplicate control: canonical JSON (sorted
    keys, numbers exactly as written), hashed. Whitespace, key order and wrapping do not count."""
    canonical = simplejson.dumps(
        data, sort_keys=True, separators=(",", ":"), use_decimal=True, ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).digest()[:16]
