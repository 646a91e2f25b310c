"""Explaining a schema failure in words a clinic's IT person understands.

Imported only when libxml2 has rejected a file: `xmlschema` is slow to import and to run,
and valid files never need it. Its errors carry the offending element and declaration, from
which the sentences are written; when it cannot explain, libxml2's own messages are used.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from typing import Any

import xmlschema
from lxml import etree
from xmlschema.validators import (
    XsdAttributeGroup,
    XsdElement,
    XsdEnumerationFacets,
    XsdFacet,
    XsdGroup,
)
from xmlschema.validators.exceptions import (
    XMLSchemaChildrenValidationError,
    XMLSchemaValidationError,
)

from bridge.core.legacy.namespaces import XSD_NS, XSI_NS
from bridge.core.problems import Problem

# At most this many schema problems are reported per element, then one "… and N more".
MAX_PROBLEMS = 50
# A pathological file can have errors without end; stop counting them here.
_MAX_COUNTED = 10_000
# Values inside these elements are patient or person data (names, fødselsnummer, diagnoses):
# a message names the element but never quotes the value.
_PERSONAL_ELEMENTS = frozenset(
    {
        "Patient",
        "Ident",
        "Behandlerident",
        "RelatertBehandler",
        "HealthcareProfessional",
        "HCPerson",
        "Diagnose",
        "HenvisningsDiagnose",
        "FamilyName",
        "MiddleName",
        "GivenName",
        "DateOfBirth",
    }
)

# --------------------------------------------------------------------------- explaining


def explain(schema: xmlschema.XMLSchema, root: etree._Element) -> list[Problem]:
    """Run xmlschema over `root` and turn each distinct error into a sentence."""
    decls: dict[etree._Element, XsdElement] = {}

    def remember(elem: etree._Element, decl: XsdElement) -> bool:
        decls[elem] = decl
        return False  # False: do validate this element

    context = _Context(root, decls)
    problems: list[Problem] = []
    seen: set[tuple[int | None, str | None, str]] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for error in schema.iter_errors(root, validation_hook=remember):
            for problem in context.describe(error):
                key = (problem.line, problem.path, problem.message)
                if key not in seen:
                    seen.add(key)
                    problems.append(problem)
            if len(problems) >= _MAX_COUNTED:
                break
    return problems


class _Context:
    """What the sentences need: the validated element and the declaration of each element."""

    def __init__(self, root: etree._Element, decls: dict[etree._Element, XsdElement]) -> None:
        self.root = root
        self.decls = decls
        self._repeats: dict[tuple[int, str], bool] = {}

    def describe(self, error: XMLSchemaValidationError) -> list[Problem]:
        elem = error.elem
        if not isinstance(elem, etree._Element):
            return [self._problem(_clean(error.reason or str(error)), None)]
        if isinstance(error, XMLSchemaChildrenValidationError):
            return self._children(error, elem)
        validator = error.validator
        if isinstance(validator, XsdElement) and validator.identities:
            found = self._repeated_fields(validator, elem)
            if found:
                return found
        if isinstance(validator, XsdAttributeGroup):
            found = self._attributes(elem)
            if found:
                return found
        if error.obj is not None and not isinstance(error.obj, (etree._Element, dict)):
            return [self._value(error, elem)]
        decl = self.decls.get(elem)
        if decl is not None and decl.fixed is not None and (elem.text or "") != decl.fixed:
            return [self._problem(f"{_name(elem)} must be '{decl.fixed}'", elem)]
        if _has_text(elem):
            return [self._problem(f"{_name(elem)} must not contain text", elem)]
        return [self._problem(f"{_name(elem)}: {self._reason(error, elem)}", elem)]

    # -- the kinds of error

    def _children(
        self, error: XMLSchemaChildrenValidationError, parent: etree._Element
    ) -> list[Problem]:
        child = error.invalid_child
        if isinstance(child, etree._Element):
            message = self._unexpected(parent, child, error.expected or ())
            return [self._problem(message, child)]
        expected = [_particle_name(p) for p in error.expected or ()]
        expected = [name for name in dict.fromkeys(expected) if name]
        decl = self.decls.get(parent)
        content = getattr(decl.type, "content", None) if decl is not None else None
        every = isinstance(content, XsdGroup) and content.model == "all"
        if every:
            # xs:all: name every missing required child at once, not only the first.
            present = {_name(c) for c in parent.iterchildren(tag=etree.Element)}
            required = [p.local_name for p in content.iter_elements() if p.min_occurs > 0]
            expected = [name for name in required if name not in present] or expected
        if not expected:
            return [self._problem(f"{_name(parent)} is missing a child element", parent)]
        if every:
            return [
                self._problem(f"{_name(parent)} is missing its {name} element", parent)
                for name in expected
            ]
        return [
            self._problem(f"{_name(parent)} is missing its {' or '.join(expected)} element", parent)
        ]

    def _unexpected(
        self, parent: etree._Element, child: etree._Element, expected_here: Iterable[Any]
    ) -> str:
        name = _name(child)
        where = _name(parent)
        qname = etree.QName(child)
        if qname.namespace != etree.QName(parent).namespace:
            namespace = qname.namespace or "no namespace"
            return f"Unexpected element {name} ({namespace}) inside {where}"
        decl = self.decls.get(parent)
        known = decl is not None and any(_particle_name(p) == name for p in _content_elements(decl))
        if not known:
            return f"Unexpected element {name} inside {where}"
        earlier = any(True for _ in child.itersiblings(child.tag, preceding=True))
        if earlier and not self._may_repeat(parent, child.tag):
            return f"{name} appears more than once inside {where}"
        expected = [n for n in dict.fromkeys(map(_particle_name, expected_here)) if n]
        hint = f" (expected {' or '.join(expected)} here)" if 0 < len(expected) <= 3 else ""
        return f"{name} is not allowed at this place inside {where}{hint}"

    def _repeated_fields(self, decl: XsdElement, elem: etree._Element) -> list[Problem]:
        """An xs:unique/xs:key field that selects more than one node: "at most once" broken."""
        problems = []
        for identity in decl.identities:
            for field in identity.fields:
                prefixes = {k: v for k, v in field.namespaces.items() if k}
                try:
                    nodes = elem.xpath(field.path, namespaces=prefixes)
                except etree.XPathError:
                    continue
                if not isinstance(nodes, list) or len(nodes) < 2:
                    continue
                holders = [n if isinstance(n, etree._Element) else n.getparent() for n in nodes]
                names = list(dict.fromkeys(_relative(h, elem) for h in holders))
                where = _name(elem)
                if len(names) == 1:
                    text = f"{names[0]} appears more than once inside {where}"
                else:
                    text = f"{where} has {' and '.join(names)}; only one of them is allowed"
                problems.append(self._problem(text, holders[1]))
        return problems

    def _attributes(self, elem: etree._Element) -> list[Problem]:
        decl = self.decls.get(elem)
        if decl is None:
            return []
        declared = decl.type.attributes
        problems = []
        for name, attribute in declared.items():
            if name and attribute.use == "required" and name not in elem.attrib:
                problems.append(
                    self._problem(f"{_name(elem)} is missing its {name} attribute", elem)
                )
        if None not in declared:  # no xs:anyAttribute
            for name in elem.attrib:
                if name not in declared and not name.startswith(f"{{{XSI_NS}}}"):
                    problems.append(
                        self._problem(
                            f"Unexpected attribute {etree.QName(name).localname} on {_name(elem)}",
                            elem,
                        )
                    )
        for name, attribute in declared.items():
            fixed = getattr(attribute, "fixed", None)
            if name and fixed is not None and elem.get(name) not in (None, fixed):
                problems.append(self._problem(f"{_name(elem)}/@{name} must be '{fixed}'", elem))
        return problems

    def _value(self, error: XMLSchemaValidationError, elem: etree._Element) -> Problem:
        """A text or attribute value that is not of its type."""
        value = error.obj if isinstance(error.obj, str) else str(error.obj)
        attribute = _attribute_holding(elem, value, error.reason or "")
        decl = self.decls.get(elem)
        simple_type = None
        fixed = None
        if decl is not None:
            if attribute is not None:
                declared = decl.type.attributes.get(attribute)
                simple_type = declared.type if declared is not None else None
                fixed = getattr(declared, "fixed", None)
            elif decl.type.is_simple():
                simple_type, fixed = decl.type, decl.fixed
            elif decl.type.has_simple_content():
                simple_type, fixed = decl.type.content, decl.fixed
        label = f"{_name(elem)}/@{attribute}" if attribute else _name(elem)
        shown = "" if _is_personal(elem, self.root) else f" '{value}'"
        if fixed is not None and value != fixed:
            return self._problem(f"{label}{shown} must be '{fixed}'", elem)
        validator = error.validator
        if isinstance(validator, XsdEnumerationFacets):
            allowed = ", ".join(str(v) for v in validator.enumeration)
            return self._problem(
                f"{label}{shown} is not one of the allowed values ({allowed})", elem
            )
        if isinstance(validator, XsdFacet) and (text := _facet_sentence(validator, label, shown)):
            return self._problem(text, elem)
        kind = _builtin_name(simple_type) if simple_type is not None else None
        sentence = _KIND_SENTENCES.get(kind or "") or f"is not valid ({self._reason(error, elem)})"
        return self._problem(f"{label}{shown} {sentence}", elem)

    # -- helpers

    def _reason(self, error: XMLSchemaValidationError, elem: etree._Element) -> str:
        """xmlschema's own words, for errors without a sentence of ours; no personal values."""
        reason = _clean(error.reason or "does not follow the schema")
        return _hide_values(reason, elem) if _is_personal(elem, self.root) else reason

    def _problem(self, message: str, elem: etree._Element | None) -> Problem:
        if elem is None:
            return Problem("SCHEMA_INVALID", message)
        return Problem("SCHEMA_INVALID", message, line=elem.sourceline, path=self.path(elem))

    def path(self, elem: etree._Element) -> str:
        """BehandlerKrav/Enkeltregning[2]/Behandling/Takst[1]/Verdi: an index where the
        element may repeat (or does), counted among same-named siblings from 1."""
        steps = []
        node: etree._Element | None = elem
        while node is not None:
            step = _name(node)
            parent = node.getparent()
            if node is not self.root and parent is not None:
                same = sum(1 for _ in node.itersiblings(node.tag, preceding=True))
                repeated = same > 0 or any(True for _ in node.itersiblings(node.tag))
                if repeated or self._may_repeat(parent, node.tag):
                    step += f"[{same + 1}]"
            steps.append(step)
            if node is self.root:
                break
            node = parent
        return "/".join(reversed(steps))

    def _may_repeat(self, parent: etree._Element, tag: str) -> bool:
        decl = self.decls.get(parent)
        if decl is None:
            return False
        key = (id(decl.type), tag)
        if key not in self._repeats:
            local = etree.QName(tag).localname
            maxima = [
                decl.type.overall_max_occurs(p)
                for p in _content_elements(decl)
                if _particle_name(p) == local
            ]
            self._repeats[key] = any(m is None or m > 1 for m in maxima)
        return self._repeats[key]


