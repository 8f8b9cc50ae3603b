"""Hostile input through the HTTP API: size caps, rate limits, DICOM bombs, lying files, path traversal."""

from __future__ import annotations

import resource
import struct
import zlib
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from _dicom_factory import encapsulated, jp2_frame, jpeg_frame, nested_sequences, restate_frame_size, simple
from _security_env import Env, TestClient, chest_dicom, new_study_uid, related_body, seeded_env

from inference.api import create_app

LIMITED = {
    "max_instance_bytes": 8 << 20,
    "max_request_bytes": 16 << 20,
    "max_instances": 3,
    "max_json_bytes": 4096,
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Env]]:
    env = seeded_env(tmp_path_factory.mktemp("hostile"), **LIMITED)
    with TestClient(create_app(env.settings)) as client:
        yield client, env


def _deflate_bomb(inflated: int) -> bytes:
    """A deflated-syntax Part-10 file whose dataset inflates to ``inflated`` bytes of one huge OB."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    out = BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    deflate = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [deflate.compress(struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, inflated))]
    zeros = b"\x00" * (16 << 20)
    for _ in range(inflated // len(zeros)):
        parts.append(deflate.compress(zeros))
    parts.append(deflate.flush())
    return out.getvalue() + b"".join(parts)


def _rle_giant() -> bytes:
    """An RLE Lossless file whose header claims 65535 x 65535 pixels, with a 64-byte RLE header only."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    study = new_study_uid()
    ds_bytes = chest_dicom(study=study, sop=f"{study}.1", size=8)
    from pydicom import dcmread

    ds = dcmread(BytesIO(ds_bytes))
    ds.Rows = ds.Columns = 65535
    header = struct.pack("<16I", 2, 64, 96, *([0] * 13))
    ds.PixelData = encapsulate([header + b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = RLELossless
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _rle_overrunning_segment() -> bytes:
    """A 64 x 64 RLE Lossless file whose first segment decodes to more bytes than the frame has pixels (the
    Rust RLE decoder panics on it, an exception that is not an ``Exception``)."""
    from pydicom import dcmread
    from pydicom.uid import RLELossless

    study = new_study_uid()
    ds = dcmread(BytesIO(chest_dicom(study=study, sop=f"{study}.1", size=64)))
    assert ds.BitsAllocated == 16  # two segments of 64 * 64 bytes
    runs = b"\x81\x07" * 40  # 40 runs of 128 copies: 5120 bytes for a 4096-byte segment
    header = struct.pack("<16I", 2, 64, 64 + len(runs), *([0] * 13))
    return encapsulated(ds, header + runs + b"\x81\x00" * 32, RLELossless)


def _frame_claiming(side: int, transfer_syntax: str, *, before_sof: bytes = b"") -> bytes:
    """A 64 x 64 chest image whose compressed frame header claims ``side`` x ``side`` pixels (JPEG 2000 in
    a JP2 file, or baseline JPEG with ``before_sof`` ahead of its SOF marker)."""
    from pydicom import dcmread
    from pydicom.uid import JPEG2000Lossless

    study = new_study_uid()
    ds = dcmread(BytesIO(chest_dicom(study=study, sop=f"{study}.1", size=64)))
    pixels = ds.pixel_array
    if transfer_syntax == JPEG2000Lossless:
        frame = jp2_frame(pixels, bits_stored=ds.BitsStored)
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        frame = jpeg_frame((pixels >> 1).astype("uint8"))
    return encapsulated(ds, restate_frame_size(frame, side, side, before_sof=before_sof), transfer_syntax)


def _lying_length() -> bytes:
    # An element after Pixel Data that claims 2 GB while 4 bytes follow.
    return simple() + struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, 0x7FFFFFF0) + b"abcd"


def _wrong_vr() -> bytes:
    return simple() + struct.pack("<HH2sH", 0x0009, 0x1011, b"\x01\x02", 4) + b"abcd"


HOSTILE = {
    "deflate bomb (1 GiB)": (lambda: _deflate_bomb(1 << 30), 413, "deflate_bomb"),
    "RLE claiming 65535 x 65535": (_rle_giant, 413, "too_large"),
    "RLE segment decoding past its frame": (_rle_overrunning_segment, 400, "decode_failed"),
    "300-deep nested sequences": (lambda: simple() + nested_sequences(300), 400, "nesting_too_deep"),
    "300-deep defined-length sequences": (
        lambda: simple() + nested_sequences(300, defined_length=True),
        400,
        "nesting_too_deep",
    ),
    # The frame header is where a decoder learns what to allocate: found inside the JP2 boxes and checked,
    # or, when stray bytes hide it, the frame is refused rather than decoded blind (+2.3 / +4 GiB before).
    "JP2 file claiming 20000 x 20000": (
        lambda: _frame_claiming(20000, "1.2.840.10008.1.2.4.90"),
        400,
        "codestream_mismatch",
    ),
    "JPEG with a stray byte before SOF claiming 30000 x 30000": (
        lambda: _frame_claiming(30000, "1.2.840.10008.1.2.4.50", before_sof=b"\x00"),
        400,
        "decode_failed",
    ),
    "lying length": (_lying_length, 400, None),
    "invalid VR": (_wrong_vr, 400, None),
}


# Refused, not hung: the timeout fails a bomb that is decoded (its time is measured in benchmarks/refusals).
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_dicom_bombs_are_refused_with_bounded_time_and_memory(
    hostile: tuple[TestClient, Env], name: str
) -> None:
    client, env = hostile
    build, status, code = HOSTILE[name]
    blob = build()
    assert len(blob) < LIMITED["max_instance_bytes"]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    upload = client.post(
        "/v1/studies",
        files=[("files", ("b.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    body, content_type = related_body([("application/dicom", blob)])
    stow = client.post(
        "/dicomweb/studies",
        content=body,
        headers={**env.headers("pacs", facility="F1"), "Content-Type": content_type},
    )
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert upload.status_code == status, upload.text
    if code is not None:
        assert upload.json()["error"]["code"] == code
    # Failed SOP Sequence when the instance's UIDs could be read, else Other Failures (PS3.18).
    assert stow.status_code == 409 and {"00081198", "0008119A"} & stow.json().keys()
    assert grown_mib < 200, f"{name} grew the process by {grown_mib:.0f} MiB"


def test_body_and_part_caps(hostile: tuple[TestClient, Env]) -> None:
    client, env = hostile
    big_json = b'{"patient": {"identifier": "' + b"x" * 5000 + b'"}}'
    refused = client.post(
        "/v1/vitals",
        content=big_json,
        headers={**env.headers("clinician"), "Content-Type": "application/json"},
    )
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "payload_too_large"
    huge = b"\x00" * (17 << 20)
    too_big = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", huge, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert too_big.status_code == 413
    study = new_study_uid()
    files = [
        ("files", (f"{i}.dcm", chest_dicom(study=study, sop=f"{study}.{i}"), "application/dicom"))
        for i in range(4)
    ]
    many = client.post("/v1/studies", files=files, headers=env.headers("pacs", facility="F1"))
    assert many.status_code == 413 and many.json()["error"]["code"] == "too_many_instances"
    parts = [("application/dicom", chest_dicom(study=study, sop=f"{study}.{i}")) for i in range(4)]
    body, content_type = related_body(parts)
    stow = client.post(
        "/dicomweb/studies",
        content=body,
        headers={**env.headers("pacs", facility="F1"), "Content-Type": content_type},
    )
    assert stow.status_code == 413


TRAVERSALS = [
    "/v1/results/..%2F..%2Fkeys%2Ftoken-signing-ed25519.pem",
    "/v1/results/%2E%2E%2F%2E%2E%2Frecord.db",
    # A fixed id that names no result: parallel workers must collect the same test ids.
    "/v1/results/3f1c9a6e-2b7d-4e58-9c0a-6d2e8b41f7a3/heatmaps/..%2F..%2Fkeys.png",
    "/v1/studies/..%2F..%2Fkeys/result",
    "/v1/studies/1.2.3%2F..%2F..%2Fetc/result",
    "/fhir/Patient/..%2F..%2Fkeys",
    "/fhir/..%2Fkeys/token-signing-ed25519.pem",
    "/fhir/AuditEvent/..%2F..%2Frecord.db",
    "/v1/patients/..%2F..%2Fkeys/consent",
    "/v1/../../keys/token-signing-ed25519.pem",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_in_identifiers_goes_nowhere(hostile: tuple[TestClient, Env], path: str) -> None:
    client, env = hostile
    response = client.get(path, headers=env.headers("admin"))
    assert response.status_code in (400, 404), (path, response.status_code)
    assert b"PRIVATE KEY" not in response.content and b"SQLite format" not in response.content


def test_stow_refuses_instance_uids_that_are_not_uids(hostile: tuple[TestClient, Env]) -> None:
    client, env = hostile
    study = new_study_uid()
    blob = chest_dicom(study=study, sop="1.2.3/../../../keys")
    body, content_type = related_body([("application/dicom", blob)])
    stow = client.post(
        "/dicomweb/studies",
        content=body,
        headers={**env.headers("pacs", facility="F1"), "Content-Type": content_type},
    )
    assert stow.status_code == 409
    assert "../" not in stow.text


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    env = seeded_env(tmp_path, rate_limit_per_minute=60, rate_limit_burst=3)
    with TestClient(create_app(env.settings)) as client:
        headers = env.headers("radiologist")
        statuses = [client.get("/v1/models", headers=headers).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = client.get("/v1/models", headers=headers)
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        # Another principal has its own bucket; probes are never limited.
        assert client.get("/v1/models", headers=env.headers("clinician")).status_code == 200
        assert all(client.get("/healthz").status_code == 200 for _ in range(10))
        anonymous = [client.get("/v1/models").status_code for _ in range(4)]
        assert anonymous == [401, 401, 401, 429]


RFC2231_CONTENT_TYPES = [
    "multipart/related; type=\"application/dicom\"; boundary*=idna''abc",
    "multipart/related; type=\"application/dicom\"; boundary=abc; charset*=undefined''x",
    "multipart/related; type*=utf-8\x00''application%2Fdicom; boundary=abc",
]


@pytest.mark.parametrize("content_type", RFC2231_CONTENT_TYPES)
def test_stow_undecodable_content_type_parameters_are_refused_400(
    hostile: tuple[TestClient, Env], content_type: str
) -> None:
    client, env = hostile
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1")
    body, _ = related_body([("application/dicom", blob)], boundary="abc")
    stow = client.post(
        "/dicomweb/studies",
        content=body,
        headers={**env.headers("pacs", facility="F1"), "Content-Type": content_type},
    )
    assert stow.status_code == 400, stow.text
    assert "RFC 2231" in stow.json()["error"]["message"]


@pytest.mark.parametrize(
    ("content_type", "part_header"),
    [
        ("multipart/form-data; boundary*=idna''abc", 'Content-Disposition: form-data; name="files"'),
        (
            "multipart/form-data; boundary=abc",
            "Content-Disposition: form-data; name*=idna''files; filename=a",
        ),
        (
            "multipart/form-data; boundary=abc",
            "Content-Disposition: form-data; name*=\x00''files; filename=a",
        ),
    ],
)
def test_upload_undecodable_header_parameters_are_refused_400(
    hostile: tuple[TestClient, Env], content_type: str, part_header: str
) -> None:
    client, env = hostile
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1")
    body = (
        f"--abc\r\n{part_header}\r\nContent-Type: application/dicom\r\n\r\n".encode("latin-1")
        + blob
        + b"\r\n--abc--\r\n"
    )
    upload = client.post(
        "/v1/studies",
        content=body,
        headers={**env.headers("pacs", facility="F1"), "Content-Type": content_type},
    )
    assert upload.status_code == 400, upload.text
    assert "RFC 2231" in upload.json()["error"]["message"]
