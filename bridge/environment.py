"""Which KUHR a bridge talks to (apart from the settings, so light commands import it cheaply)."""

from enum import StrEnum


class Environment(StrEnum):
    SANDBOX = "sandbox"
    DEV = "dev"
    PROD = "prod"
