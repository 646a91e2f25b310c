"""Logging: text by default, JSON lines by option, rotating files; and the redaction layer that
keeps fødselsnummer, patient names, diagnoses, tokens and keys out of every log line, whatever
a log call passes in.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.paths import FIXTURES

from bridge.core.convert import ConvertContext, convert
from bridge.core.model import Behandlerkravmelding
from bridge.runtime.logs import reset_logging, setup_logging
from bridge.runtime.redaction import LEARNED, redact_text

# The patient in the claim below: none of this may reach a log line.
FNR = "14057012345"
FAMILY_NAME = "Brattbakken"
GIVEN_NAME = "Synnøve"
DIAGNOSIS_TEXT = "Skulder symptomer/plager"
MERKNAD = "Pasienten ringte om smerter"
PATIENT_DATA = (FNR, FAMILY_NAME, GIVEN_NAME, DIAGNOSIS_TEXT, MERKNAD, "Synn")
# What must stay readable: praksisId, orgnr, HPR, the regning's GUID, the takst code.
READABLE = ("1004326178", "999999999", "70008786", "0b8dc559-6c2d-419b-aeef-faaf537c6117")

JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6InNhbmRib3gifQ."
    "eyJzY29wZSI6Im5hdjprdWhyL2tyYXYiLCJleHAiOjE3Njc3MDk4MDB9."
    "c2lnbmF0dXJlLXRoYXQtaXMtbm90LXJlYWw"
)
PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDQ\n"
    "-----END PRIVATE KEY-----"
)
JWK_SECRET = "qK9nPrivateExponentValue"


def patient_xml() -> bytes:
    """The all-fields claim with a named patient, a diagnosis and a free-text merknad."""
    text = (FIXTURES / "alle-felter.xml").read_text(encoding="utf-8")
    text = text.replace(
        "<FamilyName>Etternavn</FamilyName>", f"<FamilyName>{FAMILY_NAME}</FamilyName>"
    )
    text = text.replace("<GivenName>Fornavn</GivenName>", f"<GivenName>{GIVEN_NAME}</GivenName>")
    text = text.replace(
        "<DatoTid>2014-05-17T11:20:00</DatoTid>",
        f"<DatoTid>2014-05-17T11:20:00</DatoTid>\n            <Merknad>{MERKNAD}</Merknad>",
    )
    assert FAMILY_NAME in text and MERKNAD in text and FNR in text
    return text.encode("utf-8")


def patient_claim() -> Behandlerkravmelding:
    result = convert(patient_xml(), ConvertContext(praksis_id="1004326178"))
    assert result.melding is not None, result.problems
    melding = result.melding
    pasient = melding.behandlerkrav.regninger[0].pasient
    assert pasient is not None and pasient.etternavn == FAMILY_NAME
    return melding


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    LEARNED.clear()
    yield
    reset_logging()
    LEARNED.clear()


def capture(fmt: str = "text") -> io.StringIO:
    stream = io.StringIO()
    setup_logging("DEBUG", fmt=fmt, stream=stream)  # type: ignore[arg-type]
    return stream


def assert_no_patient_data(text: str) -> None:
    for secret in (*PATIENT_DATA, JWT, JWK_SECRET, "MIIEvQIBADAN"):
        assert secret not in text, f"{secret!r} leaked into: {text[:3000]}"


# --------------------------------------------------------------------------- whole claims


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_whole_claim_in_any_position_leaves_no_patient_data(fmt: str) -> None:
    stream = capture(fmt)
    log = logging.getLogger("bridge.test")
    claim = patient_claim()
    log.info("claim %s", claim)  # the pydantic model as an argument
    log.info(claim)  # as the message itself
    log.info("as dict %s and repr %r", claim.model_dump(mode="json"), claim)
    log.info("as JSON text %s", claim.model_dump_json())
    log.warning("raw file %s", patient_xml())  # the bytes the EPJ wrote
    log.warning("raw text %s", patient_xml().decode())
    log.info("in extra", extra={"claim": claim, "regning": claim.behandlerkrav.regninger[0]})
    log.info("pydantic repr: %s", str(claim.behandlerkrav.regninger[0]))
    out = stream.getvalue()
    assert out.count("\n") >= 8
    assert_no_patient_data(out)
    for readable in READABLE:
        assert readable in out, readable
    assert "3ad" in out  # the takst code is not patient data


def test_free_text_naming_a_patient_seen_in_a_claim_is_scrubbed() -> None:
    stream = capture()
    log = logging.getLogger("bridge.test")
    log.debug("converted %s", patient_claim())
    # A later, careless line that names the patient in prose:
    log.info("problem with the claim for %s %s (L09)", GIVEN_NAME, FAMILY_NAME.upper())
    out = stream.getvalue()
    assert_no_patient_data(out)
    assert FAMILY_NAME.upper() not in out
    assert "problem with the claim for [redacted] [redacted]" in out


def test_exception_messages_and_tracebacks_are_redacted() -> None:
    stream = capture()
    log = logging.getLogger("bridge.test")
    claim = patient_claim()

    def fail(melding: Behandlerkravmelding) -> None:
        raise ValueError(f"no praksis for {FNR}: {melding!r}")

    try:
        fail(claim)
    except ValueError:
        log.exception("step failed for fnr %s", FNR)
    out = stream.getvalue()
    assert "Traceback (most recent call last)" in out
    assert "ValueError: no praksis for [fnr]" in out
    assert "step failed for fnr [fnr]" in out
    assert_no_patient_data(out)


def test_json_lines_are_json_with_extra_fields_redacted() -> None:
    stream = capture("json")
    log = logging.getLogger("bridge.pipeline")
    log.info(
        "submitted %s",
        "krav.xml",
        extra={"praksisId": "1004326178", "id": int(FNR), "pasient": {"fornavn": GIVEN_NAME}},
    )
    try:
        raise RuntimeError(f"boom {FNR}")
    except RuntimeError:
        log.error("failed", exc_info=True)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["level"] for line in lines] == ["INFO", "ERROR"]
    first = lines[0]
    assert first["logger"] == "bridge.pipeline"
    assert first["message"] == "submitted krav.xml"
    assert first["praksisId"] == "1004326178"
    assert first["id"] == "[fnr]"
    assert first["pasient"] == "[redacted]"
    assert "RuntimeError: boom [fnr]" in lines[1]["exception"]
    assert_no_patient_data(stream.getvalue())


# --------------------------------------------------------------------------- tokens and keys


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_tokens_and_keys_never_reach_a_log_line(fmt: str) -> None:
    stream = capture(fmt)
    log = logging.getLogger("bridge.kuhr")
    jwk = {"kty": "RSA", "kid": "k1", "n": "AQAB-modulus", "e": "AQAB", "d": JWK_SECRET,
           "p": JWK_SECRET, "q": JWK_SECRET}  # fmt: skip
    log.info("headers %s", {"Authorization": f"Bearer {JWT}", "Accept": "application/json"})
    log.info("token answer %s", f'{{"access_token": "{JWT}", "expires_in": 120}}')
    log.info("raw header Authorization: DPoP %s", JWT)
    log.info("key %s", jwk)
    log.info("key as text %s", json.dumps(jwk))
    log.info("pem %s", PEM)
    log.info("form client_assertion=%s&grant_type=client_credentials", JWT)
    out = stream.getvalue()
    assert_no_patient_data(out)
    assert "Bearer [token]" in out
    assert "AQAB-modulus" in out  # public parts of a key are fine
    assert "[private key]" in out


def test_key_objects_the_bridge_holds_are_logged_without_their_private_parts() -> None:
    from jwcrypto import jwk

    from bridge.kuhr.auth import AccessToken, SigningKey

    key = jwk.JWK.generate(kty="RSA", size=2048, kid="bkm-bridge-test")
    private = json.loads(key.export_private())
    signing = SigningKey.from_jwk_dict(private)
    token = AccessToken(value=JWT, token_type="Bearer", expires_at=0.0, lifetime=120.0)
    stream = capture("json")
    log = logging.getLogger("bridge.kuhr.auth")
    log.info("jwk %s / %r", key, key)
    log.info("signing key %s", signing, extra={"key": signing, "token": token})
    log.info("pem %s", key.export_to_pem(private_key=True, password=None))
    log.info("token %s", token)
    out = stream.getvalue()
    for member in ("d", "p", "q", "dp", "dq", "qi"):
        assert private[member][:16] not in out, member
    assert JWT not in out and "BEGIN PRIVATE KEY" not in out
    assert "bkm-bridge-test" in out  # the kid says which key, and may be seen


# --------------------------------------------------------------------------- the layer itself


def test_handlers_installed_elsewhere_are_protected_too() -> None:
    foreign = io.StringIO()
    handler = logging.StreamHandler(foreign)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        capture()
        logging.getLogger("somebody.else").warning("fnr %s in a third-party line", FNR)
    finally:
        root.removeHandler(handler)
    assert "fnr [fnr] in a third-party line" in foreign.getvalue()
    assert FNR not in foreign.getvalue()


def test_the_text_format_scrubs_a_record_that_skipped_the_filter() -> None:
    """The line format trusts only records the RedactionFilter passed (it scrubs those once);
    a record handed to the formatter directly is scrubbed as a whole."""
    from bridge.runtime.logs import TextFormatter

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "pasient %s", (FNR,), None)
    line = TextFormatter().format(record)
    assert FNR not in line and "pasient [fnr]" in line


def test_rotating_file_keeps_a_bounded_number_of_backups(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "bkm-bridge.log"
    setup_logging("INFO", file=log_file, max_bytes=4096, backups=2, stream=None)
    log = logging.getLogger("bridge.test")
    for i in range(400):
        log.info("line %04d for fnr %s about krav-%d.xml", i, FNR, i)
    reset_logging()
    files = sorted(p.name for p in log_file.parent.iterdir())
    assert files == ["bkm-bridge.log", "bkm-bridge.log.1", "bkm-bridge.log.2"]
    text = "".join(p.read_text(encoding="utf-8") for p in log_file.parent.iterdir())
    assert FNR not in text
    assert "line 0399 for fnr [fnr] about krav-399.xml" in log_file.read_text(encoding="utf-8")
    assert all(p.stat().st_size <= 4096 + 200 for p in log_file.parent.iterdir())


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=30),
    number=st.integers(min_value=0, max_value=10**11 - 1),
    separator=st.sampled_from(["", " ", "-"]),
    after=st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=30),
)
def test_any_eleven_digit_number_is_removed(
    before: str, number: int, separator: str, after: str
) -> None:
    digits = f"{number:011d}"
    written = digits[:6] + separator + digits[6:]
    out = redact_text(before + written + after)
    assert digits not in out.replace(" ", "").replace("-", "")


@given(digits=st.integers(min_value=7, max_value=10), value=st.integers(min_value=0))
def test_shorter_identifiers_stay_readable(digits: int, value: int) -> None:
    number = f"{value % 10**digits:0{digits}d}"  # HPR 7–9, orgnr 9, praksisId 10
    assert redact_text(f"praksis {number} ok") == f"praksis {number} ok"


# --------------------------------------------------------------------------- the command


def test_watch_once_logs_json_lines_to_a_rotating_file_without_patient_data(
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "pasient.xml").write_bytes(patient_xml())
    (inbox / "broken.xml").write_bytes(
        f"<BehandlerKrav><Patient><FamilyName>{FAMILY_NAME}</FamilyName>"
        f"<Ident><Id>{FNR}</Id></Ident>".encode()
    )
    log_file = tmp_path / "logs" / "bridge.log"
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "watch", str(inbox), "--once",
         "--state-dir", str(tmp_path / "state"), "--quiet-seconds", "0.2",
         "--praksis-id", "1004326178", "--sandbox-speed", "600",
         "--log-format", "json", "--log-file", str(log_file), "--log-level", "debug"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]  # broken.xml is rejected
    lines = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    assert len(lines) > 5
    messages = "\n".join(line["message"] for line in lines)
    assert "pasient.xml" in messages and "broken.xml" in messages
    for line in proc.stderr.splitlines():
        if line.startswith("{"):
            json.loads(line)  # stderr carries the same JSON lines
    everything = log_file.read_text(encoding="utf-8") + proc.stderr + proc.stdout
    assert_no_patient_data(everything)


def test_a_claim_about_to_be_sent_teaches_the_log_its_names_and_diagnoses() -> None:
    from bridge.runtime.redaction import remember_patient_data

    claim = patient_claim()
    regning = claim.behandlerkrav.regninger[0]
    assert regning.pasient is not None and regning.diagnoser
    text = f"KUHR says {regning.pasient.fornavn} {FAMILY_NAME} has {regning.diagnoser[0].kode}"
    assert FAMILY_NAME in redact_text(text)  # nothing learned yet: a name is just a word
    remember_patient_data(claim)
    scrubbed = redact_text(text)
    for value in (regning.pasient.fornavn, FAMILY_NAME, regning.diagnoser[0].kode):
        assert value and value not in scrubbed, scrubbed
    assert scrubbed.startswith("KUHR says ")


def test_learned_codes_are_scrubbed_even_when_their_parts_are_too_short_to_learn() -> None:
    from bridge.runtime.redaction import LEARNED

    LEARNED.add("A1.2")  # parts "A1" and "2" are too short to learn on their own
    assert redact_text("diagnosis a1.2 noted; A1 and 2 alone are not it") == (
        "diagnosis [redacted] noted; A1 and 2 alone are not it"
    )


@pytest.mark.parametrize(
    "line",
    [
        "client_secret=hunter2 sent",
        "CLIENT_SECRET: hunter2",
        "ſecret=hunter2",  # a long s: case-insensitive matching takes it for an s
        "Authorization: bearer hunter2",
        "'passord': 'hunter2'",
    ],
)
def test_secret_values_go_whatever_the_case_or_script_of_their_key(line: str) -> None:
    assert "hunter2" not in redact_text(line)
