"""The study list of a DICOMweb batch source, paged by QIDO-RS ``limit``/``offset``.

Against a real Orthanc (DICOMweb plugin): pages shorter than the archive are walked to the end, the
last page being the short one (or empty, when the archive is a multiple of the page), for the study list
and for a study's instances, which are then retrieved one by one and read whole. Against a small
HTTP server of the test's own that misbehaves as some archives do: one that ignores ``offset`` (the
same page over and over) and one that ignores ``limit`` (everything at once): each scan stops with its
own message instead of looping for ever or filling memory.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from _dicomweb_server import send_dicom_json
from _pacs_harness import PASSWORD, USER, Orthanc, free_port, require_tools

from inference.batch import DicomWebSource, SourceError, StudyRef
from inference.dicom import DicomTooLarge, Limits, read_study

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference" / "api"))
from _api_dicom import chest_dicom, uid  # noqa: E402
from _batch_archive import write_archive  # noqa: E402

STUDIES = 7
# One more study, of five instances (a PA film, then laterals): its instance list takes pages too.
VIEWS = 5
LIMITS = Limits(max_instance_bytes=2**20, max_pixels=2**24, max_instances=64)


@pytest.mark.slow
@pytest.mark.integration
def test_orthanc_study_list_is_paged_to_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_tools()
    archive = tmp_path / "archive"
    write_archive(archive, STUDIES, refuse_every=0)
    (tmp_path / "orthanc").mkdir()
    orthanc = Orthanc(tmp_path / "orthanc", free_port(), free_port(), free_port())
    orthanc.start()
    try:
        with orthanc.client() as client:
            for path in sorted(archive.rglob("IM0001")):
                client.post("/instances", content=path.read_bytes()).raise_for_status()
            views = uid(66, 1)
            sops = [uid(66, 1, k) for k in range(VIEWS)]
            for k, sop in enumerate(sops):
                blob = chest_dicom(study=views, sop=sop, view="PA" if k == 0 else "LL", size=64, seed=k)
                client.post("/instances", content=blob).raise_for_status()
            expected = sorted(
                client.get(f"/studies/{study}").json()["MainDicomTags"]["StudyInstanceUID"]
                for study in client.get("/studies").json()
            )
        monkeypatch.setenv("DXASSIST_BATCH_DICOMWEB_USERNAME", USER)
        monkeypatch.setenv("DXASSIST_BATCH_DICOMWEB_PASSWORD", PASSWORD)
        url = f"{orthanc.url}/dicom-web/studies"
        # 3 + 3 + 1 (a short last page), 7 + 0 (an empty last page), and one page holding everything.
        for page_size in (3, 7, 500):
            scan = DicomWebSource(url, page_size=page_size).scan()
            assert [ref.study_instance_uid for ref in scan.studies] == expected
        # A filter is passed on with the paging parameters.
        one = DicomWebSource(f"{url}?StudyInstanceUID={expected[0]}", page_size=3).scan()
        assert [ref.study_instance_uid for ref in one.studies] == expected[:1]
        # The five instances by pages of 2 + 2 + 1, and of 5 + 0; each retrieved alone, all read.
        for page_size in (2, 5):
            source = DicomWebSource(url, page_size=page_size)
            ref = StudyRef(views)
            assert sorted(source.instance_uids(ref, max_instances=64) or []) == sops
            study = read_study(source.read(ref, max_instance_bytes=2**20, max_instances=64), limits=LIMITS)
            assert sorted(i.sop_instance_uid for i in study.instances) == sops
            assert study.primary.sop_instance_uid == sops[0]
        # Over the caps: refused from the listing's first page, and when an instance's body passes it.
        with pytest.raises(DicomTooLarge, match="more than 4 instances"):
            DicomWebSource(url).instance_uids(StudyRef(views), max_instances=4)
        too_small = DicomWebSource(url).read(StudyRef(views), max_instance_bytes=4096, max_instances=64)
        with pytest.raises(DicomTooLarge) as caught:
            read_study(too_small, limits=LIMITS)
        assert caught.value.code == "instance_too_large"
    finally:
        orthanc.stop()
    assert len(expected) == STUDIES + 1


def _study(i: int) -> dict[str, object]:
    return {"0020000D": {"vr": "UI", "Value": [f"1.2.826.0.1.3680043.10.1453.99.{i}"]}}


@pytest.fixture
def misbehaving() -> Iterator[Callable[[Callable[[int, int], list[dict[str, object]]]], str]]:
    """Start a QIDO-RS server answering ``answer(offset, limit)``; yields a starter returning its URL."""
    servers: list[ThreadingHTTPServer] = []
    asked: list[tuple[int, int]] = []

    def start(answer: Callable[[int, int], list[dict[str, object]]]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                offset, limit = int(query.get("offset", ["0"])[0]), int(query.get("limit", ["0"])[0])
                asked.append((offset, limit))
                send_dicom_json(self, answer(offset, limit))

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}/dicom-web/studies"

    start.asked = asked  # type: ignore[attr-defined]
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_server_ignoring_offset_stops_the_scan(misbehaving: Callable[..., str]) -> None:
    url = misbehaving(lambda offset, limit: [_study(i) for i in range(limit)])
    with pytest.raises(SourceError) as caught:
        DicomWebSource(url, page_size=4).scan()
    base = url.removesuffix("/studies")
    assert str(caught.value) == (
        f"The DICOMweb server at {base} answered the same studies again at offset 4 "
        "(it ignores the QIDO-RS offset): the scan stopped rather than loop."
    )
    # Two pages asked, not an endless stream of them.
    assert misbehaving.asked == [(0, 4), (4, 4)]  # type: ignore[attr-defined]


def test_server_overlapping_pages_is_tolerated(misbehaving: Callable[..., str]) -> None:
    """Pages that overlap (a study inserted while paging shifts them) still end, each study once."""

    def shifted(offset: int, limit: int) -> list[dict[str, object]]:
        start = max(0, offset - 1)  # each page repeats the last study of the one before
        return [_study(i) for i in range(start, min(10, start + limit))]

    url = misbehaving(shifted)
    scan = DicomWebSource(url, page_size=4).scan()
    assert len(scan.studies) == 10 == len({ref.study_instance_uid for ref in scan.studies})


def test_server_ignoring_limit_stops_the_scan(misbehaving: Callable[..., str]) -> None:
    url = misbehaving(lambda offset, limit: [_study(i) for i in range(50)])
    with pytest.raises(
        SourceError, match=r"answered 50 studies to a page of 4 \(it ignores the QIDO-RS limit\)"
    ):
        DicomWebSource(url, page_size=4).scan()
    assert misbehaving.asked == [(0, 4)]  # type: ignore[attr-defined]
