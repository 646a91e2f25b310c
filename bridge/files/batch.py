"""Many legacy files → one JSON file each in an output folder (`bkm-bridge convert --out`).

One bad file never stops the others: each gets its problems reported and the run goes on.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bridge.core.convert import ConvertContext, ConvertResult
from bridge.core.model import dump_json
from bridge.files.fsutil import atomic_write
from bridge.files.reading import convert_file


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: Path
    relative: Path  # where its output goes under --out (mirrors a walked folder's tree)


@dataclass
class BatchSummary:
    converted: int = 0
    failed: int = 0
    warnings: int = 0
    problem_counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.converted + self.failed


def find_xml_files(paths: Iterable[Path]) -> Iterator[SourceFile]:
    """Files as given, and `*.xml` below folders (recursively, sorted for stable output)."""
    for path in paths:
        if path.is_dir():
            yield from _xml_files_below(path, Path())
        else:
            yield SourceFile(path, Path(path.name))


def _xml_files_below(folder: Path, relative: Path) -> Iterator[SourceFile]:
    """Depth first, names sorted per folder: the order of sorting the full paths, without a
    stat per file (scandir's entries know their type). Linked folders are not followed."""
    try:
        with os.scandir(folder) as entries:
            found = sorted(entries, key=lambda entry: entry.name)
    except OSError:  # unreadable folder: skipped, as a glob skips it
        return
    for entry in found:
        if entry.is_dir(follow_symlinks=False):
            yield from _xml_files_below(Path(entry.path), relative / entry.name)
        elif len(entry.name) > 4 and entry.name[-4:].lower() == ".xml" and entry.is_file():
            yield SourceFile(Path(entry.path), relative / entry.name)


def output_path(out_dir: Path, source: SourceFile, taken: set[Path]) -> Path:
    """`NAME.json` under out_dir; a name already used in this run gets `NAME~2.json`."""
    target = out_dir / source.relative.with_suffix(".json")
    n = 1
    while target in taken:
        n += 1
        target = out_dir / source.relative.with_name(f"{source.relative.stem}~{n}.json")
    taken.add(target)
    return target


def convert_to_folder(
    sources: Iterable[SourceFile],
    out_dir: Path,
    context: ConvertContext,
    on_result: Callable[[SourceFile, ConvertResult], None] | None = None,
) -> BatchSummary:
    summary = BatchSummary()
    taken: set[Path] = set()
    for source in sources:
        result = convert_file(source.path, context)
        summary.problem_counts.update(p.code for p in result.problems)
        summary.warnings += len(result.warnings)
        if result.ok and result.melding is not None:
            atomic_write(output_path(out_dir, source, taken), dump_json(result.melding).encode())
            summary.converted += 1
        else:
            summary.failed += 1
        if on_result is not None:
            on_result(source, result)
    return summary
