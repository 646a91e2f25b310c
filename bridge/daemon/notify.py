"""Notifications to the operator (`[notify]`): an e-mail over SMTP and/or a JSON webhook when a
claim is rejected (locally, by KUHR's technical control, or regninger avvist in KUHR's
control) or when the bridge turns unhealthy (and when it is healthy again).

A message names files, states, codes and counts only: never a fødselsnummer, a name, a
diagnosis or a problem's sentence (which may quote the file); every text still passes
`redact_text`. The notifier is a thread of its own that reads the journal's events since its
last look and the health checks every `check_seconds`, so a slow mail server never holds up
the pipeline; a message that cannot be sent is logged and dropped (the journal and the status
page still say everything).
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bridge import __version__
from bridge.config import NotifySettings, Settings
from bridge.core.outcomes import State, status_of
from bridge.flow.journal import Version
from bridge.flow.reasons import avviste_merknader, regninger_of, rejected_regninger
from bridge.kuhr.proxy import sync_transport
from bridge.runtime.redaction import redact_text

if TYPE_CHECKING:  # FastAPI and uvicorn load only when the health checks are asked for
    from bridge.daemon.health import HealthService, HealthSource

log = logging.getLogger("bridge.notify")

# Journal events that may mean a rejection (a controlled claim only when regninger were avvist).
WATCHED_STATES = (State.REJECTED, State.FEIL_I_MELDING, State.CONTROLLED)
MAX_FILES_PER_MESSAGE = 50


@dataclass
class Notice:
    """One message: a subject, text lines for the e-mail, and the webhook's JSON."""

    event: str  # rejected | unhealthy | healthy
    subject: str
    lines: list[str]
    payload: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        return "\n".join(redact_text(line) for line in self.lines) + "\n"

    def json(self) -> dict[str, Any]:
        return json.loads(redact_text(json.dumps(self.payload, ensure_ascii=False)))


# --------------------------------------------------------------------------- the messages


def rejected_entry(version: Version) -> dict[str, Any] | None:
    """What a notification says of one version, or None when nothing was rejected."""
    entry: dict[str, Any] = {
        "fil": Path(version.path).name,
        "tilstand": version.state.value,
        "status": status_of(version.state).value,
    }
    if version.state is State.REJECTED:
        entry["koder"] = version.detail.error_codes()
    elif version.state is State.FEIL_I_MELDING:
        feil = (version.detail.submit or {}).get("feilmeldinger") or []
        entry["koder"] = sorted({str(f.get("kode", "")) for f in feil if f.get("kode")})
    else:
        avvist = rejected_regninger(version)
        if not avvist:
            return None
        entry["status"] = "avvist" if avvist == len(regninger_of(version)) else "delvis_godkjent"
        entry["koder"] = avviste_merknader(version)
        entry["avviste_regninger"] = avvist
    if version.behandlerkravmelding_id:
        entry["behandlerkravmeldingId"] = version.behandlerkravmelding_id
    return entry


def rejected_notice(environment: str, entries: Sequence[dict[str, Any]]) -> Notice:
    shown = list(entries[:MAX_FILES_PER_MESSAGE])
    lines = [f"bkm-bridge ({environment}): {len(entries)} file(s) with rejected claims.", ""]
    for e in shown:
        codes = ", ".join(e.get("koder") or []) or "-"
        what = f"{e['status']}, codes {codes}"
        if "avviste_regninger" in e:
            what += f", {e['avviste_regninger']} regning(er) avvist"
        lines.append(f"- {e['fil']}: {what}")
    if len(entries) > len(shown):
        lines.append(f"- … and {len(entries) - len(shown)} more")
    lines += ["", "Each file's receipt says what to do; the status page shows its history."]
    return Notice(
        "rejected",
        f"bkm-bridge ({environment}): {len(entries)} file(s) rejected",
        lines,
        {
            "event": "rejected",
            "environment": environment,
            "version": __version__,
            "antall": len(entries),
            "filer": shown,
        },
    )


def health_notice(environment: str, healthy: bool, body: dict[str, Any]) -> Notice:
    failed = list(body.get("failed") or [])
    checks = body.get("checks") or {}
    errors = {name: str(checks.get(name, {}).get("error") or "") for name in failed}
    if healthy:
        subject = f"bkm-bridge ({environment}): healthy again"
        lines = [f"bkm-bridge ({environment}): every health check passes again."]
    else:
        subject = f"bkm-bridge ({environment}): UNHEALTHY ({', '.join(failed)})"
        lines = [f"bkm-bridge ({environment}) is unhealthy. Failing checks:", ""]
        lines += [f"- {name}: {error}" for name, error in errors.items()]
        lines += ["", "See /healthz and the log for details."]
    return Notice(
        "healthy" if healthy else "unhealthy",
        subject,
        lines,
        {
            "event": "healthy" if healthy else "unhealthy",
            "environment": environment,
            "version": __version__,
            "failed": failed,
            "errors": errors,
        },
    )


