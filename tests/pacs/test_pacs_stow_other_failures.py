"""A STOW-RS answer whose only failure names no instance (Other Failures Sequence) is not a delivery.

PS3.18 puts a failure that cannot be tied to a SOP Instance (a part the archive could not read, a
processing failure) in the Other Failures Sequence (0008,119A), as dxassist's own STOW-RS does. dxassist
sends one object per request, so such a failure is about that object; an answer with it and nothing in
the Referenced SOP Sequence was taken for success (200) or, for a 202, for success too because it held no
Failed SOP Sequence: the object was marked sent, its bytes dropped, and it never reached the archive. The
archive below answers as such an archive does (a fake of an outside service: it cannot run here).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from _pacs_dicom import CR_IMAGE, chest_cr, new_uid

from inference.config import Destination
from inference.delivery import DeliveryFailed, send


def _json(reason: int) -> tuple[bytes, str]:
    dataset = {
        "00081190": {"vr": "UR"},
        "0008119A": {"vr": "SQ", "Value": [{"00081197": {"vr": "US", "Value": [reason]}}]},
    }
    return json.dumps(dataset).encode(), "application/dicom+json"


def _xml(reason: int) -> tuple[bytes, str]:
    document = (
        '<?xml version="1.0" encoding="utf-8"?><NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/'
        'NativeDICOM"><DicomAttribute tag="0008119A" vr="SQ" keyword="OtherFailuresSequence">'
        '<Item number="1">'
        '<DicomAttribute tag="00081197" vr="US" keyword="FailureReason">'
        f'<Value number="1">{reason}</Value></DicomAttribute></Item></DicomAttribute></NativeDicomModel>'
    )
    return document.encode(), "application/dicom+xml"


@contextmanager
def _archive(status: int, answer: tuple[bytes, str]) -> Iterator[str]:
    """A STOW-RS endpoint that reads each request and answers ``status`` with ``answer``, storing nothing."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body, media = answer
            self.send_response(status)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "answer", "retryable", "code"),
    [
        (202, _json(0xA700), True, "destination_busy"),  # out of resources: sent again later
        (200, _json(0xC000), False, "destination_refused"),
        (202, _xml(0xC000), False, "destination_refused"),
    ],
    ids=["202 json out of resources", "200 json cannot understand", "202 xml cannot understand"],
)
def test_an_answer_whose_only_failure_names_no_instance_is_not_a_delivery(
    status: int, answer: tuple[bytes, str], retryable: bool, code: str
) -> None:
    with _archive(status, answer) as url:
        destination = Destination.model_validate(
            {"name": "archive", "kind": "stowrs", "url": url, "token": "secret", "timeout_seconds": 10}
        )
        with pytest.raises(DeliveryFailed) as failed:
            send(destination, chest_cr(study=new_uid()), CR_IMAGE)
    assert (failed.value.retryable, failed.value.code) == (retryable, code)
