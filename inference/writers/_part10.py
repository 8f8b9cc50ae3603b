"""Part-10 encoding of the objects sent to a PACS."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from ._errors import WriterError
from ._uids import check_uid

if TYPE_CHECKING:
    from pydicom import Dataset


def write_part10(ds: Dataset) -> bytes:
    """Encode a dataset as a DICOM Part-10 file in explicit VR little endian.

    The file meta is filled in (or corrected) from the dataset: media storage SOP class and instance
    from the dataset's own, transfer syntax explicit VR little endian; ``ds.file_meta`` is updated.

    Args:
        ds: A dataset with native (not encapsulated) pixel data, if any.

    Returns:
        The file bytes (128-byte preamble, ``DICM``, file meta, dataset).

    Raises:
        WriterError: When the dataset lacks its SOP UIDs or holds compressed pixel data.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise WriterError("A dataset needs SOPClassUID and SOPInstanceUID to be written as a DICOM file.")
    current = getattr(ds, "file_meta", None)
    syntax = current.get("TransferSyntaxUID") if current is not None else None
    if syntax is not None and syntax.is_compressed:
        raise WriterError(
            "Only datasets with native pixel data can be written; this one is compressed "
            f"({syntax.name}), and explicit VR little endian is the syntax written."
        )
    meta = FileMetaDataset(current) if current is not None else FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(check_uid(ds.SOPClassUID, "SOP Class UID"))
    meta.MediaStorageSOPInstanceUID = UID(check_uid(ds.SOPInstanceUID, "SOP Instance UID"))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if "ImplementationClassUID" not in meta:
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return buffer.getvalue()
