"""Apply the mapping tables in `mappings/` to a BehandlerKrav element → JSON BKM data.

The table is the reviewed artefact (see mappings/README.md); this module only knows how to read
it: a row is compiled once into a getter (an lxml `find` path with Clark names) and a converter,
and applying the compiled plan is a walk over the rows. Nothing here knows field names except
through the table, apart from the documented defaults (`count`, `guid`).

Pure: no I/O after the tables are loaded. Bad values become `Problem`s, never exceptions.
"""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

from bridge.core.legacy.read import element_path
from bridge.core.problems import Problem, Severity
from bridge.core.timezone import OSLO
from bridge.errors import BridgeError
from bridge.paths import shipped_folder

BKM_NS_PREFIX = "http://www.kith.no/xmlstds/bkm/"
ROOT_OBJECT = "behandlerkrav"
# Derived GUIDs live in their own UUIDv5 namespace so they can never collide with EPJ GUIDs
# by accident and are the same on every machine and every run.
GUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:bkm-bridge:derived-regning-guid")


def mappings_dir() -> Path:
    """The `mappings/` folder shipped with the package (InstallationError when it is missing)."""
    return shipped_folder("mappings")


# --------------------------------------------------------------------------- converters


class ValueProblem(BridgeError, ValueError):
    """A value in the XML that cannot become the JSON field; the message is for people."""


_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_INT = re.compile(r"^[+-]?\d+$")
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(Z|[+-]\d{2}:\d{2})?$")
_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def _text(raw: str) -> str | None:
    return raw.strip() or None


def _bool(raw: str) -> bool | None:
    value = raw.strip()
    if not value:
        return None
    try:
        return _BOOLS[value]
    except KeyError:
        raise ValueProblem(f"{value!r} is not a yes/no value (use true, false, 1 or 0)") from None


def _int(raw: str) -> int | None:
    value = raw.strip()
    if not value:
        return None
    if not _INT.match(value):
        raise ValueProblem(f"{value!r} is not a whole number")
    return int(value)


def _count(raw: str) -> int | None:
    value = _int(raw)
    if value is not None and value < 1:
        raise ValueProblem(f"{value} is not a valid count (must be 1 or more)")
    return value


def _decimal(raw: str) -> Decimal | None:
    value = raw.strip()
    if not value:
        return None
    if not _DECIMAL.match(value):
        hint = " (use a point, not a comma, as decimal separator)" if "," in value else ""
        raise ValueProblem(f"{value!r} is not an amount{hint}")
    try:
        return Decimal(value)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        raise ValueProblem(f"{value!r} is not an amount") from None


def _date(raw: str) -> date | None:
    value = raw.strip()
    if not value:
        return None
    match = _DATE.match(value)
    if not match:
        raise ValueProblem(f"{value!r} is not a date (expected YYYY-MM-DD)")
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        raise ValueProblem(f"{value!r} is not a real calendar date") from None


def _datetime_oslo(raw: str) -> datetime | None:
    value = raw.strip()
    if not value:
        return None
    if "T" not in value:
        raise ValueProblem(f"{value!r} has no time of day (expected YYYY-MM-DDTHH:MM:SS)")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueProblem(f"{value!r} is not a valid date and time") from None
    if parsed.tzinfo is None:
        # Legacy files write Norwegian wall-clock time without offset. In the repeated
        # autumn hour fold=0 picks the first (summer-time) occurrence.
        parsed = parsed.replace(tzinfo=OSLO)
    return parsed.replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class Converter:
    parse: Callable[[str], Any]
    # Called when the XML has no value; may return a default (and report it).
    default: Callable[[dict[str, Any], _Scope], Any] | None = None


def _default_count(obj: dict[str, Any], scope: _Scope) -> int:
    del obj, scope
    return 1


def _derive_guid(obj: dict[str, Any], scope: _Scope) -> str:
    nummer = obj.get("regningsnummer", "")
    identity = scope.sender_identity
    sender = (identity() if callable(identity) else identity) or "ukjent-avsender"
    derived = str(uuid.uuid5(GUID_NAMESPACE, f"{sender}|{nummer}"))
    scope.problems.append(
        Problem(
            "GUID_DERIVED",
            f"Regning {nummer or '(without RegningNr)'} has no GUID; using the derived GUID "
            f"{derived} (the same on every run for this sender and RegningNr).",
            line=scope.element.sourceline,
            severity=Severity.WARNING,
        )
    )
    return derived


