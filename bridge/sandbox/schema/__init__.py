"""The sandbox's own statement of the JSON BKM: `behandlerkravmelding.schema.json` (JSON Schema
draft 2020-12), written from the KUHR Krav API documentation, never from the bridge's model.
Shipped as package data and read through importlib.resources, so it works from a wheel or zip.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_FILE = "behandlerkravmelding.schema.json"


@cache
def behandlerkravmelding_schema() -> dict[str, Any]:
    """The schema as data (read once; treat it as read-only)."""
    text = resources.files(__name__).joinpath(SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)
