"""The open data client, the sandbox's open data endpoints and the local takst cache, over
loopback: what `takster sync`, `takster search` and `takster status` do, online and offline."""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from support.paths import FIXTURES
from typer.testing import CliRunner

from bridge.cli.precheck import register
from bridge.files.takstcache import cache_file, load_snapshot, load_table, sync
from bridge.kuhr.opendata import HELFO_OPNE_DATA_URL, OpenDataClient, OpenDataError
from bridge.sandbox import start_sandbox
from bridge.sandbox.keys import generate_keys

SANDBOX_TAKSTER = FIXTURES / "opendata" / "sandbox-takster.toml"
OSLO_NOON = datetime.fromisoformat("2026-01-05T12:00:00+01:00")

# The fields of a `takstkoder` row as Helfo's documentation lists them (seed 004).
SEED_TAKST_FIELDS = {
    "takst_id",
    "takstkode",
    "fagomraade",
    "fradato",
    "tildato",
    "honorar",
    "refusjon",
    "egenandel",
    "pasient_egenbetaling",
    "maks_repetisjoner",
    "repetisjonsprosent",
    "redusert_ref_fra_repetisjon",
    "redusert_repetisjonsprosent",
    "spesialisttakst",
    "ugyldig_kombinasjon",
    "krever_takst",
    "krever_prosedyre",
    "krever_diagnose",
    "maks_antall_per_aar",
    "maks_antall_per_kalender_aar",
    "maks_antall_gjelder_pasient",
    "minimum_tidsbruk",
    "beskrivelse",
    "resource_id",
    "tidsbruk_per_rep",
}


@pytest.fixture(scope="module")
def keys():
    return generate_keys()