_KIND_SENTENCES = {
    "decimal": "is not an amount (expected a decimal number like 435.00)",
    "integer": "is not a whole number",
    "int": "is not a whole number",
    "long": "is not a whole number",
    "short": "is not a whole number",
    "positiveInteger": "is not a whole number of 1 or more",
    "nonNegativeInteger": "is not a whole number of 0 or more",
    "dateTime": "is not a valid date and time (expected e.g. 2014-05-17T11:20:00)",
    "date": "is not a valid date (expected e.g. 2014-05-17)",
    "time": "is not a valid time (expected e.g. 11:20:00)",
    "boolean": "is not true or false (expected true, false, 1 or 0)",
    "base64Binary": "is not valid base64",
    "anyURI": "is not a valid URI",
}


def _facet_sentence(facet: XsdFacet, label: str, shown: str) -> str | None:
    kind = str(getattr(facet.elem, "tag", "")).rpartition("}")[2]  # xs:minLength → minLength
    limit = facet.value
    if kind == "minLength" and limit == 1:
        return f"{label} is empty"
    sentences = {
        "minLength": f"{label}{shown} is shorter than {limit} characters",
        "maxLength": f"{label}{shown} is longer than {limit} characters",
        "length": f"{label}{shown} is not {limit} characters long",
        "fractionDigits": f"{label}{shown} has more than {limit} decimals",
        "totalDigits": f"{label}{shown} has more than {limit} digits",
        "pattern": f"{label}{shown} does not have the expected form",
        "minInclusive": f"{label}{shown} is less than {limit}",
        "minExclusive": f"{label}{shown} must be more than {limit}",
        "maxInclusive": f"{label}{shown} is more than {limit}",
        "maxExclusive": f"{label}{shown} must be less than {limit}",
    }
    return sentences.get(kind)


