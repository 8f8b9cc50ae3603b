"""A DICOMweb batch source holds bounded answers only: instance lists paged, instances read up to the cap.

Against a small DICOMweb server of the tests' own (``_dicomweb_server``), honest or misbehaving as some
archives do: a study whose instances take several QIDO-RS pages is listed and retrieved whole; an
instance query that ignores ``limit`` or ``offset`` stops with its own message; a study listing more
instances than ``DXASSIST_MAX_INSTANCES`` is refused from its first page; an instance streamed without
end (or declaring a huge length) is refused once the cap is passed, the server seeing the client leave
long before it could send the rest. Then the same server behind ``dxassist batch score``: the good
studies are scored (and skipped by a second run, which needs every instance to have been read), the
others refused or failed by code in the summary, the run going on past them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_models
from _dicomweb_server import Instance, Listing, Retrieval, Study, dicomweb_server
from _dxassist_cli import DXASSIST, REPO, dxassist_env
from _loopback import wait_until

from inference.batch import DicomWebSource, SourceError, StudyRef
from inference.dicom import DicomTooLarge, Limits, read_study

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference" / "api"))
from _api_dicom import PATIENT_NAME, chest_dicom, uid  # noqa: E402

CAP = 1024 * 1024  # DXASSIST_MAX_INSTANCE_BYTES of these tests
LIMITS = Limits(max_instance_bytes=CAP, max_pixels=2**24, max_instances=64)


def _study(n: int, instances: int, *, listing: Listing = "honest", retrieval: Retrieval = "honest") -> Study:
    """Study ``n``: a PA film then laterals, all real files of one patient (series per instance)."""
    study = uid(88, n)
    files = [
        Instance(
            series=uid(88, n, k, 0),
            sop=uid(88, n, k, 1),
            blob=chest_dicom(
                study=study,
                sop=uid(88, n, k, 1),
                series=uid(88, n, k, 0),
                view="PA" if k == 0 else "LL",
                size=64,
                seed=k,
            ),
        )
        for k in range(instances)
    ]
    return Study(study, files, listing=listing, retrieval=retrieval)


def _listed_only(n: int, instances: int, *, listing: Listing = "honest") -> Study:
    """Study ``n`` whose instance query lists ``instances`` (nothing behind them is ever retrieved)."""
    files = [Instance(series=uid(88, n, 0, 0), sop=uid(88, n, k, 1)) for k in range(instances)]
    return Study(uid(88, n), files, listing=listing)


def test_instances_over_several_pages_are_listed_and_read_whole() -> None:
    study = _study(1, 5)
    with dicomweb_server([study]) as server:
        source = DicomWebSource(f"{server.url}/studies", page_size=2)
        ref = StudyRef(study.uid)
        uids = source.instance_uids(ref, max_instances=64)
        blobs = source.read(ref, max_instance_bytes=CAP, max_instances=64)
        read = read_study(blobs, limits=LIMITS)
    assert uids == [i.sop for i in study.instances]
    assert sorted(i.sop_instance_uid for i in read.instances) == sorted(uids)
    assert read.primary.sop_instance_uid == study.instances[0].sop  # the PA film
    # 2 + 2 + 1, for the listing and again for the read.
    assert [a for a in server.asked if a[0]] == [(study.uid, 0, 2), (study.uid, 2, 2), (study.uid, 4, 2)] * 2


def test_instance_query_ignoring_limit_stops_the_listing() -> None:
    study = _listed_only(2, 300, listing="ignore_limit")
    with dicomweb_server([study]) as server:
        with pytest.raises(SourceError) as caught:
            DicomWebSource(f"{server.url}/studies", page_size=4).instance_uids(
                StudyRef(study.uid), max_instances=64
            )
    assert str(caught.value) == (
        f"The DICOMweb server at {server.url} answered 300 instances of a study to a page of 4 "
        "(it ignores the QIDO-RS limit): the study was not read."
    )
    assert server.asked == [(study.uid, 0, 4)]


def test_instance_query_ignoring_offset_stops_the_listing() -> None:
    study = _listed_only(3, 10, listing="ignore_offset")
    with dicomweb_server([study]) as server:
        with pytest.raises(SourceError) as caught:
            DicomWebSource(f"{server.url}/studies", page_size=4).read(
                StudyRef(study.uid), max_instance_bytes=CAP, max_instances=64
            )
    assert str(caught.value) == (
        f"The DICOMweb server at {server.url} answered the same instances of a study again at offset 4 "
        "(it ignores the QIDO-RS offset): the study was not read rather than loop."
    )
    assert server.asked == [(study.uid, 0, 4), (study.uid, 4, 4)]


def test_instance_query_answering_smaller_pages_stops_rather_than_cut_the_list() -> None:
    """A server whose pages are smaller than asked says so (PS3.18 Warning 299): the short page it
    sends is not the last, and the study is not read from part of its instances."""
    study = _study(7, 5, listing="capped")
    with dicomweb_server([study]) as server:
        with pytest.raises(SourceError) as caught:
            DicomWebSource(f"{server.url}/studies", page_size=4).instance_uids(
                StudyRef(study.uid), max_instances=64
            )
        # With pages the server can answer in full, the five are listed.
        uids = DicomWebSource(f"{server.url}/studies", page_size=3).instance_uids(
            StudyRef(study.uid), max_instances=64
        )
    assert str(caught.value) == (
        f"The DICOMweb server at {server.url} answered 3 instances of a study to a page of 4 and warns "
        "that more results exist (its pages are smaller): the study was not read; "
        "set DXASSIST_BATCH_QIDO_PAGE_SIZE to 3 or less."
    )
    assert uids == [i.sop for i in study.instances]


def test_study_over_the_instance_cap_is_refused_from_its_first_page() -> None:
    study = _listed_only(4, 10_000)
    with dicomweb_server([study]) as server:
        with pytest.raises(DicomTooLarge) as caught:
            DicomWebSource(f"{server.url}/studies").instance_uids(StudyRef(study.uid), max_instances=64)
    assert caught.value.code == "too_many_instances"
    assert str(caught.value) == (
        "The study has more than 64 instances on the DICOMweb server, the limit per study "
        "(DXASSIST_MAX_INSTANCES): it was not retrieved."
    )
    # One page of one more than the cap: never the 10 000 instances.
    assert server.asked == [(study.uid, 0, 65)]


@pytest.mark.parametrize("retrieval", ["endless", "declared_huge"])
def test_instance_over_the_cap_is_refused_without_reading_it(retrieval: str) -> None:
    study = _study(5, 1, retrieval=retrieval)
    sop = study.instances[0].sop
    with dicomweb_server([study]) as server:
        blobs = DicomWebSource(f"{server.url}/studies").read(
            StudyRef(study.uid), max_instance_bytes=CAP, max_instances=64
        )
        with pytest.raises(DicomTooLarge) as caught:
            read_study(blobs, limits=LIMITS)
        # The server would stream for ever; it stops when the client has gone.
        wait_until(lambda: sop in server.ended, timeout=30, what="the server to see the client leave")
    assert caught.value.code == "instance_too_large"
    assert str(caught.value) == (
        f"An instance of the study is larger than the limit of {CAP} bytes (DXASSIST_MAX_INSTANCE_BYTES); "
        "it was not retrieved whole."
    )
    # What the client read plus what the sockets' buffers took: a few MiB at most, never the stream.
    assert server.sent[sop] < 32 * CAP


def test_a_compressed_answer_is_refused_before_it_is_inflated() -> None:
    # Asked for identity, the server sends a gzip bomb (64 MiB of zeros in ~64 KiB): refused from its
    # headers, never inflated, so its size can never pass the cap unseen.
    study = _study(7, 1, retrieval="gzip")
    with dicomweb_server([study]) as server:
        source = DicomWebSource(f"{server.url}/studies")
        blobs = source.read(StudyRef(study.uid), max_instance_bytes=CAP, max_instances=64)
        with pytest.raises(SourceError) as caught:
            read_study(blobs, limits=LIMITS)
    assert str(caught.value) == (
        f"The DICOMweb server at {server.url} answered with Content-Encoding 'gzip'; dxassist asks for "
        "uncompressed answers (Accept-Encoding: identity) so that their size can be bounded."
    )


def test_an_answer_trickling_under_the_read_timeout_is_abandoned(monkeypatch: pytest.MonkeyPatch) -> None:
    # A byte every 20 ms never trips the per-read timeout; the whole body's deadline ends it.
    from inference.batch import _dicomweb

    monkeypatch.setattr(_dicomweb, "_BODY_SECONDS", 0.5)
    study = _study(8, 1, retrieval="trickle")
    with dicomweb_server([study]) as server:
        source = DicomWebSource(f"{server.url}/studies")
        blobs = source.read(StudyRef(study.uid), max_instance_bytes=CAP, max_instances=64)
        with pytest.raises(SourceError) as caught:
            read_study(blobs, limits=LIMITS)
        sop = study.instances[0].sop
        wait_until(lambda: sop in server.ended, timeout=30, what="the server to see the client leave")
    assert str(caught.value) == f"The DICOMweb server at {server.url} did not send an instance of a study."
    assert 0 < server.sent[sop] < 1000  # a few seconds' trickle at most, not the study


@pytest.mark.parametrize(
    ("listing", "message"),
    [
        ("fail", "did not answer a study's instance query (HTTP 500)."),
        ("drop", "did not answer a study's instance query."),
    ],
)
def test_instance_query_failing_is_a_source_error(listing: str, message: str) -> None:
    study = _study(6, 1, listing=listing)
    with dicomweb_server([study]) as server:
        with pytest.raises(SourceError) as caught:
            DicomWebSource(f"{server.url}/studies").instance_uids(StudyRef(study.uid), max_instances=64)
    assert str(caught.value) == f"The DICOMweb server at {server.url} {message}"


@pytest.mark.slow
@pytest.mark.integration
def test_batch_score_goes_past_studies_the_server_serves_wrongly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    imaging = tiny_models.build_imaging_onnx(tmp_path / "imaging.onnx")
    tiny_models.seed_cache(home / "models", tiny_models.IMAGING_NAME, imaging)
    triage = tiny_models.build_triage_onnx(tmp_path / "triage.onnx")
    tiny_models.seed_cache(home / "models", tiny_models.TRIAGE_NAME, triage)
    studies = [
        _study(10, 1),  # scored
        _study(11, 5),  # five instances over three pages of 2: scored from all five
        _study(12, 1, listing="fail"),  # failed: the instance query answers HTTP 500
        _listed_only(13, 300, listing="ignore_limit"),  # failed: the instance query ignores limit
        _study(14, 1, retrieval="endless"),  # refused: instance_too_large
        _listed_only(15, 70),  # refused: too_many_instances (over DXASSIST_MAX_INSTANCES = 64)
    ]
    env = dxassist_env(home)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env |= {"DXASSIST_BATCH_QIDO_PAGE_SIZE": "2", "DXASSIST_MAX_INSTANCE_BYTES": str(CAP)}
    with dicomweb_server(studies) as server:
        command = [str(DXASSIST), "batch", "score", f"{server.url}/studies", "--facility", "F1"]
        command += ["--workers", "1", "--json", "--no-progress"]
        runs = [
            subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=600)
            for _ in range(2)
        ]
        endless = studies[4].instances[0].sop
        wait_until(lambda: endless in server.ended, timeout=30, what="the server to see the client leave")
    first, second = (json.loads(run.stdout.strip().splitlines()[-1]) for run in runs)
    # Some studies failed: exit status 1 (run again to retry them), with every study counted.
    assert [run.returncode for run in runs] == [1, 1], runs[0].stderr[-3000:]
    assert (first["studies"], first["scored"], first["skipped"]) == (6, 2, 0)
    assert first["refused"] == {"instance_too_large": 1, "too_many_instances": 1}
    assert first["failed"] == {"SourceError": 2}
    # The second run skips both scored studies: the five-instance one was filed from all five.
    assert (second["scored"], second["skipped"], second["failed"]) == (0, 2, {"SourceError": 2})
    # Each failure says why, in the workers' log lines on stderr (no UID in them).
    stderr = runs[0].stderr
    assert (
        f"The DICOMweb server at {server.url} did not answer a study's instance query (HTTP 500)." in stderr
    )
    assert "(it ignores the QIDO-RS limit): the study was not read." in stderr
    assert not any(study.uid in stderr for study in studies)
    assert PATIENT_NAME not in stderr
    assert server.sent[endless] < 32 * CAP


def test_a_server_certified_by_the_hospital_s_own_authority_is_read_once_it_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from _certificates import certificates

    certs = certificates(tmp_path)
    study = _study(2, 2)
    with dicomweb_server([study], tls=(certs["server_cert"], certs["server_key"])) as server:
        assert server.url.startswith("https://")
        monkeypatch.delenv("DXASSIST_BATCH_DICOMWEB_CAFILE", raising=False)
        with pytest.raises(SourceError):  # the system's authorities do not know it
            DicomWebSource(f"{server.url}/studies").scan()
        monkeypatch.setenv("DXASSIST_BATCH_DICOMWEB_CAFILE", str(tmp_path / "missing.pem"))
        with pytest.raises(SourceError, match="CAFILE"):
            DicomWebSource(f"{server.url}/studies").scan()
        monkeypatch.setenv("DXASSIST_BATCH_DICOMWEB_CAFILE", str(certs["ca"]))
        source = DicomWebSource(f"{server.url}/studies")
        assert [ref.study_instance_uid for ref in source.scan().studies] == [study.uid]
        blobs = source.read(StudyRef(study.uid), max_instance_bytes=CAP, max_instances=64)
    assert len(blobs) == 2
