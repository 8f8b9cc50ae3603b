"""``read_instance`` and ``read_study``: bytes in, validated and decoded instances out."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any

from . import _header, _plausible, _syntax
from ._budget import decode_budget
from ._decode import REDUCED_MIN_LONG_SIDE, check_native_length, decode
from ._digest import PixelDigest
from ._errors import DicomRejected, reject
from ._guards import (
    FileMeta,
    Structure,
    check_preamble,
    inflate_capped,
    inflated_size,
    read_file_meta,
    walk_structure,
)
from ._model import Instance, Limits, Study
from ._select import select_frontal

if TYPE_CHECKING:
    from pydicom import Dataset

logger = logging.getLogger(__name__)

MAX_SEQUENCE_DEPTH = 16
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
# Uncompressed Pixel Data at least this large is digested on a thread while the file is read.
_THREADED_DIGEST_BYTES = 1024 * 1024


def read_instance(
    data: bytes,
    *,
    limits: Limits,
    target_size: int | None = None,
    min_long_side: int = REDUCED_MIN_LONG_SIDE,
    digest_later: bool = False,
) -> Instance:
    """Validate and decode one DICOM Part-10 file, all of it, now.

    Cheap byte-level guards run first (size, preamble, file meta, transfer syntax, capped inflation,
    structure walk with nesting limit); then pydicom parses, the header is checked, and the pixel data
    is decoded (at reduced resolution when ``target_size`` allows it for the codec).

    Args:
        data: The whole Part-10 file.
        limits: Size limits.
        target_size: Side of the model input; lets JPEG 2000 and baseline JPEG decode smaller.
        min_long_side: Fewest pixels a reduced decode keeps on the long side (default: the display
            rendering's side; tests of the reduced decoders on small images lower it).
        digest_later: Hand the instance out while the digest of large uncompressed Pixel Data, read in
            place in ``data`` (given as ``bytes``), is still under way on its own thread
            (``Instance.pixel_digest`` waits for it, ``Instance.digested`` awaits it): the caller prepares
            the image meanwhile. The thread holds ``data``, which the caller holds anyway, until it is done.

    Returns:
        The decoded instance.

    Raises:
        DicomRejected: With a precise ``code`` for anything refused; no other exception escapes.
    """
    given = data
    try:
        data = bytes(data)  # the same object when given bytes
        plan = _plan(data, limits)
        # Decoding multiplies the data in memory: wait for room in the process's budget first.
        with decode_budget().hold(plan.cost):
            return _read(data, plan, limits, target_size, min_long_side, digest_later and data is given)
    except DicomRejected:
        raise
    except RecursionError as e:
        raise reject("nesting_too_deep", "The DICOM file nests structures too deeply to be read.") from e
    except MemoryError as e:
        raise reject(
            "instance_too_large", "The DICOM file needs more memory to read than is available."
        ) from e
    except Exception as e:  # a parser or plugin failure we did not foresee: still the caller's bad input
        logger.warning("unexpected %s while reading a DICOM file", type(e).__name__)
        raise reject(
            "malformed_header", f"The DICOM file could not be read ({type(e).__name__}); send a valid file."
        ) from e


@dataclass(frozen=True)
class _Plan:
    """What the cheap guards found before anything is parsed or decoded, and what the read will cost."""

    meta: FileMeta
    inflated: int | None  # a deflated dataset's inflated size, measured without keeping it
    structure: Structure | None  # walked in place; None for a deflated dataset, walked once inflated
    cost: int  # bytes of the decode budget the read holds


def _plan(data: bytes, limits: Limits) -> _Plan:
    """Run the guards that need no more memory than the file itself, and size the read.

    The read holds the decode budget for the largest thing it will hold: the file, the inflated dataset
    of a deflated one, or the frame the header declares once decoded (a few kilobytes of JPEG 2000 may
    declare megapixels). Above the pixel limit nothing is decoded (refused first), so that is the most
    a frame is charged.
    """
    check_preamble(data, limits.max_instance_bytes)
    meta = read_file_meta(data)
    ts = meta.transfer_syntax_uid
    if ts not in _syntax.SUPPORTED:
        raise reject(
            "unsupported_transfer_syntax",
            f"Transfer syntax {ts if len(ts) <= 64 else ts[:64]} is not supported; "
            f"accepted: {_syntax.SUPPORTED_NAMES}.",
        )
    if ts == _syntax.DEFLATED_LE:
        # Native pixels in the inflated dataset: the decoded frame is no larger than it.
        inflated = inflated_size(memoryview(data)[meta.end :], limits.max_instance_bytes)
        return _Plan(meta, inflated, None, max(len(data), inflated))
    implicit, little = _syntax.encoding(ts)
    structure = walk_structure(
        memoryview(data)[meta.end :], implicit=implicit, little=little, max_depth=MAX_SEQUENCE_DEPTH
    )
    frame = 0
    if structure.rows is not None and structure.columns is not None:
        sample = 1 if structure.bits_allocated == 8 else 2
        frame = min(structure.rows * structure.columns, limits.max_pixels) * sample
    return _Plan(meta, None, structure, max(len(data), frame))


def _read(
    data: bytes,
    plan: _Plan,
    limits: Limits,
    target_size: int | None,
    min_long_side: int,
    digest_later: bool,
) -> Instance:
    meta, ts = plan.meta, plan.meta.transfer_syntax_uid
    # The dataset is read where it lies in ``data`` (a view, and pydicom reading from an offset): a copy of
    # the body would double the memory of the largest file (docs/security.md, "Memory bounds").
    if ts == _syntax.DEFLATED_LE:
        source, start = (
            inflate_capped(memoryview(data)[meta.end :], limits.max_instance_bytes, plan.inflated),
            0,
        )
    else:
        source, start = data, meta.end
    implicit, little = _syntax.encoding(ts)
    structure = plan.structure or walk_structure(
        memoryview(source)[start:], implicit=implicit, little=little, max_depth=MAX_SEQUENCE_DEPTH
    )
    digest = _digest_in_place(source, start, structure) if ts in _syntax.NATIVE else None
    # Handed out still under way only when its thread reads the caller's own file: an inflated copy of a
    # deflated dataset would outlive the decode budget that covers it.
    later = digest_later and digest is not None and source is data
    try:
        # The header first, without the pixel data: a file refused for its content or its pixel count is
        # refused before pydicom copies its pixels.
        head = _parse(data[132 : meta.end], source, start, implicit, little, stop_before_pixels=True)
        _header.check_content(head)
        _header.pixel_layout(head, limits)
        del head
        ds = _parse(data[132 : meta.end], source, start, implicit, little)
        del source

        modality, sop_class = _header.check_content(ds)
        layout = _header.pixel_layout(ds, limits)
        if structure.pixel_data_offset is None or "PixelData" not in ds:
            raise reject(
                "no_pixel_data", "The DICOM file has no Pixel Data (7FE0,0010); an image is required."
            )
        if ts in _syntax.NATIVE:
            if structure.pixel_data_length is None:
                raise reject("malformed_header", "Uncompressed Pixel Data must have a defined length.")
            check_native_length(structure.pixel_data_length, layout)
        elif structure.pixel_data_length is not None:
            raise reject("malformed_header", f"Pixel Data must be encapsulated for transfer syntax {ts}.")

        identifiers = {
            keyword: _header.uid(ds, keyword)
            for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
        }
        patient = _header.patient(ds)
        slope, intercept = _plausible.rescale(ds, layout)
        centers, widths, function = _header.windows(ds)
        if digest is None:
            # Encapsulated (compressed) Pixel Data: digested on its own thread while it is decoded.
            digest = _digest_of(ds.PixelData)
        pixels, reduction = decode(ds, ts, layout, target_size, min_long_side)
        # The encoded pixels are not needed any more once decoded (and digested, unless the digest reads
        # the file's own bytes and is handed out under way): free them before the checks.
        pixel_digest: str | PixelDigest
        if digest is None:
            pixel_digest = hashlib.sha256(ds.PixelData).hexdigest()
        else:
            pixel_digest = digest if later else digest.result()
        del ds.PixelData
        lut = _header.voi_lut(ds, little)
        _plausible.check_pixels(
            pixels,
            rows=layout.rows,
            columns=layout.columns,
            min_side=limits.min_side,
            slope=slope,
            intercept=intercept,
            window=(centers[0], widths[0]) if centers else None,
            voi_lut=lut,
        )
        return Instance(
            sop_instance_uid=identifiers["SOPInstanceUID"],
            sop_class_uid=sop_class,
            study_instance_uid=identifiers["StudyInstanceUID"],
            series_instance_uid=identifiers["SeriesInstanceUID"],
            modality=modality,
            view_position=(_header.text(ds, "ViewPosition") or "").upper() or None,
            body_part=(_header.text(ds, "BodyPartExamined") or "").upper() or None,
            laterality=_header.text(ds, "ImageLaterality") or _header.text(ds, "Laterality"),
            patient=patient,
            accession_number=_header.text(ds, "AccessionNumber"),
            study_date=_header.iso_date(ds, "StudyDate"),
            rows=layout.rows,
            columns=layout.columns,
            pixels=pixels,
            reduction=reduction,
            photometric=str(ds.PhotometricInterpretation).strip().upper(),
            bits_stored=layout.bits_stored,
            pixel_representation=layout.pixel_representation,
            rescale_slope=slope,
            rescale_intercept=intercept,
            window_centers=centers,
            window_widths=widths,
            voi_lut_function=function,
            voi_lut=lut,
            pixel_spacing=_header.spacing(ds),
            transfer_syntax_uid=ts,
            header=_without_pixels(ds),
            pixel_digest=pixel_digest,
        )
    except BaseException:
        if digest is not None:  # refused: nobody will read the digest, and its thread lets go of the file
            digest.abandon()
        raise


def _digest_in_place(source: bytes, start: int, structure: Structure) -> PixelDigest | None:
    """The digest of uncompressed Pixel Data under way, read where its value bytes lie in the body (exactly
    what pydicom reads into ``PixelData``, so nothing waits for the parse); None when the Pixel Data is too
    small to be worth a thread (or absent)."""
    offset, length = structure.pixel_data_offset, structure.pixel_data_length
    if offset is None or length is None or length < _THREADED_DIGEST_BYTES:
        return None
    begin = start + offset
    if begin + length > len(source):  # a truncated file: refused later, digested by nobody
        return None
    return PixelDigest(memoryview(source)[begin : begin + length])


def _digest_of(value: bytes) -> PixelDigest | None:
    """The digest of a Pixel Data value already read (encapsulated fragments) under way, or None when it is
    too small to be worth a thread."""
    if not isinstance(value, bytes | bytearray) or len(value) < _THREADED_DIGEST_BYTES:
        return None
    return PixelDigest(memoryview(value))


def _parse(
    meta_bytes: bytes,
    source: bytes,
    start: int,
    implicit: bool,
    little: bool,
    *,
    stop_before_pixels: bool = False,
) -> Dataset:
    """Parse the dataset at ``source[start:]`` with pydicom and convert every element now, so bad values
    surface on arrival (``stop_before_pixels``: the elements before the pixel data only)."""
    from pydicom import config
    from pydicom.dataset import FileMetaDataset
    from pydicom.filereader import read_dataset

    def at_pixels(tag: Any, _vr: Any, _length: int) -> bool:
        return stop_before_pixels and int(tag) in _PIXEL_TAGS

    # pydicom's reading validation logs the offending VALUE (a birth date, a name): never let patient data
    # reach the logs. Values are checked here instead, where they matter.
    config.settings.reading_validation_mode = config.IGNORE
    try:
        meta = FileMetaDataset(read_dataset(BytesIO(meta_bytes), False, True))
        fp = BytesIO(source)  # shares the bytes object's buffer: no copy
        fp.seek(start)
        ds = read_dataset(fp, implicit, little, stop_when=at_pixels)
        ds.file_meta = meta
        for _ in ds.iterall():
            pass
    except RecursionError as e:
        raise reject("nesting_too_deep", "The DICOM file nests sequences too deeply to be read.") from e
    except Exception as e:
        raise reject(
            "malformed_header",
            f"The DICOM header could not be parsed ({type(e).__name__}); send a valid file.",
        ) from e
    return ds


def _without_pixels(ds: Dataset) -> Dataset:
    from pydicom.dataset import Dataset

    header = Dataset()
    for element in ds:
        if element.tag not in _PIXEL_TAGS:
            header.add(element)
    header.file_meta = ds.file_meta
    implicit, little = ds.original_encoding
    header.set_original_encoding(implicit, little, ds.original_character_set)
    return header


def one_patient(instances: Sequence[Instance]) -> None:
    """Refuse a study whose instances name more than one patient (Patient ID and its issuer).

    A study belongs to one patient; filing instances that disagree would put one patient's image in
    another's record.

    Raises:
        DicomRejected: ``mixed_patients`` (400).
    """
    patients = {(i.patient.patient_id, i.patient.issuer) for i in instances}
    if len(patients) > 1:
        # The message counts patients; it never names them.
        raise reject(
            "mixed_patients",
            f"The instances of one study name {len(patients)} different patients (Patient ID and Issuer "
            "of Patient ID); a study belongs to one patient: correct the files and send them again.",
        )


def read_study(
    blobs: Sequence[bytes], *, limits: Limits, target_size: int | None = None, digest_later: bool = False
) -> Study:
    """Read every file of one study and choose the frontal view to analyse.

    Args:
        blobs: Part-10 files, all of one study.
        limits: Size limits (``max_instances`` applies to ``blobs``).
        target_size: Passed to :func:`read_instance`.
        digest_later: Passed to :func:`read_instance`; a refused study's digests under way are abandoned.

    Returns:
        The study; duplicate SOP Instance UIDs are kept once (a resend is not an error).

    Raises:
        DicomRejected: ``empty_study``, ``too_many_instances``, ``mixed_studies``, ``mixed_patients``,
            ``no_frontal_view``
            or whatever :func:`read_instance` refuses.
    """
    if not blobs:
        raise reject("empty_study")
    if len(blobs) > limits.max_instances:
        raise reject(
            "too_many_instances",
            f"The request has {len(blobs)} instances, more than the limit of {limits.max_instances}.",
        )
    instances: dict[str, Instance] = {}
    try:
        for blob in blobs:
            instance = read_instance(blob, limits=limits, target_size=target_size, digest_later=digest_later)
            if instances.setdefault(instance.sop_instance_uid, instance) is not instance:
                instance.abandon_digest()  # a duplicate, dropped
        studies = {instance.study_instance_uid for instance in instances.values()}
        if len(studies) > 1:
            raise reject(
                "mixed_studies",
                f"The files belong to {len(studies)} different studies; send the files of one study per "
                "request.",
            )
        accepted = tuple(instances.values())
        one_patient(accepted)
        return Study(study_instance_uid=studies.pop(), instances=accepted, primary=select_frontal(accepted))
    except BaseException:
        for instance in instances.values():  # refused: the digests under way are read by nobody
            instance.abandon_digest()
        raise
