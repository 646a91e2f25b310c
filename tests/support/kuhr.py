"""Helpers shared by the KUHR tests (a uniquely named module, so no `conftest` import clash)."""

from __future__ import annotations

import uuid

from bridge.core.model import Behandlerkravmelding, load_json
from bridge.kuhr.client import RetryPolicy
from support import paths

FIXTURES = paths.FIXTURES / "kuhr"
# Fast retries for tests: the behaviour is the same, the waits are milliseconds.
FAST_RETRY = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05, max_retry_after=2.0)


def seed_melding(fresh_guids: bool = False) -> Behandlerkravmelding:
    """The seed's workflow claim (regninger 4, 5, 6). Fresh GUIDs make a distinct claim."""
    data = load_json((FIXTURES / "seed-workflow-claim.json").read_text(encoding="utf-8"))
    if fresh_guids:
        for regning in data["behandlerkrav"]["regninger"]:
            regning["guid"] = str(uuid.uuid4())
    return Behandlerkravmelding.model_validate(data)
