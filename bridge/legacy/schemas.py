"""XSD registry: schemas found by target namespace; fast lxml checks, xmlschema explanations.

An installation may drop the official KITH XSDs into a folder of its own; the registry looks
every schema up by its targetNamespace, never by file name, so a dropped-in file serves its
namespace in place of the one shipped in `xsd/`.

Two validators, one job each: libxml2 (`lxml.etree.XMLSchema`) decides, fast. Only when it
rejects does `xmlschema` run over the same element, because its errors carry the offending
element and declaration, from which we write sentences a clinic's IT person understands.
If `xmlschema` cannot explain (it fails to load a schema libxml2 accepts, or finds nothing),
libxml2's own messages are reported instead.

Schemas never come from the network: xs:import of a namespace the registry knows is pointed
at the registry's file, every other reference must be a local file, and a URL is refused.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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

from bridge.problems import Problem

BKM_NS = "http://www.kith.no/xmlstds/bkm/2006-12-20"
MSGHEAD_NS = "http://www.kith.no/xmlstds/msghead/2006-05-24"
APPREC_NS = "http://www.kith.no/xmlstds/apprec/2004-11-21"

XSD_NS = "http://www.w3.org/2001/XMLSchema"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

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

log = logging.getLogger(__name__)


class SchemaLoadError(Exception):
    """An installed XSD cannot be used: unreadable, invalid, or it needs a file from the net."""


def builtin_xsd_dir() -> Path:
    """The `xsd/` folder shipped at the top of the repository."""
    return Path(__file__).resolve().parents[2] / "xsd"


# --------------------------------------------------------------------------- finding files


def _secure_parser(resolver: _LocalFilesOnly | None = None) -> etree.XMLParser:
    """An XSD parser that never loads DTDs, never expands entities, never opens a URL."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True
    )
    parser.resolvers.add(resolver or _LocalFilesOnly())
    return parser


def _is_local(url: str) -> bool:
    scheme = urlsplit(url).scheme
    # "C:\\..." parses with scheme "c" on Windows paths.
    return scheme in ("", "file") or len(scheme) == 1


class _LocalFilesOnly(etree.Resolver):
    """Refuses every schema reference that is not a local file (libxml2 then fails to load)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []

    def resolve(self, system_url: str, public_id: str | None, context: object) -> Any:
        if system_url and not _is_local(system_url):
            self.refused.append(system_url)
            raise SchemaLoadError(f"refused to fetch {system_url}")
        return None  # libxml2 reads the local file itself


@dataclass(frozen=True, slots=True)
class _XsdFile:
    path: Path
    namespace: str | None
    included: frozenset[Path]  # files this one pulls in with xs:include / xs:redefine


def _read_xsd_file(path: Path) -> _XsdFile:
    root = etree.parse(str(path), _secure_parser()).getroot()
    if root.tag != f"{{{XSD_NS}}}schema":
        raise SchemaLoadError(f"{path} is not an XML schema (root element {root.tag})")
    included = set()
    for ref in root.iterchildren(f"{{{XSD_NS}}}include", f"{{{XSD_NS}}}redefine"):
        location = ref.get("schemaLocation")
        if location and _is_local(location):
            included.add((path.parent / location).resolve())
    return _XsdFile(path.resolve(), root.get("targetNamespace"), frozenset(included))


def _scan_folder(folder: Path) -> dict[str, Path]:
    """namespace → main schema file in one folder (files only included by others are parts)."""
    files: list[_XsdFile] = []
    for path in sorted(folder.glob("*.xsd")):
        try:
            files.append(_read_xsd_file(path))
        except (OSError, etree.XMLSyntaxError, SchemaLoadError) as exc:
            log.warning("ignoring schema file %s: %s", path, exc)
    parts = set().union(*(f.included for f in files))
    found: dict[str, Path] = {}
    for xsd in files:
        if xsd.namespace is None or xsd.path in parts:
            continue
        if xsd.namespace in found:
            log.warning(
                "two schemas for namespace %s in %s: using %s, ignoring %s",
                xsd.namespace,
                folder,
                found[xsd.namespace].name,
                xsd.path.name,
            )
            continue
        found[xsd.namespace] = xsd.path
    return found


# --------------------------------------------------------------------------- the registry


class _Compiled:
    """One namespace's schema, compiled for libxml2; the xmlschema explainer is built lazily."""

    def __init__(self, path: Path, tree: etree._ElementTree, validator: etree.XMLSchema) -> None:
        self.path = path
        self.tree = tree
        self.validator = validator
        self.validate_lock = threading.Lock()  # an lxml validator keeps its error log
        self.explain_lock = threading.Lock()
        self._explainer: xmlschema.XMLSchema | None = None
        self._explainer_failed = False

    def explainer(self) -> xmlschema.XMLSchema | None:
        """The same schema for xmlschema, or None if xmlschema cannot load it (logged once)."""
        if self._explainer is None and not self._explainer_failed:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._explainer = xmlschema.XMLSchema(
                        self.tree,
                        base_url=str(self.path.parent) + "/",
                        allow="local",
                        defuse="always",
                    )
            except Exception as exc:  # any failure only costs us the nicer messages
                self._explainer_failed = True
                log.warning(
                    "xmlschema cannot load %s (%s); schema errors are reported as libxml2 "
                    "words them",
                    self.path.name,
                    type(exc).__name__,
                )
        return self._explainer


