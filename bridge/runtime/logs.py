"""Logging for the daemon, the Windows service and the CLI: one setup, redaction built in.

`setup_logging()` puts handlers on the root logger: human-readable lines on stderr by default,
JSON lines with `fmt="json"`, and a size-rotated file with `file=`. Every handler it installs
(and every handler already on the root logger) gets a `RedactionFilter`, and its formatter
scrubs the finished text once more, so a forgotten `log.info("%s", claim)` cannot leak a
fødselsnummer, a patient's name, a diagnosis, a token or a key (see bridge.runtime.redaction).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TextIO

from bridge.runtime.redaction import redact_line, redact_string, redact_text, redact_value

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5
_OURS = "_bkm_bridge_handler"
_DONE = "_bkm_redacted"
# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    _DONE,
}
_NOISY = ("httpx", "httpcore", "watchdog", "uvicorn.access", "asyncio")


class RedactionFilter(logging.Filter):
    """Formats the message from redacted arguments and freezes it on the record; redacts the
    traceback, the stack and every `extra` value. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _DONE, False):
            return True
        record.msg = redact_text(_message(record))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        names = extras(record)
        if names:  # as one mapping, so a patient or secret *key* blanks its value
            redacted = redact_value({key: getattr(record, key) for key in names})
            for key in names:
                setattr(record, key, redacted[key])
        setattr(record, _DONE, True)
        return True


def _message(record: logging.LogRecord) -> str:
    msg = record.msg if isinstance(record.msg, str) else _render(record.msg)
    args = record.args
    if not args:
        return msg
    if isinstance(args, Mapping):
        safe: Any = {key: _argument(value) for key, value in args.items()}
    else:
        safe = tuple(_argument(value) for value in args)
    try:
        return msg % safe
    except (TypeError, ValueError, KeyError):
        return f"{msg} {safe!r}"


def _argument(value: Any) -> Any:
    """Numbers stay numbers (for %d); everything else becomes redacted text."""
    if value is None or isinstance(value, bool | int | float | Decimal):
        return value
    if isinstance(value, str):
        return redact_string(value)
    return _render(value)


def _render(value: Any) -> str:
    redacted = redact_value(value)
    if isinstance(redacted, str):
        return redacted
    return json.dumps(redacted, ensure_ascii=False, default=str)


def extras(record: logging.LogRecord) -> list[str]:
    return [key for key in vars(record) if key not in _STANDARD and not key.startswith("_")]


class TextFormatter(logging.Formatter):
    """`time level logger: message`, scrubbed as a whole."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        # A record the RedactionFilter passed holds only redacted text; the rest of the line
        # is time, level and logger name. Any other record is scrubbed here as a whole.
        return text if getattr(record, _DONE, False) else redact_text(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, exception, and `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created)
            .astimezone()
            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = redact_text(record.exc_text)
        if record.stack_info:
            data["stack"] = redact_text(record.stack_info)
        for key in extras(record):
            data.setdefault(key, redact_value(getattr(record, key)))
        return redact_line(json.dumps(data, ensure_ascii=False, default=str))


def make_formatter(fmt: LogFormat) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"log format must be text or json, not {fmt!r}")


def setup_logging(
    level: str | int = "INFO",
    *,
    fmt: LogFormat = "text",
    file: Path | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    backups: int = DEFAULT_BACKUPS,
    stream: TextIO | None = sys.stderr,
) -> list[logging.Handler]:
    """(Re)configure the root logger; returns the handlers installed. Calling it again
    replaces the handlers an earlier call installed. `stream=None`: no console (a service)."""
    reset_logging()
    formatter = make_formatter(fmt)
    handlers: list[logging.Handler] = []
    if stream is not None:
        handlers.append(logging.StreamHandler(stream))
    if file is not None:
        file = Path(file)
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
            )
        )
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _OURS, True)
        root.addHandler(handler)
    protect_handlers()
    _set_level(level)
    return handlers


def _set_level(level: str | int) -> None:
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    logging.getLogger().setLevel(numeric)
    for name in _NOISY:  # their INFO lines are per request; DEBUG shows them again
        quiet = numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
        logging.getLogger(name).setLevel(quiet)


def log_to_queue(queue: Any, level: int) -> None:
    """A helper process's logging: each record is redacted here, where the patient values
    this process has seen are known, and put on `queue` for `forwarded_logs` in the parent."""
    reset_logging()
    handler = logging.handlers.QueueHandler(queue)
    handler.addFilter(RedactionFilter())
    setattr(handler, _OURS, True)
    logging.getLogger().addHandler(handler)
    _set_level(level)


@contextmanager
def forwarded_logs(queue: Any) -> Iterator[None]:
    """Hand the records helper processes put on `queue` (`log_to_queue`) to this process's
    own loggers and handlers, until the block ends."""

    def forward() -> None:
        while (record := queue.get()) is not None:
            logging.getLogger(record.name).handle(record)

    thread = threading.Thread(target=forward, name="log-forward", daemon=True)
    thread.start()
    try:
        yield
    finally:
        queue.put(None)
        thread.join(5.0)


def protect_handlers() -> None:
    """Put a RedactionFilter on every handler of the root logger (and on the last resort)."""
    targets = list(logging.getLogger().handlers)
    if logging.lastResort is not None:
        targets.append(logging.lastResort)
    for handler in targets:
        if not any(isinstance(f, RedactionFilter) for f in handler.filters):
            handler.addFilter(RedactionFilter())


def reset_logging() -> None:
    """Remove (and close) the handlers `setup_logging` installed."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
            handler.close()


def setup_from_settings(settings: Any, *, stream: TextIO | None = sys.stderr) -> None:
    """`setup_logging` from a `[logging]` section (bridge.config.LoggingSettings)."""
    setup_logging(
        settings.level,
        fmt=settings.format,
        file=settings.log_file,
        max_bytes=settings.max_bytes,
        backups=settings.backups,
        stream=stream,
    )
