"""Every bad file of the conversion suite, dropped into a watched folder, gets a receipt that
says what is wrong; the good file beside them is still sent; an AppRec is skipped quietly."""

from __future__ import annotations

import json
from pathlib import Path

from support.bad_input import BAD_CASES, Env, good_claim

from bridge.config import load_settings
from bridge.daemon.runner import Runner, RunOptions

MB = 1024 * 1024


def test_bad_files_get_receipts_and_the_good_one_is_sent(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    env = Env(tmp_path, "http://127.0.0.1:9/never-fetched.dtd")
    for case in BAD_CASES:
        (inbox / f"{case.name}.xml").write_bytes(case.make(env))
    with (inbox / "huge.xml").open("wb") as handle:
        handle.truncate(50 * MB)
    (inbox / "good.xml").write_bytes(good_claim())

    settings = load_settings(
        None,
        {
            "watch.state_dir": tmp_path / "state",
            "watch.quiet_seconds": 0.1,
            "watch.praksis_id": "1004326178",
        },
    )
    runner = Runner(settings, RunOptions(folders=(inbox,), sandbox_speed=120))
    assert runner.run_once() == 1  # some files failed locally; the run itself completed

    def receipt(name: str) -> dict | None:
        path = inbox / f"{name}.kvittering.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    for case in BAD_CASES:
        got = receipt(f"{case.name}.xml")
        if case.code == "NOT_A_BKM":
            assert got is None, case.name  # skipped quietly
            continue
        assert got is not None, case.name
        assert got["status"] == "avvist_lokalt", case.name
        assert case.code in {p["kode"] for p in got["problemer"]}, (case.name, got["problemer"])
        assert (inbox / f"{case.name}.apprec.xml").is_file(), case.name
    huge = receipt("huge.xml")
    assert huge is not None and huge["problemer"][0]["kode"] == "FILE_TOO_LARGE"
    good = receipt("good.xml")
    assert good is not None and good["behandlerkravmeldingId"], good
