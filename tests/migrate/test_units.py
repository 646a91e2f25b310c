"""The pieces of `bkm-bridge migrate` that need no KUHR: discovery (folders, zip members,
dates), journal keys and where their receipts go, reading members in place, the rate limiter,
the journal lock and the refusals before anything starts."""

from __future__ import annotations

import asyncio
import os
import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest
from support.migrate import claim_xml, write_zip

from bridge.config import load_settings
from bridge.files.discovery import DateRange, count_sources, discover, receipt_source, split_key
from bridge.files.reading import TooLargeError
from bridge.files.receipts import receipt_paths
from bridge.files.sources import SourceReader
from bridge.flow.assembly import migrate_journal_path
from bridge.migrate.migration import Migration
from bridge.migrate.options import MigrateOptions, MigrationError
from bridge.migrate.rate import RateLimiter, parse_rate
from bridge.migrate.tally import JournalLockedError, exclusive


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "arkiv"
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "b" / "2.xml").write_bytes(claim_xml(2))
    (root / "a" / "1.XML").write_bytes(claim_xml(1))
    (root / "0.xml").write_bytes(claim_xml(0))
    (root / "0.xml.kvittering.json").write_text("{}")  # a receipt of an earlier run
    (root / "0.apprec.xml").write_text("<AppRec/>")
    (root / "notes.txt").write_text("not a claim")
    write_zip(
        root / "a" / "gammelt.zip",
        {
            "2019/k1.xml": claim_xml(10),
            "2019/": b"",
            "__MACOSX/2019/._k1.xml": b"resource fork",
            "2019/readme.txt": b"x",
            "k0.xml": claim_xml(11),
        },
    )
    return root


