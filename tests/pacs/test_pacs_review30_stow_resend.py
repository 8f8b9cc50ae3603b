"""A resend to an archive that answers 409 for an instance it already holds is delivered, not refused.

Google Cloud Healthcare's and Microsoft's DICOM services refuse a STOW-RS of a SOP Instance UID they hold
with HTTP 409 (Google: a PS3.19 XML Failed SOP Sequence, Failure Reason 272). dxassist resends an object
when the archive stored it but the answer was lost (a timeout) or a worker died before recording it
(docs/pacs.md, "A worker that dies holding a lease"): the object was in the archive, yet it became a
dead letter (``destination_refused``) that no retry could clear. The archive below behaves as Google's
does (it cannot run here: a fake of an outside service); QIDO-RS tells whether it holds the object.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pydicom
import pytest
from _pacs_dicom import CR_IMAGE, chest_cr, new_uid

from inference.config import Destination
from inference.delivery import DeliveryFailed, send

# Google's answer to a duplicate (PS3.19 Native DICOM Model, Failure Reason 272 with a private detail).
_ALREADY_EXISTS = (
    '<NativeDicomModel><DicomAttribute tag="00081198" vr="SQ" keyword="FailedSOPSequence"><Item number="1">'
    '<DicomAttribute tag="00081197" vr="US" keyword="FailureReason"><Value number="1">272</Value>'
    "</DicomAttribute></Item></DicomAttribute></NativeDicomModel>"
)


@contextmanager
def _archive(
    refused_series: set[str], *, search_ignores_path: bool = False, parent_uids: bool = True
) -> Iterator[tuple[str, dict[str, Any]]]:
    """A STOW-RS and QIDO-RS archive that answers 409 for a SOP Instance UID it holds, and for any
    instance of ``refused_series`` (a conflict of another kind: nothing is stored). Its QIDO-RS answers
    the instance's study, series and instance UIDs, as Google's does (without ``parent_uids``, the
    instance-level attributes only, as PS3.18 Table 10.6.3-5 asks for a series' instances); with
    ``search_ignores_path`` it finds an instance by its SOP Instance UID in any study and series."""
    held: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            part = body[body.index(b"\r\n\r\n") + 4 : body.rindex(b"\r\n--")]
            ds = pydicom.dcmread(BytesIO(part))
            uid = str(ds.SOPInstanceUID)
            if uid in held or str(ds.SeriesInstanceUID) in refused_series:
                self._answer(409, _ALREADY_EXISTS.encode(), "application/dicom+xml")
                return
            held[uid] = ds
            item = {"00081155": {"vr": "UI", "Value": [uid]}, "00081150": {"vr": "UI", "Value": [CR_IMAGE]}}
            self._answer(200, json.dumps({"00081199": {"vr": "SQ", "Value": [item]}}).encode())

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            wanted = parse_qs(parts.query).get("SOPInstanceUID", [""])[0]
            series = parts.path.split("/series/")[1].split("/")[0]
            found = [
                {
                    **(
                        {
                            "0020000D": {"vr": "UI", "Value": [str(ds.StudyInstanceUID)]},
                            "0020000E": {"vr": "UI", "Value": [str(ds.SeriesInstanceUID)]},
                        }
                        if parent_uids
                        else {}
                    ),
                    "00080018": {"vr": "UI", "Value": [uid]},
                }
                for uid, ds in held.items()
                if uid == wanted and (search_ignores_path or str(ds.SeriesInstanceUID) == series)
            ]
            self._answer(200, json.dumps(found).encode())

        def _answer(self, status: int, data: bytes, media: str = "application/dicom+json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicomWeb", held
    finally:
        server.shutdown()
        server.server_close()


def _destination(url: str) -> Destination:
    return Destination.model_validate(
        {"name": "cloud", "kind": "stowrs", "url": url, "token": "secret", "timeout_seconds": 10}
    )


def test_a_resend_of_an_object_the_archive_holds_is_delivered() -> None:
    with _archive(set()) as (url, held):
        sop = new_uid()
        payload = chest_cr(study=new_uid(), sop=sop)
        send(_destination(url), payload, CR_IMAGE)
        send(_destination(url), payload, CR_IMAGE)  # the answer to the first was lost: sent again
        assert list(held) == [sop]


def test_a_resend_is_delivered_when_the_search_answers_instance_attributes_only() -> None:
    # PS3.18 asks a search of a series' instances for the instance-level attributes only: an archive that
    # leaves the study and series UIDs out of its answer (the URL named them) holds the object, and the
    # 409 to its resend is no dead letter.
    with _archive(set(), parent_uids=False) as (url, held):
        sop = new_uid()
        payload = chest_cr(study=new_uid(), sop=sop)
        send(_destination(url), payload, CR_IMAGE)
        send(_destination(url), payload, CR_IMAGE)
        assert list(held) == [sop]


def test_a_409_for_an_object_the_archive_does_not_hold_is_still_refused() -> None:
    series = new_uid()
    with _archive({series}) as (url, held):
        with pytest.raises(DeliveryFailed) as refused:
            send(_destination(url), chest_cr(study=new_uid(), series=series), CR_IMAGE)
        assert (refused.value.retryable, refused.value.code) == (False, "destination_refused")
        assert held == {}


def test_a_409_for_an_instance_the_archive_holds_in_another_study_is_still_refused() -> None:
    # The archive holds the SOP Instance UID under another study (a study the PACS merged or split, or
    # an object filed before the source was corrected), and its search ignores the URL's study and
    # series. The object was taken for delivered, though a viewer of its study never finds it.
    sop = new_uid()
    with _archive(set(), search_ignores_path=True) as (url, held):
        send(_destination(url), chest_cr(study=new_uid(), sop=sop), CR_IMAGE)
        with pytest.raises(DeliveryFailed) as refused:
            send(_destination(url), chest_cr(study=new_uid(), sop=sop), CR_IMAGE)
        assert (refused.value.retryable, refused.value.code) == (False, "destination_refused")
        assert list(held) == [sop]
