"""The overview is read entry by entry: one malformed entry (the docs' own example has
`"2026-01-0615:30:29+01:00"`) is left out and logged by position, never by content, and the
others are kept. KUHR's answer is served through httpx's transport swap (the sandbox never
writes a malformed entry)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from support.kuhr import FIXTURES, seed_melding

from bridge.core.model import dump_json
from bridge.core.outcomes import State
from bridge.flow.journal import Journal
from bridge.flow.reconcile import Reconciler
from bridge.kuhr.client import AsyncKuhrClient, KuhrResponseError

DOCS_OVERVIEW = json.loads((FIXTURES / "overview-docs-example.json").read_text(encoding="utf-8"))


class StaticTokens:
    async def auth_headers(self, method: str, url: str) -> dict[str, str]:
        return {"Authorization": "Bearer test-token"}

    def invalidate(self, token: str | None = None) -> None:
        pass


def overview_of(body: Any) -> tuple[list[str], int]:
    """The ids the client reads from KUHR answering `body`, and its count of skipped entries."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/data/behandlerkravmelding")
        return httpx.Response(200, json=body)

    async def main() -> tuple[list[str], int]:
        transport = httpx.MockTransport(handler)
        async with AsyncKuhrClient("http://kuhr.test", StaticTokens(), transport=transport) as c:
            liste = await c.hent_status()
            return [m.behandlerkravmeldingId for m in liste.behandlerkravmeldinger], (
                c.counters.unreadable_entries
            )

    return asyncio.run(main())


def test_the_docs_example_keeps_its_good_entry_and_logs_the_bad_one(caplog) -> None:
    caplog.set_level(logging.WARNING)
    ids, skipped = overview_of(DOCS_OVERVIEW)
    assert ids == ["f00ddf25-f4f1-49b7-acd7-88cf4cbf9c71"]
    assert skipped == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "entry 2 of 2" in logged and "mottattidspunkt" in logged
    # Its position and the field's name, never its content.
    assert "2026-01-0615:30:29" not in logged
    assert "5138fbfe" not in logged and "100001812531977" not in logged


def test_entries_of_every_kind_of_fault_are_skipped_alone() -> None:
    good = DOCS_OVERVIEW["behandlerkravmeldinger"][0]
    body = {
        "behandlerkravmeldinger": [
            {**good, "behandlerkravmeldingId": "a"},
            {"meldingsstatus": "mottatt"},  # no id
            "not an object",
            {**good, "behandlerkravmeldingId": "b", "sumKravbelop": "mye"},
            {**good, "behandlerkravmeldingId": "c", "nyttFelt": 1},  # a new field is fine
        ]
    }
    assert overview_of(body) == (["a", "c"], 3)


def test_an_empty_overview_is_empty() -> None:
    assert overview_of({"behandlerkravmeldinger": []}) == ([], 0)
    assert overview_of({}) == ([], 0)


@pytest.mark.parametrize("body", [[], {"behandlerkravmeldinger": "x"}, {"annet": []}])
def test_an_answer_that_is_no_list_of_entries_is_an_error(body: Any) -> None:
    with pytest.raises(KuhrResponseError, match="list of meldinger"):
        overview_of(body)


def test_details_put_the_original_first_by_the_rebehandling_flag() -> None:
    """KUHR may list a rebehandling before the original: the flag decides, not the order."""
    base = DOCS_OVERVIEW["behandlerkravmeldinger"][0]
    rows = [
        {**base, "innsendingId": "3", "rebehandling": True},
        {**base, "innsendingId": "1", "rebehandling": False},
        {**base, "innsendingId": "4", "rebehandling": True},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"behandlerkravmeldinger": rows})

    async def main() -> list[str | None]:
        transport = httpx.MockTransport(handler)
        async with AsyncKuhrClient("http://kuhr.test", StaticTokens(), transport=transport) as c:
            details = await c.hent_behandlerkravmelding(base["behandlerkravmeldingId"])
            return [m.innsendingId for m in details.behandlerkravmeldinger]

    assert asyncio.run(main()) == ["1", "3", "4"]


def test_a_claim_kuhr_has_is_found_although_another_overview_entry_is_malformed(
    tmp_path,
) -> None:
    """DUPLIKAT_KRAV matching and recovery after a lost journal read the overview: one bad
    entry there no longer hides the claim that is."""
    melding = seed_melding()
    guids = [r.guid for r in melding.behandlerkrav.regninger]
    ours = {
        **DOCS_OVERVIEW["behandlerkravmeldinger"][0],
        "behandlerkravmeldingId": "ours",
        "sumKravbelop": 434,
        "antallRegninger": 3,
    }
    overview = {"behandlerkravmeldinger": [DOCS_OVERVIEW["behandlerkravmeldinger"][1], ours]}
    results = [{"status": "behandles", "guid": g} for g in guids]
    details = {"behandlerkravmeldinger": [{**ours, "innsending": {"regninger": results}}]}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/data/behandlerkravmelding"):
            return httpx.Response(200, json=overview)
        assert request.url.path.endswith("/data/behandlerkravmelding/ours")
        return httpx.Response(200, json=details)

    journal = Journal(tmp_path / "journal.db")
    version, _ = journal.record_seen("/inbox/krav.xml", "ab" * 32, 10)
    version = journal.transition(
        version.id, State.SUBMITTING, detail={"claim": dump_json(melding, indent=None)}
    )

    async def main() -> str | None:
        transport = httpx.MockTransport(handler)
        async with AsyncKuhrClient("http://kuhr.test", StaticTokens(), transport=transport) as c:
            reconciler = Reconciler(journal, c, environment="sandbox", clock=lambda: 0.0)
            return await reconciler.find(version, melding)

    try:
        assert asyncio.run(main()) == "ours"
    finally:
        journal.close()
