"""Where the tests' own files are (the checkout, or CI's unpacked sdist)."""

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures"
