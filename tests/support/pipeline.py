"""One pipeline on a test's journal against a running sandbox, and what it leaves beside a file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from bridge.config import load_settings
from bridge.flow.journal import Journal
from bridge.flow.options import PipelineOptions
from bridge.flow.pipeline import Pipeline
from bridge.kuhr.client import AsyncKuhrClient
from bridge.kuhr.target import client_options, resolve_target, token_provider_for


def run(sandbox, tmp_path: Path, body, **options: Any) -> Any:
    """Run `body(pipeline, journal)` with a fresh pipeline on the test's journal."""
    settings = load_settings(None, {"kuhr.sandbox_state_dir": tmp_path / "sandbox"})
    target = resolve_target(settings, sandbox.info)

    async def main() -> Any:
        tokens = token_provider_for(target, settings)
        async with AsyncKuhrClient(
            target.api_url, tokens, **client_options(settings, target)
        ) as kuhr:
            journal = Journal(tmp_path / "state" / "journal.db")
            fast = {"poll_first": 0.05, "poll_max": 0.2, **options}
            pipeline = Pipeline(journal, kuhr, PipelineOptions(**fast))
            try:
                return await body(pipeline, journal)
            finally:
                await pipeline.drain_inflight()
                journal.close()

    return asyncio.run(main())


async def settle(pipeline: Pipeline) -> None:
    await asyncio.wait_for(pipeline.run_until_settled(), timeout=60)


def receipt(path: Path) -> dict[str, Any]:
    return json.loads(Path(f"{path}.kvittering.json").read_text(encoding="utf-8"))