@pytest.fixture(scope="module")
def sandbox(keys, tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("sandbox")
    with start_sandbox(keys=keys, state_dir=state, config=SANDBOX_TAKSTER) as running:
        yield running


@pytest.fixture
def opne_data(sandbox) -> str:
    return sandbox.info["opne_data_url"]


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BKM_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def invoke(app: typer.Typer, *args: str | Path, **env: str) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


def get(url: str, **params: str) -> httpx.Response:
    return httpx.get(url, params=params, headers={"Accept": "application/json"}, timeout=10)


# --------------------------------------------------------------------------- the endpoints


def test_the_sandbox_says_where_its_open_data_is(sandbox) -> None:
    assert sandbox.info["opne_data_url"] == sandbox.base_url + "/opne-data/v1"
    written = json.loads((sandbox.info_path).read_text(encoding="utf-8"))
    assert written["opne_data_url"] == sandbox.info["opne_data_url"]


def test_takstkoder_rows_have_exactly_the_documented_fields(opne_data: str) -> None:
    rows = get(f"{opne_data}/takstkoder").json()
    assert rows and all(set(row) == SEED_TAKST_FIELDS for row in rows)
    # A TOML date and an empty tildato in the sandbox config are served as the API does.
    k1 = next(r for r in rows if r["takstkode"] == "K1")
    assert (k1["fradato"], k1["tildato"]) == ("2020-01-01", None)


def test_takstkoder_filters(opne_data: str) -> None:
    def codes(**params: str) -> list[tuple[str, str]]:
        return sorted(
            (r["takstkode"], r["fradato"]) for r in get(f"{opne_data}/takstkoder", **params).json()
        )

    assert codes(takstkode="2ad") == [("2ad", "2024-07-01"), ("2ad", "2025-07-01")]
    assert codes(takstkode="2ad", gyldigdato="2025-01-15") == [("2ad", "2024-07-01")]
    # %25 on the wire is the API's wildcard.
    assert [c for c, _ in codes(takstkode="1b%", gyldigdato="2026-01-06")] == ["1bd", "1be", "1bk"]
    assert [c for c, _ in codes(beskrivelse="%legevakt%")] == ["1bk", "2ak"]
    assert codes(fagomraade="TH") == [("3ad", "2008-01-01")]
    assert codes(fagomraade="FY") == [("A1a", "2020-01-01")]
    wire = httpx.Request("GET", f"{opne_data}/takstkoder", params={"takstkode": "%sykmelding%"})
    assert "takstkode=%25sykmelding%25" in str(wire.url)


def test_bad_requests_are_refused_clearly(opne_data: str) -> None:
    bad = get(f"{opne_data}/takstkoder", gyldigdato="06.01.2026")
    assert bad.status_code == 400 and "yyyy-MM-dd" in bad.json()["error_description"]
    assert get(f"{opne_data}/nlkkoder", samhandlertype="XX").status_code == 400
    xml = httpx.get(f"{opne_data}/fagomraader", headers={"Accept": "application/xml"}, timeout=10)
    assert xml.status_code == 406


def test_the_client_reads_every_table_with_exact_amounts(opne_data: str) -> None:
    with OpenDataClient(opne_data) as client:
        takster = client.takstkoder(takstkode="2ad", gyldigdato=date(2026, 1, 6))
        assert [(t.takstkode, t.refusjon, t.egenandel) for t in takster] == [
            ("2ad", Decimal(15), Decimal(192))
        ]
        nlk = client.nlkkoder(nlkkode="NOR05172")
        assert [n.nlkKode for n in nlk] == ["NOR05172"]
        assert nlk[0].refusjonskategorisats[0].refusjonssats == Decimal("10.03")
        satser = client.refusjonskategorisatser(gyldigdato=date(2026, 1, 6), samhandlertype="LR")
        assert {s.refusjonskategori for s in satser} == {"A1", "A2"}
        fag = {f.kode: f.beskrivelse for f in client.fagomraader()}
        assert fag["LE"] == "Lege" and fag["TH"] == "Tannhelse" and len(fag) == 23


def test_the_client_sends_json_accept_and_reports_errors() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/nlkkoder"):
            return httpx.Response(503, text="vedlikehold")
        if request.url.path.endswith("/fagomraader"):
            return httpx.Response(200, text="<fagomraader/>")
        return httpx.Response(200, json=[{"takstkode": "2ad", "refusjon": 15.5}])

    with OpenDataClient(HELFO_OPNE_DATA_URL, transport=httpx.MockTransport(handler)) as client:
        assert client.takstkoder(fagomraade="LE")[0].refusjon == Decimal("15.5")
        with pytest.raises(OpenDataError, match="503"):
            client.nlkkoder()
        with pytest.raises(OpenDataError, match="not JSON"):
            client.fagomraader()
    assert seen[0].headers["accept"] == "application/json"
    assert str(seen[0].url) == HELFO_OPNE_DATA_URL + "/takstkoder?fagomraade=LE"


# --------------------------------------------------------------------------- the cache


def test_sync_stores_the_tables_with_the_time_they_were_fetched(opne_data: str, tmp_path: Path):
    path = cache_file(tmp_path, "sandbox")
    with OpenDataClient(opne_data) as client:
        report = sync(client, path, now=OSLO_NOON)
    assert report.takstkoder == {"FY": 1, "LE": 19, "TH": 1}
    assert (report.nlkkoder, report.refusjonskategorisatser, report.fagomraader) == (3, 2, 23)
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["takstkoder"]["LE"]["fetched_at"] == "2026-01-05T12:00:00+01:00"
    assert stored["takstkoder"]["LE"]["url"] == opne_data
    table = load_table(path)
    assert not table.snapshot
    assert table.fetched_at("LE") == OSLO_NOON
    assert [r.refusjon for r in table.rows("1bd", "LE")] == [Decimal(71), Decimal(74)]
    two_days_later = datetime.fromisoformat("2026-01-07T13:00:00+01:00")
    assert table.describe(two_days_later) == (
        f"takst table: synced 2026-01-05 12:00 from {opne_data} (FY, LE, TH; 2 days old)"
    )


def test_sync_of_one_fagomraade_keeps_the_others(opne_data: str, tmp_path: Path) -> None:
    path = cache_file(tmp_path, "sandbox")
    later = datetime.fromisoformat("2026-01-06T08:00:00+01:00")
    with OpenDataClient(opne_data) as client:
        sync(client, path, fagomraader=["LE"], now=OSLO_NOON)
        report = sync(client, path, fagomraader=["TH"], now=later)
    assert report.takstkoder == {"TH": 1}
    table = load_table(path)
    assert table.fagomraader == ["LE", "TH"]
    assert table.fetched_at("LE") == OSLO_NOON and table.fetched_at("TH") == later


def test_a_failed_sync_leaves_the_cache_as_it_was(opne_data: str, tmp_path: Path) -> None:
    path = cache_file(tmp_path, "sandbox")
    with OpenDataClient(opne_data) as client:
        sync(client, path, now=OSLO_NOON)
    before = path.read_bytes()
    later = datetime.fromisoformat("2026-01-06T08:00:00+01:00")
    with (
        OpenDataClient("http://127.0.0.1:9/opne-data/v1", timeout=2) as down,
        pytest.raises(OpenDataError, match="cannot reach"),
    ):
        sync(down, path, now=later)
    assert path.read_bytes() == before


def test_without_a_synced_cache_the_shipped_snapshot_is_used(tmp_path: Path) -> None:
    table = load_table(cache_file(tmp_path, "prod"))
    assert table.snapshot and table.path is None
    assert "bundled snapshot" in table.describe(OSLO_NOON)
    assert "takster sync" in table.describe(OSLO_NOON)


def test_the_snapshot_is_the_sandboxs_bundled_table(keys, tmp_path: Path) -> None:
    """The shipped snapshot and the sandbox's table must not drift apart: regenerate the
    snapshot with `takster sync` against a plain sandbox (docs/precheck.md) when one changes."""
    with start_sandbox(keys=keys) as plain, OpenDataClient(plain.info["opne_data_url"]) as c:
        sync(c, tmp_path / "fresh.json", now=OSLO_NOON)
    fresh = json.loads((tmp_path / "fresh.json").read_text(encoding="utf-8"))
    snapshot = load_snapshot()
    for fag in ("LE", "TH"):
        assert [r.model_dump() for r in _all_rows(snapshot, fag)] == [
            r.model_dump() for r in _all_rows(load_table(tmp_path / "fresh.json"), fag)
        ]
    assert sorted(fresh["takstkoder"]) == snapshot.fagomraader


def _all_rows(table, fag: str) -> list[Any]:
    return sorted(table.search("%", fagomraade=fag), key=lambda r: (r.takstkode, r.fradato))


def test_a_damaged_cache_is_reported_not_silently_replaced(tmp_path: Path, app) -> None:
    path = cache_file(tmp_path / "opendata", "sandbox")
    path.parent.mkdir(parents=True)
    path.write_text("{ not json", encoding="utf-8")
    result = invoke(app, "takster", "status", BKM_BRIDGE_PRECHECK__CACHE_DIR=str(path.parent))
    assert result.exit_code == 1
    assert "cannot be used" in result.stderr and "takster sync" in result.stderr


# --------------------------------------------------------------------------- the commands


def test_takster_sync_status_and_search_against_a_standalone_sandbox(
    sandbox, app, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    env = {"BKM_BRIDGE_PRECHECK__CACHE_DIR": str(cache)}
    state = ["--sandbox-state-dir", sandbox.info_path.parent]
    synced = invoke(app, "takster", "sync", "--fagomraade", "le,th", *state, **env)
    assert synced.exit_code == 0, synced.stderr
    assert "SANDBOX (standalone" in synced.stderr
    assert f"into {cache / 'takster-sandbox.json'}" in synced.stdout
    assert "takstkoder (LE 19, TH 1)" in synced.stdout

    status = invoke(app, "takster", "status", "--json", **env)
    tables = {t["tabell"]: t["rader"] for t in json.loads(status.stdout)["tabeller"]}
    assert tables == {
        "takstkoder LE": 19,
        "takstkoder TH": 1,
        "nlkkoder": 3,
        "refusjonskategorisatser": 2,
        "fagomraader": 23,
    }

    found = invoke(app, "takster", "search", "sykmelding", "--json", *state, **env)
    assert found.exit_code == 0, found.stderr
    assert [r["takstkode"] for r in json.loads(found.stdout)] == ["L1"]
    by_code = invoke(app, "takster", "search", "2a*", "--dato", "2026-01-06", "--json", *state)
    assert [r["takstkode"] for r in json.loads(by_code.stdout)] == ["2ad", "2ae", "2ak"]


def test_takster_search_works_offline_from_the_cache(sandbox, app, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"BKM_BRIDGE_PRECHECK__CACHE_DIR": str(cache)}
    synced = invoke(app, "takster", "sync", "--sandbox-state-dir", sandbox.info_path.parent, **env)
    assert synced.exit_code == 0, synced.stderr
    # The open data API is unreachable: the search answers from the cache and says how old it is.
    offline = invoke(
        app,
        "takster",
        "search",
        "%konsultasjon%",
        "--dato",
        "2026-01-06",
        "--url",
        "http://127.0.0.1:9/opne-data/v1",
        "--json",
        **env,
    )
    assert offline.exit_code == 0, offline.stderr
    assert "cannot reach" in offline.stderr and "local cache" in offline.stderr
    assert "takst table: synced" in offline.stderr and "old" in offline.stderr
    # K1 is the test config's "Tillegg som krever konsultasjon".
    assert [r["takstkode"] for r in json.loads(offline.stdout)] == [
        "2ad",
        "2ae",
        "2ak",
        "2cd",
        "K1",
    ]
    nothing = invoke(app, "takster", "search", "zz9", "--offline", **env)
    assert nothing.exit_code == 1


def test_takster_sync_failure_exits_1_and_says_the_cache_is_unchanged(app, tmp_path) -> None:
    result = invoke(
        app,
        "takster",
        "sync",
        "--url",
        "http://127.0.0.1:9/opne-data/v1",
        BKM_BRIDGE_PRECHECK__CACHE_DIR=str(tmp_path / "cache"),
    )
    assert result.exit_code == 1
    assert "the cache is unchanged" in result.stderr
    assert not (tmp_path / "cache").exists()


def test_precheck_uses_the_standalone_sandboxs_clock(sandbox, app, tmp_path: Path) -> None:
    """The module's sandbox runs on its default clock, the seed's moment (2026-01-06 15:30):
    regning 6 of the seed claim (06.02.2026) is in the future there, whatever today is."""
    env = {"BKM_BRIDGE_PRECHECK__CACHE_DIR": str(tmp_path / "cache")}
    state = ["--sandbox-state-dir", sandbox.info_path.parent]
    invoke(app, "takster", "sync", *state, **env)
    seed = FIXTURES / "seed-arbeidsflyt.xml"
    result = invoke(app, "precheck", seed, "--praksis-type", "FALE", *state, **env)
    assert result.exit_code == 0  # findings in warn mode (README, "Exit codes")
    assert "after the moment it is checked (06.01.2026 15:3" in result.stdout
    assert (
        "REGNING_IN_FUTURE" in result.stdout and "ENKEL_KONTAKT_NEAR_KONSULTASJON" in result.stdout
    )