def test_discovery_walks_folders_in_name_order_and_reads_zip_members(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    found = [(s.key, s.relative.as_posix(), s.root) for s in discover([root])]
    assert count_sources([root]) == len(found)
    zip_path = root / "a" / "gammelt.zip"
    assert found == [
        (str(root / "0.xml"), "0.xml", root),
        (str(root / "a" / "1.XML"), "a/1.XML", root),
        (f"{zip_path}!k0.xml", "a/gammelt.zip/k0.xml", root),
        (f"{zip_path}!2019/k1.xml", "a/gammelt.zip/2019/k1.xml", root),
        (str(root / "b" / "2.xml"), "b/2.xml", root),
    ]


def test_a_zip_given_directly_is_rooted_at_its_folder(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    zip_path = root / "a" / "gammelt.zip"
    sources = list(discover([zip_path]))
    relative = [s.relative.as_posix() for s in sources]
    assert relative == ["gammelt.zip/k0.xml", "gammelt.zip/2019/k1.xml"]
    assert {s.root for s in sources} == {root / "a"}


def test_zip_member_keys_split_back_and_name_their_receipts_inside_the_mirror(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "x.zip"
    key = f"{archive}!dir/k.xml"
    assert split_key(key) == (str(archive), "dir/k.xml")
    assert split_key(str(tmp_path / "plain.xml")) is None
    assert receipt_source(key) == archive / "dir" / "k.xml"
    json_path, apprec = receipt_paths(receipt_source(key), tmp_path / "kvitteringer", tmp_path)
    assert json_path == tmp_path / "kvitteringer" / "x.zip" / "dir" / "k.xml.kvittering.json"
    assert apprec == tmp_path / "kvitteringer" / "x.zip" / "dir" / "k.apprec.xml"


def test_a_hostile_member_name_cannot_climb_out_of_the_receipts_folder(tmp_path: Path) -> None:
    archive = write_zip(
        tmp_path / "in" / "ond.zip",
        {"../../../etc/k.xml": claim_xml(1), "/abs/k2.xml": claim_xml(2), "C:\\w\\k3.xml": b""},
    )
    receipts = tmp_path / "kvitteringer"
    for source in discover([tmp_path / "in"]):
        json_path, _ = receipt_paths(receipt_source(source.key), receipts, source.root)
        assert json_path.resolve().is_relative_to(receipts.resolve()), source.key
        assert not Path(source.relative).is_absolute() and ".." not in source.relative.parts
        assert split_key(source.key)[0] == str(archive)


def test_a_damaged_zip_is_one_unreadable_source(tmp_path: Path) -> None:
    (tmp_path / "skadet.zip").write_bytes(b"PK\x03\x04 not really a zip")
    [source] = discover([tmp_path])
    assert source.key == f"{tmp_path / 'skadet.zip'}!"
    assert receipt_source(source.key) == tmp_path / "skadet.zip"
    with pytest.raises(OSError, match="not a readable zip archive"):
        SourceReader().read(source.key)


def test_members_are_read_in_place_and_damage_is_an_oserror(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "a.zip", {"k.xml": claim_xml(5) * 5})
    reader = SourceReader()
    assert reader.read(f"{archive}!k.xml") == claim_xml(5) * 5
    assert reader.size_and_sha256(f"{archive}!k.xml")[0] == len(claim_xml(5) * 5)
    with pytest.raises(FileNotFoundError):
        reader.read(f"{archive}!missing.xml")
    with pytest.raises(TooLargeError) as too_large:
        reader.read(f"{archive}!k.xml", max_bytes=100)
    assert too_large.value.size == len(claim_xml(5) * 5)
    reader.close()
    # Flip bytes in the compressed data: the member's CRC or inflate fails.
    data = bytearray(archive.read_bytes())
    offset = data.index(b"k.xml") + len(b"k.xml") + 40
    data[offset : offset + 20] = bytes(20)
    archive.write_bytes(bytes(data))
    with pytest.raises(OSError, match="damaged"):
        SourceReader().read(f"{archive}!k.xml")


def test_dates_select_by_modification_day(tmp_path: Path) -> None:
    old, new = tmp_path / "old.xml", tmp_path / "new.xml"
    old.write_bytes(claim_xml(1))
    new.write_bytes(claim_xml(2))
    os.utime(old, (datetime(2019, 3, 1, 12).timestamp(),) * 2)
    os.utime(new, (datetime(2024, 3, 1, 12).timestamp(),) * 2)
    archive = tmp_path / "z.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(zipfile.ZipInfo("m2019.xml", (2019, 6, 1, 8, 0, 0)), claim_xml(3))
        zipped.writestr(zipfile.ZipInfo("m2024.xml", (2024, 6, 1, 8, 0, 0)), claim_xml(4))

    def names(dates: DateRange) -> list[str]:
        return [Path(s.key.split("!")[-1]).name for s in discover([tmp_path], dates)]

    assert names(DateRange()) == ["new.xml", "old.xml", "m2019.xml", "m2024.xml"]
    assert names(DateRange(since=date(2020, 1, 1))) == ["new.xml", "m2024.xml"]
    assert names(DateRange(until=date(2019, 12, 31))) == ["old.xml", "m2019.xml"]
    assert names(DateRange(date(2019, 3, 1), date(2019, 3, 1))) == ["old.xml"]


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("50", 50.0), ("50/s", 50.0), ("600/min", 10.0), ("7200/h", 2.0), (" 2.5 / s ", 2.5)],
)
def test_rates_are_read_per_second(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["0", "-1/s", "fast", "10/day", ""])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--rate"):
        parse_rate(text)


def test_the_rate_limiter_spaces_starts_evenly() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))

    async def main() -> None:
        limiter = RateLimiter(10, clock=lambda: now[0], sleep=sleep)
        await asyncio.gather(*(limiter.wait() for _ in range(4)))
        now[0] += 5  # idle for a while: no burst is saved up
        await limiter.wait()
        await limiter.wait()

    asyncio.run(main())
    assert slept == [0.1, 0.2, 0.3, 0.1]


def _settings(tmp_path: Path):
    return load_settings(None, {"watch.state_dir": tmp_path / "state"})


def test_one_migration_at_a_time_per_journal(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "k.xml").write_bytes(claim_xml(1))
    settings = _settings(tmp_path)
    options = MigrateOptions(paths=(tmp_path / "in",), receipts_dir=tmp_path / "r")
    path = migrate_journal_path(settings)
    assert path == tmp_path / "state" / "migrate-sandbox.db"
    with exclusive(path), pytest.raises(JournalLockedError, match="another bkm-bridge migrate"):
        Migration(settings, options).run()
    assert not (tmp_path / "r").exists()


def test_refusals_before_anything_starts(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    (tmp_path / "in").mkdir()
    write_zip(tmp_path / "in" / "a.zip", {"k.xml": claim_xml(1)})
    with pytest.raises(MigrationError, match=r"zip archives.*--receipts"):
        Migration(settings, MigrateOptions(paths=(tmp_path / "in",)))
    with pytest.raises(MigrationError, match="--out is for --dry-run"):
        Migration(
            settings,
            MigrateOptions(paths=(tmp_path / "in",), out_dir=tmp_path / "o", receipts_dir=tmp_path),
        )
    with pytest.raises(MigrationError, match="does not exist"):
        Migration(settings, MigrateOptions(paths=(tmp_path / "nowhere",), dry_run=True))
