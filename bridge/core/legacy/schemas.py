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

import logging
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from bridge.core.legacy.namespaces import XSD_NS
from bridge.core.problems import Problem
from bridge.errors import BridgeError
from bridge.paths import shipped_folder

log = logging.getLogger(__name__)
# One lock for every schema compilation in the process, across registries: libxml2's
# schema compiler is not safe to run on two threads at once. Two concurrent compilations
# (two registries, each on its own thread, in a burst of new files) left libxml2 unable to
# compile any schema again ("xmlSchemaPValAttrNodeValue, the given type is not a built-in
# type") for the rest of the process's life.
_COMPILE_LOCK = threading.RLock()


class SchemaLoadError(BridgeError):
    """An installed XSD cannot be used: unreadable, invalid, or it needs a file from the net."""


def builtin_xsd_dir() -> Path:
    """The `xsd/` folder shipped with the package (InstallationError when it is missing)."""
    return shipped_folder("xsd")


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
        self._explainer: Any = None  # xmlschema.XMLSchema, imported only when needed
        self._explainer_failed = False

    def explainer(self) -> Any:
        """The same schema for xmlschema, or None if xmlschema cannot load it (logged once)."""
        if self._explainer is None and not self._explainer_failed:
            import xmlschema

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
            from bridge.core.legacy.explain import unknown_namespace  # (see below)

            return [unknown_namespace(element, namespace)]
        compiled = self._get(namespace)
        with compiled.validate_lock:
            if compiled.validator.validate(element):
                return []
            lxml_errors = list(compiled.validator.error_log)
        # Here, not at the top: explaining needs xmlschema, whose import costs ~1.5 s (python
        # -X importtime), paid only once a file is invalid, never by `convert` of a good one.
        from bridge.core.legacy.explain import capped, explain, from_lxml_errors

        problems: list[Problem] = []
        with compiled.explain_lock:
            explainer = compiled.explainer()
            try:
                problems = explain(explainer, element) if explainer is not None else []
            except Exception as exc:  # a bug in the explainer must not lose the verdict
                log.warning("xmlschema failed to explain (%s)", type(exc).__name__)
        if not problems:
            problems = from_lxml_errors(lxml_errors, element)
        return capped(problems)

    def _get(self, namespace: str) -> _Compiled:
        compiled = self._compiled.get(namespace)
        if compiled is None:
            with _COMPILE_LOCK:
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


def default_registry() -> SchemaRegistry:
    """The registry of the built-in schemas only, one per process (also when the first
    conversions start on several threads at once)."""
    global _default
    if _default is None:
        with _COMPILE_LOCK:
            if _default is None:
                _default = SchemaRegistry()
    return _default


_default: SchemaRegistry | None = None