def _builtin_name(simple_type: Any) -> str | None:
    """The XSD built-in type a simple type is derived from (decimal for an amount type)."""
    current = simple_type
    while current is not None:
        name = getattr(current, "name", None)
        if name and name.startswith(f"{{{XSD_NS}}}"):
            return etree.QName(name).localname
        current = getattr(current, "base_type", None)
    return None


def _attribute_holding(elem: etree._Element, value: str, reason: str) -> str | None:
    """Which attribute of `elem` the bad value came from (None: the element's text)."""
    normal = " ".join(value.split())
    names = [k for k, v in elem.attrib.items() if " ".join(v.split()) == normal]
    text = " ".join((elem.text or "").split())
    if len(names) == 1 and (text != normal or f"attribute {names[0]}=" in reason):
        return etree.QName(names[0]).localname
    return None


def _content_elements(decl: XsdElement) -> Iterable[Any]:
    content = getattr(decl.type, "content", None)
    return content.iter_elements() if isinstance(content, XsdGroup) else ()


def _particle_name(particle: Any) -> str | None:
    return getattr(particle, "local_name", None)


def _has_text(elem: etree._Element) -> bool:
    return bool((elem.text or "").strip()) or any((c.tail or "").strip() for c in elem)


def _name(elem: etree._Element) -> str:
    return etree.QName(elem).localname