CONVERTERS: dict[str, Converter] = {
    "text": Converter(_text),
    "guid": Converter(_text, _derive_guid),
    "bool": Converter(_bool),
    "int": Converter(_int),
    "count": Converter(_count, _default_count),
    "decimal": Converter(_decimal),
    "date": Converter(_date),
    "datetime_oslo": Converter(_datetime_oslo),
}


# --------------------------------------------------------------------------- compiled plan


@dataclass(frozen=True, slots=True)
class _XmlPath:
    """One alternative of an xml_path: climb `up` parents, `find` an element, maybe an attribute."""

    up: int
    steps: tuple[str, ...]  # Clark names of the elements to descend through; () = the element
    attribute: str | None
    source: str


@dataclass(slots=True)
class _FieldRule:
    keys: tuple[str, ...]
    paths: tuple[_XmlPath, ...]
    converter: Converter
    json_path: str


@dataclass(slots=True)
class _ListRule:
    keys: tuple[str, ...]
    path: _XmlPath
    plan: _Plan
    json_path: str


@dataclass(slots=True)
class _Node:
    """One element step of the plan's paths. Walking the XML against this trie visits each
    needed element once, instead of one lookup per row (the conversion's hottest loop)."""

    children: dict[str, _Node] = field(default_factory=dict)  # first child with this tag
    every: dict[str, int] = field(default_factory=dict)  # all children with this tag → list rule
    captures: list[tuple[int, int, str | None]] = field(default_factory=list)  # field, alt, attr
    leaf: bool = True  # no children to descend into: captured inline by the parent's walk


@dataclass(slots=True)
class _Plan:
    fields: list[_FieldRule] = field(default_factory=list)
    lists: list[_ListRule] = field(default_factory=list)
    trie: _Node = field(default_factory=_Node)
    # Paths that climb to a parent (`../Tann`) are looked up directly: (field, alt) → path.
    climbing: list[tuple[int, int, _XmlPath]] = field(default_factory=list)
    with_default: list[int] = field(default_factory=list)  # fields whose converter has a default
    # Per field, what applying needs, unpacked once: (parse, the key when it is a single
    # one else None, keys, has a default). Saves attribute look-ups in the hottest loop.
    appliers: list[tuple[Callable[[str], Any], str | None, tuple[str, ...], bool]] = field(
        default_factory=list
    )

    def build_trie(self) -> None:
        self.trie = _Node()
        self.climbing = []
        self.with_default = [i for i, r in enumerate(self.fields) if r.converter.default]
        self.appliers = [
            (
                r.converter.parse,
                r.keys[0] if len(r.keys) == 1 else None,
                r.keys,
                r.converter.default is not None,
            )
            for r in self.fields
        ]
        for index, rule in enumerate(self.fields):
            for alt, path in enumerate(rule.paths):
                if path.up:
                    self.climbing.append((index, alt, path))
                    continue
                node = self.trie
                for step in path.steps:
                    node = node.children.setdefault(step, _Node())
                node.captures.append((index, alt, path.attribute))
        for index, rule in enumerate(self.lists):
            if rule.path.up or not rule.path.steps:
                continue
            node = self.trie
            for step in rule.path.steps[:-1]:
                node = node.children.setdefault(step, _Node())
            node.every[rule.path.steps[-1]] = index
        for rule in self.lists:
            rule.plan.build_trie()
        _mark_leaves(self.trie)

    def list_plan(self, keys: tuple[str, ...], json_path: str) -> _Plan:
        for rule in self.lists:
            if rule.keys == keys:
                return rule.plan
        raise MappingTableError(f"{json_path}: its list row must come before it")


def _mark_leaves(node: _Node) -> None:
    node.leaf = not node.children and not node.every
    for child in node.children.values():
        _mark_leaves(child)


@dataclass(frozen=True, slots=True)
class TableRow:
    json_path: str
    xml_path: str
    converter: str
    note: str


class MappingTableError(BridgeError):
    """The mapping table itself is wrong (a developer or reviewer error, not bad input)."""


@dataclass(frozen=True, slots=True)
class MappingTable:
    namespace: str
    source: Path
    rows: tuple[TableRow, ...]
    plan: _Plan
    context_fields: tuple[tuple[str, str], ...]  # (json field, context name)


def _compile_path(xml_path: str, ns: str) -> tuple[_XmlPath, ...]:
    alternatives = []
    for alt in xml_path.split("|"):
        steps = [s for s in alt.strip().split("/") if s]
        up = 0
        while steps and steps[0] == "..":
            steps.pop(0)
            up += 1
        attribute = steps.pop()[1:] if steps and steps[-1].startswith("@") else None
        if any(s.startswith("@") or s == ".." for s in steps):
            raise MappingTableError(f"unsupported xml_path {xml_path!r}")
        clark = tuple(f"{{{ns}}}{s}" for s in steps)
        alternatives.append(_XmlPath(up, clark, attribute, alt.strip()))
    return tuple(alternatives)