# --------------------------------------------------------------------------- sending


def send_mail(settings: NotifySettings, notice: Notice) -> None:
    message = EmailMessage()
    message["Subject"] = redact_text(notice.subject)
    message["From"] = settings.mail_from
    message["To"] = ", ".join(settings.mail_to)
    message.set_content(notice.text())
    host, port, timeout = settings.smtp_host or "", settings.smtp_port, settings.timeout_seconds
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.smtp_security == "tls":
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    with smtp:
        if settings.smtp_security == "starttls":
            smtp.starttls(context=context)
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_user, password)
        smtp.send_message(message)


def post_webhook(settings: NotifySettings, proxy: str | None, notice: Notice) -> None:
    assert settings.webhook_url is not None
    with httpx.Client(
        transport=sync_transport(proxy),
        timeout=settings.timeout_seconds,
        follow_redirects=False,
        headers={"User-Agent": f"bkm-bridge/{__version__}"},
    ) as client:
        response = client.post(settings.webhook_url, json=notice.json())
        response.raise_for_status()


def deliver(settings: Settings, notice: Notice) -> list[str]:
    """Send the notice every configured way; returns the ways that failed (logged)."""
    notify = settings.notify
    failed = []
    if notify.smtp_host and notify.mail_to:
        try:
            send_mail(notify, notice)
        except (OSError, smtplib.SMTPException) as exc:
            failed.append("smtp")
            log.warning("notification e-mail not sent: %s", _why(exc))
    if notify.webhook_url:
        try:
            post_webhook(notify, settings.kuhr.proxy, notice)
        except httpx.HTTPError as exc:
            failed.append("webhook")
            log.warning("notification webhook not delivered: %s", _why(exc))
    return failed


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:300]


# --------------------------------------------------------------------------- the notifier


class Notifier:
    """The thread that watches the journal and the health checks and sends the notices."""

    def __init__(self, source: HealthSource, health: HealthService | None = None) -> None:
        self.source = source
        self.settings = source.settings
        self.health = health  # a HealthService, when "unhealthy" is among the events
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._after = source.journal.last_event_rowid() if source.journal else 0
        self._healthy = True
        self.sent: list[Notice] = []  # what was sent, for the log and for tests

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="bkm-bridge-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()  # one loop for the life of the health checks' client
        try:
            while not self._stop.wait(self.settings.notify.check_seconds):
                try:
                    self.check(loop)
                except Exception as exc:  # a notifier must never take the bridge down
                    log.warning("notifications: %s", _why(exc))
        finally:
            if self.health is not None:
                loop.run_until_complete(self.health.aclose())
            loop.close()
            if self.source.journal is not None:
                self.source.journal.close()  # this thread's connection

    def check(self, loop: asyncio.AbstractEventLoop) -> None:
        events = self.settings.notify.events
        journal = self.source.journal
        if "rejected" in events and journal is not None:
            entries = []
            for rowid, version, _event in journal.events_since(self._after, WATCHED_STATES):
                self._after = rowid
                entry = rejected_entry(version)
                if entry is not None:
                    entries.append(entry)
            if entries:
                self._send(rejected_notice(self.source.environment, entries))
        if "unhealthy" in events and self.health is not None:
            healthy, body = loop.run_until_complete(self.health.healthz())
            if healthy != self._healthy:
                self._healthy = healthy
                self._send(health_notice(self.source.environment, healthy, body))

    def _send(self, notice: Notice) -> None:
        failed = deliver(self.settings, notice)
        self.sent.append(notice)
        log.info("notification sent: %s%s", notice.event, f" (failed: {failed})" if failed else "")


def start_notifier(source: HealthSource) -> Notifier:
    health = None
    if "unhealthy" in source.settings.notify.events:
        from bridge.daemon.health import HealthService

        health = HealthService(source)
    notifier = Notifier(source, health)
    notifier.start()
    how = [w for w, on in (("e-mail", source.settings.notify.mail_to),
                           ("webhook", source.settings.notify.webhook_url)) if on]  # fmt: skip
    log.info(
        "notifications by %s on %s", " and ".join(how), ", ".join(notifier.settings.notify.events)
    )
    return notifier
