"""Fixtures for the tests of what users install (tests/support/dist.py builds it)."""

from __future__ import annotations

import pytest
from support.dist import Dist, dist_under_test


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    return dist_under_test(tmp_path_factory.mktemp("dist"))