class SchemaRegistry:
    """The XSDs this installation knows, by target namespace.

    `extra_dirs` come before the built-in `xsd/` folder, in the order given: the first folder
    holding a schema for a namespace serves it. Folders are scanned when the registry is made
    (each file is read once for its targetNamespace); a schema is compiled on first use, kept.
    Nothing compiled is ever pickled: a registry sent to another process (inside a
    ConvertContext, say) travels as its folder list and is rebuilt there, compiling lazily.
    """

    def __init__(self, extra_dirs: Sequence[Path] = ()) -> None:
        self._extra_dirs = tuple(map(Path, extra_dirs))
        self._sources: dict[str, Path] = {}
        for folder in [*self._extra_dirs, builtin_xsd_dir()]:
            if not folder.is_dir():
                raise SchemaLoadError(f"schema folder {folder} does not exist")
            for namespace, path in _scan_folder(folder).items():
                self._sources.setdefault(namespace, path)
        self._compiled: dict[str, _Compiled] = {}
        self._compile_lock = threading.Lock()

    def __reduce__(self) -> tuple[type[SchemaRegistry], tuple[tuple[Path, ...]]]:
        return (SchemaRegistry, (self._extra_dirs,))

    def namespaces(self) -> set[str]:
        return set(self._sources)

    def knows(self, namespace: str) -> bool:
        return namespace in self._sources

    def source(self, namespace: str) -> Path:
        """The file that serves `namespace` (KeyError if none does)."""
        try:
            return self._sources[namespace]
        except KeyError:
            raise KeyError(f"no schema for namespace {namespace!r}") from None

    def compile_all(self) -> None:
        """Compile every known schema now, so a broken one fails at start-up, not mid-run."""
        for namespace in sorted(self._sources):
            self._get(namespace)

    def validate(self, element: etree._Element) -> list[Problem]:
        """Check `element` (a document root or an element inside one) against the schema of
        its namespace. [] when valid; otherwise SCHEMA_INVALID problems with the line in the
        original file and a readable element path, or one UNKNOWN_NAMESPACE problem.

        Raises SchemaLoadError if the namespace's XSD itself cannot be loaded.
        """
        tag = element.tag
        namespace = tag[1 : tag.index("}")] if tag[0] == "{" else None
        if namespace is None or namespace not in self._sources:
            return [_unknown_namespace(element, namespace)]
        compiled = self._get(namespace)
        with compiled.validate_lock:
            if compiled.validator.validate(element):
                return []
            lxml_errors = list(compiled.validator.error_log)
        problems: list[Problem] = []
        with compiled.explain_lock:
            explainer = compiled.explainer()
            try:
                problems = _explain(explainer, element) if explainer is not None else []
            except Exception as exc:  # a bug in the explainer must not lose the verdict
                log.warning("xmlschema failed to explain (%s)", type(exc).__name__)
        if not problems:
            problems = _from_lxml_errors(lxml_errors, element)
        return _capped(problems)

    def _get(self, namespace: str) -> _Compiled:
        compiled = self._compiled.get(namespace)
        if compiled is None:
            with self._compile_lock:
                compiled = self._compiled.get(namespace)
                if compiled is None:
                    compiled = self._compile(namespace)
                    self._compiled[namespace] = compiled
        return compiled

    def _compile(self, namespace: str) -> _Compiled:
        path = self._sources[namespace]
        resolver = _LocalFilesOnly()
        try:
            tree = etree.parse(str(path), _secure_parser(resolver))
        except (OSError, etree.XMLSyntaxError) as exc:
            raise SchemaLoadError(f"cannot read schema {path}: {exc}") from exc
        self._point_imports_at_registry(tree, path)
        try:
            validator = etree.XMLSchema(tree)
        except etree.XMLSchemaParseError as exc:
            if resolver.refused:
                raise _not_local(path, resolver.refused[0]) from exc
            raise SchemaLoadError(f"schema {path} (for {namespace}) is not usable: {exc}") from exc
        return _Compiled(path, tree, validator)

    def _point_imports_at_registry(self, tree: etree._ElementTree, path: Path) -> None:
        """xs:import of a namespace the registry knows uses the registry's file; any other
        reference must be local. Refused here, before libxml2, for a clear message."""
        root = tree.getroot()
        refs = root.iterchildren(
            f"{{{XSD_NS}}}import", f"{{{XSD_NS}}}include", f"{{{XSD_NS}}}redefine"
        )
        for ref in refs:
            namespace = ref.get("namespace")
            if ref.tag == f"{{{XSD_NS}}}import" and namespace in self._sources:
                ref.set("schemaLocation", self._sources[namespace].as_uri())
                continue
            location = ref.get("schemaLocation")
            if location and not _is_local(location):
                raise _not_local(path, location)


