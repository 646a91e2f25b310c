"""The bulk run over an archive: the run (`migration`, asked by `options`), its sending
processes (`senders`), the dry run (`dry_run`), the conversion pool (`pool`), counts and the
run's journal (`tally`), the rate limit (`rate`) and the report (`report`).
"""

__all__ = [
    "dry_run",
    "migration",
    "options",
    "pool",
    "rate",
    "report",
    "senders",
    "tally",
]