def _split(json_path: str) -> tuple[list[tuple[str, ...]], tuple[str, ...]]:
    """'behandlerkrav.regninger[].takster[].kode' → ([('regninger',), ('takster',)], ('kode',))."""
    pieces = [p.strip(".") for p in json_path.split("[]")]
    if not pieces[0].startswith(ROOT_OBJECT):
        raise MappingTableError(f"{json_path}: must start with {ROOT_OBJECT}")
    pieces[0] = pieces[0][len(ROOT_OBJECT) :].strip(".")
    lists = [tuple(p.split(".")) for p in pieces[:-1]]
    last = tuple(pieces[-1].split(".")) if pieces[-1] else ()
    return lists, last


def compile_table(rows: Iterable[TableRow], namespace: str, source: Path) -> MappingTable:
    root = _Plan()
    context: list[tuple[str, str]] = []
    kept = []
    for row in rows:
        kept.append(row)
        if row.converter.startswith("context:"):
            context.append((row.json_path, row.converter.split(":", 1)[1]))
            continue
        if row.converter == "none":
            continue
        lists, last = _split(row.json_path)
        if row.converter == "each":
            if last:
                raise MappingTableError(f"{row.json_path}: an each row must end in []")
            plan = root
            for keys in lists[:-1]:
                plan = plan.list_plan(keys, row.json_path)
            (path,) = _compile_path(row.xml_path, namespace)
            plan.lists.append(_ListRule(lists[-1], path, _Plan(), row.json_path))
            continue
        if row.converter not in CONVERTERS:
            raise MappingTableError(f"{row.json_path}: unknown converter {row.converter!r}")
        if not row.xml_path:
            raise MappingTableError(f"{row.json_path}: converter needs an xml_path")
        plan = root
        for keys in lists:
            plan = plan.list_plan(keys, row.json_path)
        plan.fields.append(
            _FieldRule(
                last,
                _compile_path(row.xml_path, namespace),
                CONVERTERS[row.converter],
                row.json_path,
            )
        )
    root.build_trie()
    return MappingTable(namespace, source, tuple(kept), root, tuple(context))


def read_table_rows(path: Path) -> list[TableRow]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            TableRow(
                r["json_path"].strip(), r["xml_path"].strip(), r["converter"].strip(), r["note"]
            )
            for r in csv.DictReader(handle)
        ]


def namespace_for_table(path: Path) -> str:
    """`bkm-2006-12-20.csv` serves `http://www.kith.no/xmlstds/bkm/2006-12-20`."""
    return BKM_NS_PREFIX + path.stem.removeprefix("bkm-")


@cache
def tables() -> dict[str, MappingTable]:
    found = {}
    for path in sorted(mappings_dir().glob("bkm-*.csv")):
        ns = namespace_for_table(path)
        found[ns] = compile_table(read_table_rows(path), ns, path)
    return found


def table_for(namespace: str) -> MappingTable | None:
    return tables().get(namespace)


# --------------------------------------------------------------------------- applying


# The sender's identity, or how to read it (only a regning without GUID needs it).
SenderIdentity = str | None | Callable[[], str | None]


@dataclass(slots=True)
class _Scope:
    element: etree._Element
    sender_identity: SenderIdentity
    problems: list[Problem]
    # Siblings found by climbing paths (`../Tann`), per parent: every takst of a regning
    # shares one Behandling, so its teeth are looked up once. Lives for one conversion.
    climbed: dict[tuple[etree._Element, _XmlPath], list[etree._Element]]


def _walk(
    el: etree._Element,
    node: _Node,
    hits: dict[int, tuple[int, str, etree._Element]],
    members: list[list[etree._Element]],
) -> None:
    """Fill `hits` (field → best alternative, raw text, element) and `members` (list rule →
    elements) from one pass over the elements the plan needs."""
    for index, alt, attribute in node.captures:
        current = hits.get(index)
        if current is None or alt < current[0]:
            value = el.get(attribute) if attribute else el.text
            if value is not None:
                hits[index] = (alt, value, el)
    children = node.children
    every = node.every
    if not children and not every:
        return
    visited: set[str] = set()
    for child in el:
        tag = child.tag
        sub = children.get(tag)
        if sub is not None and tag not in visited:  # the first element with a tag, as XPath [1]
            visited.add(tag)
            if not sub.leaf:
                _walk(child, sub, hits, members)
            else:
                for index, alt, attribute in sub.captures:  # a leaf: no call needed
                    current = hits.get(index)
                    if current is None or alt < current[0]:
                        value = child.get(attribute) if attribute else child.text
                        if value is not None:
                            hits[index] = (alt, value, child)
        if every:
            list_index = every.get(tag)
            if list_index is not None:
                members[list_index].append(child)


