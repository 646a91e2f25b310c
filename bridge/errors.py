"""The bridge's exceptions: every error it raises on purpose is a `BridgeError`. The CLI maps
the tree to exit codes in one place (bridge.cli.exits); the daemon logs them by name.

    BridgeError
    ├── UsageError                  what was asked cannot be done as asked (exit 2)
    │   ├── ConfigError             bridge.config: a settings file or value is wrong
    │   ├── InstallationError       bridge.paths: the shipped schemas or mapping tables are missing
    │   └── MigrationError          bridge.migrate.options: a migration cannot start
    ├── SchemaLoadError             bridge.core.legacy.schemas: an installed XSD cannot be used
    ├── MappingTableError           bridge.core.mapping: a mapping table is broken
    ├── ReadError                   bridge.core.legacy.read: (internal) becomes a Problem
    ├── ValueProblem                bridge.core.mapping: (internal) a value becomes a Problem
    ├── PraksisResolutionError      bridge.core.praksis: no single praksis fits a claim
    ├── CacheError                  bridge.core.takster: the takst table cannot be used
    ├── KuhrError                   bridge.kuhr.client: talking to KUHR failed
    │   ├── KuhrUnavailable         not reachable, or kept failing
    │   ├── KuhrAuthError           the token was refused
    │   └── KuhrResponseError       an answer the API does not document
    ├── TokenError                  bridge.kuhr.auth: no token from Maskinporten or HelseID
    ├── JwksError                   bridge.kuhr.jwe: KUHR's encryption key is not usable
    ├── OpenDataError               bridge.kuhr.opendata: Helfo's open data API failed
    ├── TooLargeError               bridge.files.reading: a file over the size limit (an OSError)
    ├── AppRecInvalidError          bridge.files.receipts: a bug: the AppRec does not validate
    ├── ReceiptPathBlockedError     bridge.files.receipts: a folder is where a receipt goes
    ├── JournalError                bridge.flow.journal: the journal refused a change
    │   └── JournalLockedError      bridge.migrate.tally: another run holds the journal
    ├── FolderLockedError           bridge.daemon.watcher: another bridge watches the folder
    ├── HealthStartError            bridge.daemon.health: the status page cannot listen
    └── ServiceCommandError         bridge.daemon.winservice: a Windows service request failed

The sandbox (bridge.sandbox) stands apart from the bridge and keeps its own exceptions.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error bkm-bridge raises on purpose."""


class UsageError(BridgeError):
    """What was asked cannot be done as asked: the settings, the installation or the
    arguments need fixing (the CLI exits 2)."""
