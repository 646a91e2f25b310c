"""Which folders count as production folders, where no sandbox or dev AppRec may go."""

from __future__ import annotations

from pathlib import Path

from bridge.files.production import (
    PRODUCTION_MARKER,
    mark_production_folders,
    production_reason,
)


def test_a_marked_folder_and_the_folders_below_a_marked_root_are_production(
    tmp_path: Path,
) -> None:
    root, sub, other = tmp_path / "epj", tmp_path / "epj" / "lege1", tmp_path / "test"
    for folder in (sub, other):
        folder.mkdir(parents=True)
    assert production_reason(root, None) is None
    mark_production_folders([root, root])  # twice: written once, no error
    assert (root / PRODUCTION_MARKER).read_text(encoding="utf-8").startswith("Denne mappen")
    assert production_reason(root, None) == f"it holds {PRODUCTION_MARKER}"
    assert production_reason(sub, root) == f"it holds {PRODUCTION_MARKER}"  # via its root
    assert production_reason(other, tmp_path) is None


def test_folders_of_a_production_settings_file_count_with_their_subfolders(
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    reason = "the settings file names it as a production folder"
    assert production_reason(inbox / "sub", inbox, [inbox]) == reason
    assert production_reason(tmp_path / "inboxes", None, [inbox]) is None  # not a prefix match