def _climb(el: etree._Element, path: _XmlPath) -> tuple[str, etree._Element] | None:
    """The rare path that starts at a parent (teeth: `../Tann` from a Takst)."""
    target: etree._Element | None = el
    for _ in range(path.up):
        target = target.getparent() if target is not None else None
    for step in path.steps:
        if target is None:
            return None
        target = next(iter(target.iterchildren(step)), None)
    if target is None:
        return None
    value = target.get(path.attribute) if path.attribute else target.text
    return (value, target) if value is not None else None


def _climbing_members(
    el: etree._Element, path: _XmlPath, memo: dict[tuple[etree._Element, _XmlPath], Any]
) -> list[etree._Element]:
    base: etree._Element | None = el
    for _ in range(path.up):
        base = base.getparent() if base is not None else None
    if base is None:
        return []
    key = (base, path)
    found = memo.get(key)
    if found is None:
        found = memo[key] = _members_below(base, path.steps)
    return found


def _members_below(base: etree._Element, steps: tuple[str, ...]) -> list[etree._Element]:
    current: etree._Element | None = base
    for step in steps[:-1]:
        current = next((c for c in current if c.tag == step), None) if current is not None else None
    if current is None:
        return []
    return [c for c in current if c.tag == steps[-1]] if steps else [current]


def _put(obj: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    if len(keys) == 1:
        obj[keys[0]] = value
        return
    for key in keys[:-1]:
        obj = obj.setdefault(key, {})
    obj[keys[-1]] = value


def _value_problem(rule: _FieldRule, err: ValueProblem, where: etree._Element) -> Problem:
    return Problem(
        "VALUE_INVALID",
        f"{rule.paths[0].source.split('|')[0]}: {err} (for {rule.json_path}).",
        line=where.sourceline,
        path=element_path(where),
    )


def _apply(plan: _Plan, scope: _Scope) -> dict[str, Any]:
    hits: dict[int, tuple[int, str, etree._Element]] = {}
    members: list[list[etree._Element]] = [[] for _ in plan.lists]
    _walk(scope.element, plan.trie, hits, members)
    for index, alt, path in plan.climbing:
        climbed = _climb(scope.element, path)
        current = hits.get(index)
        if climbed is not None and (current is None or alt < current[0]):
            hits[index] = (alt, *climbed)

    obj: dict[str, Any] = {}
    appliers = plan.appliers
    settled: set[int] = set()  # defaulted fields that got a value or a problem: no default
    for index, (_alt, raw, where) in hits.items():
        parse, key, keys, has_default = appliers[index]
        try:
            value = parse(raw)
        except ValueProblem as err:
            settled.add(index)
            scope.problems.append(_value_problem(plan.fields[index], err, where))
            continue
        if value is not None:
            if has_default:
                settled.add(index)
            if key is not None:
                obj[key] = value
            else:
                _put(obj, keys, value)
    for index in plan.with_default:
        if index not in settled:
            rule = plan.fields[index]
            _put(obj, rule.keys, rule.converter.default(obj, scope))
    for list_rule, elements in zip(plan.lists, members, strict=True):
        if list_rule.path.up or not list_rule.path.steps:
            elements = _climbing_members(scope.element, list_rule.path, scope.climbed)
        if elements:
            entries = [
                _apply(
                    list_rule.plan,
                    _Scope(el, scope.sender_identity, scope.problems, scope.climbed),
                )
                for el in elements
            ]
            _put(obj, list_rule.keys, entries)
    return obj


def map_behandlerkrav(
    krav: etree._Element, table: MappingTable, *, sender_identity: SenderIdentity
) -> tuple[dict[str, Any], list[Problem]]:
    """The `behandlerkrav` object of the JSON BKM as plain data, plus value problems."""
    problems: list[Problem] = []
    data = _apply(table.plan, _Scope(krav, sender_identity, problems, {}))
    return data, problems


def regning_elements(krav: etree._Element, table: MappingTable) -> list[etree._Element]:
    """The elements behind `behandlerkrav.regninger[]` (to point problems at a line)."""
    for rule in table.plan.lists:
        if rule.keys == ("regninger",):
            return _members_below(krav, rule.path.steps)
    return []