def _relative(elem: etree._Element, ancestor: etree._Element) -> str:
    steps = []
    node: etree._Element | None = elem
    while node is not None and node is not ancestor:
        steps.append(_name(node))
        node = node.getparent()
    return "/".join(reversed(steps))


def _is_personal(elem: etree._Element, root: etree._Element) -> bool:
    node: etree._Element | None = elem
    while node is not None:
        if _name(node) in _PERSONAL_ELEMENTS:
            return True
        if node is root:
            return False
        node = node.getparent()
    return False


def _hide_values(text: str, elem: etree._Element) -> str:
    """`text` with the element's own text and attribute values replaced by '…'."""
    values = [elem.text, *elem.attrib.values()]
    for value in sorted({v.strip() for v in values if v and v.strip()}, key=len, reverse=True):
        text = text.replace(value, "…")
        text = text.replace(" ".join(value.split()), "…")
    return text


def _clean(text: str) -> str:
    """Drop {namespace} prefixes, line breaks and the final full stop from a message."""
    text = re.sub(r"\{[^{}]*\}", "", text)
    return text.strip().rstrip(".").replace("\n", " ")


# --------------------------------------------------------------------------- fallbacks


def unknown_namespace(element: etree._Element, namespace: str | None) -> Problem:
    name = _name(element)
    if namespace is None:
        message = f"Element {name} has no namespace, so no schema applies to it"
    else:
        message = f"No schema is installed for namespace {namespace} (element {name})"
    return Problem("UNKNOWN_NAMESPACE", message, line=element.sourceline, path=name)


_LXML_SUBJECT = re.compile(r"^Element '(?P<tag>[^']+)'(?:, attribute '(?P<attr>[^']+)')?: ")


def from_lxml_errors(errors: Iterable[Any], root: etree._Element) -> list[Problem]:
    """libxml2's own messages, de-namespaced; values of personal elements are not quoted."""
    context = _Context(root, {})
    problems: list[Problem] = []
    seen: set[tuple[int | None, str]] = set()
    for entry in errors:
        message = entry.message
        line = entry.line or None
        elem = None
        match = _LXML_SUBJECT.match(message)
        if match:
            tag = match["tag"]
            elem = next((e for e in root.iter(tag) if e.sourceline == line), None)
            subject = etree.QName(tag).localname
            if match["attr"]:
                subject += f"/@{match['attr']}"
            rest = message[match.end() :]
            if elem is not None and _is_personal(elem, root):
                rest = _hide_values(rest, elem)
            message = f"{subject}: {rest}"
        message = _clean(message)
        if (line, message) in seen:
            continue
        seen.add((line, message))
        path = context.path(elem) if elem is not None else None
        problems.append(Problem("SCHEMA_INVALID", message, line=line, path=path))
    return problems


def capped(problems: list[Problem]) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    left_out = len(problems) - MAX_PROBLEMS
    at_least = "at least " if len(problems) >= _MAX_COUNTED else ""
    more = Problem("SCHEMA_INVALID", f"… and {at_least}{left_out} more schema problems")
    return [*problems[:MAX_PROBLEMS], more]
