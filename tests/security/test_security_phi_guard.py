"""Third-party warnings, log records and uncaught exceptions are printed without patient data.

The end-to-end check with real ``dxassist serve`` / ``dxassist listen`` processes is
``tests/pacs/test_pacs_phi_hygiene.py``; these are the unit checks of each path of the guard.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inference.observability import PhiRedactor, configure_logging
from inference.observability._phi_guard import _show_warning

NAME = "Quarrendel^Josephine"
NEEDLES = ("Quarrendel", "Josephine", "IPP-GUARD-4471", "19310522")


def _clean(text: str) -> None:
    assert not [n for n in NEEDLES if n in text], text


@pytest.fixture
def logged(tmp_path: Path) -> tuple[io.StringIO, Path]:
    stream = io.StringIO()
    log_file = tmp_path / "logs" / "server.jsonl"
    configure_logging(stream=stream, log_file=log_file)
    yield stream, log_file
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_dxassist_json_handler", False)]:
        root.removeHandler(handler)
        handler.close()


def test_third_party_records_keep_their_place_not_their_text(logged: tuple[io.StringIO, Path]) -> None:
    stream, log_file = logged
    logging.getLogger("pydicom").warning(f"Invalid value for VR PN: '{NAME}'")  # an f-string: no args
    logging.getLogger("pynetdicom.events").error("Handler failed for %s born %s", NAME, "19310522")
    logging.getLogger("highdicom.sr").warning("Patient %s", "IPP-GUARD-4471")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received, %d bytes from %s", 70, NAME)
    logging.getLogger("pydicom").info("below WARNING: not written at all %s", NAME)
    for handler in logging.getLogger().handlers:
        handler.flush()
    for text in (stream.getvalue(), log_file.read_text()):
        _clean(text)
        lines = [json.loads(line) for line in text.splitlines()]
        assert [line["logger"] for line in lines] == [
            "pydicom",
            "pynetdicom.events",
            "highdicom.sr",
            "uvicorn.error",
        ]
        assert all(line["level"] in ("WARNING", "ERROR") for line in lines)
        assert "text withheld" in lines[0]["message"] and "pydicom" in lines[0]["message"]
        # uvicorn's messages are fixed templates: kept, with numbers only.
        assert lines[3]["message"] == "Invalid HTTP request received, 70 bytes from ..."


def test_exceptions_keep_type_and_frames_not_message(logged: tuple[io.StringIO, Path]) -> None:
    stream, _ = logged
    try:
        raise ValueError(f"cannot encode {NAME}")
    except ValueError:
        logging.getLogger("sqlalchemy.engine").exception("statement failed")
        logging.getLogger("inference.services").exception("analysis failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    _clean(stream.getvalue())
    assert {line["exc_type"] for line in lines} == {"builtins.ValueError"}
    assert all("test_security_phi_guard.py" in line["stack"] for line in lines)


def test_a_plain_formatter_behind_the_redactor_prints_no_exception_text() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(PhiRedactor())
    logger = logging.getLogger("inference.tests.plain")
    logger.addHandler(handler)
    try:
        try:
            raise KeyError(NAME)
        except KeyError:
            logger.exception("own message, kept")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    _clean(text)
    assert "own message, kept" in text and "builtins.KeyError (message withheld)" in text


def test_warnings_are_logged_without_their_text(logged: tuple[io.StringIO, Path]) -> None:
    stream, _ = logged
    _show_warning(
        UserWarning(f'The string "{NAME}" is unlikely to represent the intended person name'),
        UserWarning,
        "/x/site-packages/highdicom/sc/sop.py",
        220,
    )
    line = json.loads(stream.getvalue().splitlines()[-1])
    _clean(stream.getvalue())
    assert line["event"] == "third_party_warning" and line["kind"] == "UserWarning"
    assert "highdicom/sc/sop.py:220" in line["message"]


def test_a_dxassist_process_prints_no_patient_data_from_warnings_logs_or_crashes(tmp_path: Path) -> None:
    """What the ``dxassist`` command installs first thing, in a real process and its default filters."""
    script = textwrap.dedent(
        f"""
        import logging, threading, warnings
        from inference.cli import main
        from inference.observability import install_process_guard
        install_process_guard()
        # Before any handler exists: Python's last-resort handler, redacted too.
        logging.getLogger("pynetdicom").warning("early %s", "{NAME}")
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        install_process_guard()
        warnings.warn("name {NAME} in a warning", UserWarning)
        logging.getLogger("pydicom").warning("Invalid value for VR DA: '19310522' of {NAME}")
        thread = threading.Thread(target=lambda: (_ for _ in ()).throw(RuntimeError("{NAME}")))
        thread.start(); thread.join()
        raise ValueError("IPP-GUARD-4471 {NAME}")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1
    _clean(output)
    assert "UserWarning raised at" in output
    assert "text withheld" in output and "pydicom" in output and "pynetdicom" in output
    assert "uncaught builtins.RuntimeError in thread" in output
    assert "uncaught builtins.ValueError in the main thread" in output