def _not_local(path: Path, url: str) -> SchemaLoadError:
    return SchemaLoadError(
        f"schema {path} needs {url}, which is not a local file; schemas are only loaded from "
        "local files: put that schema into a schema folder"
    )


@functools.cache
def default_registry() -> SchemaRegistry:
    """The registry of the built-in schemas only, one per process."""
    return SchemaRegistry()


# --------------------------------------------------------------------------- explaining


def _explain(schema: xmlschema.XMLSchema, root: etree._Element) -> list[Problem]:
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


def _unknown_namespace(element: etree._Element, namespace: str | None) -> Problem:
    name = _name(element)
    if namespace is None:
        message = f"Element {name} has no namespace, so no schema applies to it"
    else:
        message = f"No schema is installed for namespace {namespace} (element {name})"
    return Problem("UNKNOWN_NAMESPACE", message, line=element.sourceline, path=name)


_LXML_SUBJECT = re.compile(r"^Element '(?P<tag>[^']+)'(?:, attribute '(?P<attr>[^']+)')?: ")


def _from_lxml_errors(errors: Iterable[Any], root: etree._Element) -> list[Problem]:
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


def _capped(problems: list[Problem]) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    left_out = len(problems) - MAX_PROBLEMS
    at_least = "at least " if len(problems) >= _MAX_COUNTED else ""
    more = Problem("SCHEMA_INVALID", f"… and {at_least}{left_out} more schema problems")
    return [*problems[:MAX_PROBLEMS], more]
