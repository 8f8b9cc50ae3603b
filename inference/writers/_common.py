"""What the SR and the secondary captures share: source checks, equipment, dates, descriptions."""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from inference import vocabulary as v

from . import _coding
from ._errors import WriterError
from ._uids import check_uid, device_uid

if TYPE_CHECKING:
    from highdicom import ContributingEquipment
    from pydicom import Dataset
    from pydicom.dataelem import DataElement

    from inference.dicom import Instance

    from ._inputs import AlgorithmInfo, FindingOutput

NOT_FOR_DIAGNOSIS: Final = "not for diagnosis alone"
_SEX: Final = {"FEMALE": "F", "MALE": "M", "OTHER": "O"}
_SINGLE_VALUED_VRS: Final = frozenset({"PN", "LO", "SH", "DA", "TM", "CS", "AS"})
_ISO_DATE: Final = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_ISO_TIME: Final = re.compile(r"(\d{2}):(\d{2})(?::(\d{2}(?:\.\d{1,6})?))?")
_LO_MAX: Final = 64
# The longest value each VR allows, in characters (PS3.5 Table 6.2-1); for PN, of one component group.
_MAX_CHARS: Final = {
    "AE": 16,
    "AS": 4,
    "CS": 16,
    "DS": 16,
    "IS": 12,
    "LO": 64,
    "LT": 10240,
    "PN": 64,
    "SH": 16,
    "ST": 1024,
}
# Free text that keeps its meaning when cut; an identifier does not (it would name another object).
_CUT_VRS: Final = frozenset({"LO", "SH", "ST", "LT", "PN"})
_IDENTIFIER_ENDINGS: Final = ("ID", "IDs", "Number", "Numbers", "Identifier", "Version")
_AGE: Final = re.compile(r"\d{3}[DWMY]")
# The single-byte character sets without code extensions (PS3.3 C.12.1.1.2, Table C.12-2): each has an
# ISO 2022 form with code extensions, ``ISO 2022 IR n`` for ``ISO_IR n``.
_SINGLE_BYTE_CHARSETS: Final = frozenset(
    f"ISO_IR {n}" for n in (13, 100, 101, 109, 110, 126, 127, 138, 144, 148, 166, 203)
)
# The VRs whose values the Specific Character Set applies to (PS3.5 6.1.2.3) and that may hold text.
_TEXT_VRS: Final = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "PN"})

# Type 2 attributes of the Patient and General Study modules: highdicom reads them from the source,
# so a source that omits one (allowed for some of them) gets an empty value instead of a crash.
_TYPE2_DEFAULTS: Final = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
# Attributes of the modules the outputs copy that the standard allows once (VM 1): the type 2 ones above
# and these.
_SINGLE_VALUED: Final = frozenset(
    {
        *_TYPE2_DEFAULTS,
        "StudyDescription",
        "IssuerOfPatientID",
        "PatientAge",
        "PatientBirthTime",
        "SeriesDate",
        "SeriesTime",
        "ContentDate",
        "ContentTime",
        "AcquisitionDate",
        "AcquisitionTime",
    }
)


def checked_source(source: Instance) -> Dataset:
    """A copy of the source header with validated UIDs and the type 2 patient/study attributes present.

    Raises:
        InvalidUID: When a UID of the source is not valid.
    """
    # Deep copy: Dataset.copy() shares elements, and the source header must never change.
    header = copy.deepcopy(source.header)
    header.SOPInstanceUID = check_uid(source.sop_instance_uid, "source SOP Instance UID")
    header.SOPClassUID = check_uid(source.sop_class_uid, "source SOP Class UID")
    header.StudyInstanceUID = check_uid(source.study_instance_uid, "source Study Instance UID")
    header.SeriesInstanceUID = check_uid(source.series_instance_uid, "source Series Instance UID")
    for keyword in _TYPE2_DEFAULTS:
        if keyword not in header:
            setattr(header, keyword, None)
    repair_header(header)
    return header


def repair_header(header: Dataset) -> None:
    """Mend, in place, header values that the source carries wrongly but that have one sane reading.

    A PACS hands over what modalities wrote, and modalities write non-conformant headers. What is copied
    into the outputs must be valid DICOM, so before highdicom sees the header:

    - Specific Character Set: an empty value is the default repertoire, as if absent; none declared
      while the text is not ASCII (legacy modalities write Latin-1,
      or UTF-8, without saying so) becomes the set the bytes are in: UTF-8 (``ISO_IR 192``) when every
      such value is valid UTF-8, else Latin-1 (``ISO_IR 100``), so the bytes copied are the source's
      and a viewer shows the accents; an empty value 1 before code extensions (``\\ISO 2022 IR 87``, as
      Japanese and Korean modalities write it) becomes ``ISO 2022 IR 6``; a single ``ISO 2022 IR n``
      (code extensions with nothing to switch to) becomes ``ISO_IR n`` (UTF-8 where no single-byte
      form exists); several sets without code extensions, or an unknown one, become UTF-8
      (``ISO_IR 192``): the values were decoded already
      (pydicom fell back to its default), and UTF-8 encodes any of them;
    - a multi-valued attribute that the standard allows once (Patient's Name, a study-level date...)
      keeps its first value;
    - Patient's Sex spelled out (``female``) becomes its code (``F``); an unknown one is emptied;
    - a one-component person name gets its trailing caret (``Bono^``), as PS3.5 6.2.1.2 allows, so
      highdicom does not warn with the name in the message;
    - a date written ``YYYY-MM-DD`` becomes ``YYYYMMDD`` and a time ``HH:MM:SS`` becomes ``HHMMSS``;
      a date or time that still cannot be read is emptied (every one of them highdicom copies is type 2);
    - a value longer than its VR allows (PS3.5 Table 6.2-1) is made to fit: free text (LO, SH, ST, LT)
      is cut at the limit and a person name's component group at 64 characters (its longest component
      first); a decimal string is written again in 16 characters; a Code Value over 16 characters moves
      to Long Code Value, and a coded item whose Coding Scheme Designator is over 16 is left out of its
      sequence (the sequence too when no item is left); an identifier (Accession Number, Study ID...), a
      code string, an integer string or an age that does not fit is emptied, since a cut one would
      name something else. A Patient's Age not in the ``nnnD/W/M/Y`` form is emptied too.

    What still fails after this is refused by the writer, and the delivery machinery files the result's
    outputs in the dead-letter queue.
    """
    from pydicom.valuerep import DA, TM, PersonName

    _repair_charset(header)
    if "PatientSex" in header:
        sex = str(header.PatientSex or "").strip().upper()
        header.PatientSex = _SEX.get(sex, sex if sex in ("M", "F", "O") else None)
    for element in list(header):
        if element.VR == "SQ" or element.tag.is_private or element.tag.group in (0x0002, 0x7FE0):
            continue
        if element.VR in _SINGLE_VALUED_VRS and element.VM > 1 and element.keyword in _SINGLE_VALUED:
            element.value = element.value[0]
        if element.VR == "PN" and isinstance(element.value, str | PersonName):
            element.value = _mend_name(element.value)
        if element.VR == "DA":
            element.value = _mend_temporal(element.value, DA, _ISO_DATE, "")
        elif element.VR == "TM":
            element.value = _mend_temporal(element.value, TM, _ISO_TIME, "")
    _fit_lengths(header)


def _mend_temporal(value: object, kind: type, pattern: re.Pattern[str], joiner: str) -> object:
    """The value as a DICOM DA/TM, rewritten from its ISO form when needed; empty when unreadable."""
    values = _as_list(value)
    mended = []
    for item in values:
        text = "" if item is None else str(item).strip()
        if not text:
            mended.append("")
            continue
        match = pattern.fullmatch(text)
        if match:
            text = joiner.join(group for group in match.groups() if group is not None)
        try:
            kind(text)
        except (ValueError, TypeError, OverflowError):
            text = ""
        mended.append(text)
    if len(mended) == 1:
        return mended[0] or None
    return [item for item in mended if item] or None


def _fit_lengths(ds: Dataset) -> None:
    """Make every value of ``ds`` and of its sequences' items fit its VR (see :func:`repair_header`).

    A PACS hands over what the modality wrote; copied as it is, an over-long value makes the SR and
    captures invalid (dciodvfy: *Length invalid for this VR*), and a strict archive refuses them.
    """
    for element in list(ds):
        if element.VR == "SQ":
            items = list(element.value or [])
            # A coded item whose Coding Scheme Designator does not fit SH names a scheme no reader knows,
            # cut or emptied: the item goes (its sequence may be left empty).
            kept = [item for item in items if len(str(item.get("CodingSchemeDesignator", "") or "")) <= 16]
            if not kept and items:
                del ds[element.tag]
                continue
            if len(kept) != len(items):
                element.value = kept
            for item in kept:
                _fit_lengths(item)
            continue
        if element.keyword == "CodeValue" and isinstance(element.value, str) and len(element.value) > 16:
            # A code longer than SH allows goes in Long Code Value (UC), as PS3.3 8.8 has it written.
            ds.LongCodeValue = element.value
            del ds.CodeValue
            continue
        limit = _MAX_CHARS.get(element.VR)
        if limit is None or element.value is None or element.tag.is_private:
            continue
        values = _as_list(element.value)
        if element.VR != "AS" and all(_fits(str(item), element.VR, limit) for item in values):
            continue
        fitted = [_fitted(str(item), element.VR, element.keyword, limit) for item in values]
        kept = [item for item in fitted if item]
        element.value = (kept[0] if len(kept) == 1 else kept) if kept else None


def _fits(text: str, vr: str, limit: int) -> bool:
    groups = text.split("=") if vr == "PN" else [text]
    return all(len(group) <= limit for group in groups)


def _fitted(text: str, vr: str, keyword: str, limit: int) -> str:
    """``text`` made to fit ``vr``; empty when no shorter value means the same."""
    from pydicom.valuerep import format_number_as_ds

    if vr == "AS":
        return text if _AGE.fullmatch(text) else ""
    if _fits(text, vr, limit):
        return text
    if vr == "DS":
        try:
            return format_number_as_ds(float(text))
        except (ValueError, OverflowError):
            return ""
    if vr not in _CUT_VRS or keyword.endswith(_IDENTIFIER_ENDINGS):
        return ""
    if vr != "PN":
        return text[:limit].rstrip()
    return "=".join(_cut_name_group(group, limit) for group in text.split("="))


def _cut_name_group(group: str, limit: int) -> str:
    """A person name's component group in ``limit`` characters: its longest components are cut first,
    so a long family name still leaves the given name."""
    if len(group) <= limit:
        return group
    parts = group.rstrip("^").split("^")  # trailing empty components may go (PS3.5 6.2.1.1)
    if len(parts) > 5:
        # Not a name's five components (PS3.5 6.2.1.1) but a run of carets, as a source may send: carets
        # alone can outgrow the limit once every component is cut away, so the empty ones go first.
        parts = [part for part in parts if part] or [""]
    room = limit - 1 if len(parts) == 1 else limit  # a lone component keeps its caret (_mend_name)
    while (excess := len("^".join(parts)) - room) > 0:
        longest = max(range(len(parts)), key=lambda index: len(parts[index]))
        if not parts[longest]:  # only carets are left: no component to cut any more
            parts = [""]
            break
        parts[longest] = parts[longest][: max(len(parts[longest]) - excess, 0)].rstrip()
    text = "^".join(parts)
    return text if len(parts) > 1 or not text else f"{text}^"


def _mend_name(value: object) -> str:
    text = str(value)
    return text if not text or "^" in text or "=" in text else f"{text}^"


def _as_list(value: object) -> list[object]:
    from pydicom.multival import MultiValue

    return list(value) if isinstance(value, list | tuple | MultiValue) else [value]


def _repair_charset(header: Dataset) -> None:
    from highdicom.enum import SpecificCharacterSetValues
    from pydicom.charset import python_encoding

    if "SpecificCharacterSet" not in header:
        _declare_undeclared_charset(header)
        return
    terms = [str(term or "").strip() for term in _as_list(header.SpecificCharacterSet)]
    if not any(terms):
        # Present but empty, as some modalities write it: the default repertoire, as if absent (highdicom
        # refuses the empty value, so the outputs could not be built).
        del header.SpecificCharacterSet
        _declare_undeclared_charset(header)
        return
    if len(terms) > 1 and terms[0] == "":
        # An empty value 1 with code extensions (``\ISO 2022 IR 87``) means the default repertoire
        # (PS3.3 C.12.1.1.2); written out it is ISO 2022 IR 6.
        terms[0] = "ISO 2022 IR 6"
    if len(terms) > 1 and not all(term.startswith("ISO 2022 IR ") for term in terms):
        # Several sets without code extensions (``ISO_IR 100\ISO_IR 144``): not a valid combination
        # (highdicom refuses it, so the outputs could not be built); the values were decoded already, and
        # UTF-8 encodes any of them.
        header.SpecificCharacterSet = "ISO_IR 192"
        return
    if len(terms) == 1 and terms[0].startswith("ISO 2022 IR "):
        # One term with code extensions and nothing to switch to: its single-byte form ISO_IR n where the
        # standard defines one, else (IR 6, and the multi-byte 87, 149, 159, 58) UTF-8.
        single = terms[0].replace("ISO 2022 IR ", "ISO_IR ")
        terms[0] = single if single in _SINGLE_BYTE_CHARSETS else "ISO_IR 192"
    known = {item.value for item in SpecificCharacterSetValues}
    header.SpecificCharacterSet = terms if len(terms) > 1 else terms[0]
    if all(term in python_encoding and (term in known or term == "") for term in terms):
        return
    header.SpecificCharacterSet = "ISO_IR 192"


def _text_elements(ds: Dataset) -> list[DataElement]:
    """The text elements of ``ds`` and of its sequences' items, whose values are not ASCII."""
    found = []
    for element in ds:
        if element.VR == "SQ":
            for item in element.value or []:
                found += _text_elements(item)
        elif element.VR in _TEXT_VRS and not all(str(item).isascii() for item in _as_list(element.value)):
            found.append(element)
    return found


def _declare_undeclared_charset(header: Dataset) -> None:
    """Declare the character set of a header that declares none but holds non-ASCII text.

    pydicom decodes such text as Latin-1 (its default), so each value's Latin-1 bytes are the bytes of
    the source. Without a declaration, the outputs would carry those bytes in the default repertoire
    (ASCII), which validators refuse and viewers show garbled. UTF-8 is chosen when all of them decode
    as UTF-8 (Latin-1 accented text almost never does), then the values are decoded again as UTF-8.
    """
    elements = _text_elements(header)
    if not elements:
        return
    try:
        raw = [[str(item).encode("latin-1") for item in _as_list(e.value)] for e in elements]
    except UnicodeEncodeError:  # not decoded as Latin-1 after all: UTF-8 writes any text
        header.SpecificCharacterSet = "ISO_IR 192"
        return
    try:
        texts = [[item.decode("utf-8") for item in values] for values in raw]
        header.SpecificCharacterSet = "ISO_IR 192"
    except UnicodeDecodeError:
        texts = [[item.decode("latin-1") for item in values] for values in raw]
        header.SpecificCharacterSet = "ISO_IR 100"
    for element, values in zip(elements, texts, strict=True):
        # Plain strings: a PersonName would keep the bytes it was decoded from, under the old encoding.
        element.value = values[0] if len(values) == 1 else values


def check_findings(findings: Sequence[FindingOutput], source: Instance) -> None:
    """Refuse an empty list, duplicate codes, and boxes or heatmaps that do not fit the source."""
    if not findings:
        raise WriterError("An AI result needs at least one finding to be written as DICOM.")
    codes = [f.code for f in findings]
    if len(set(codes)) != len(codes):
        raise WriterError("Each finding code may appear only once in one result.")
    for finding in findings:
        finding.check_geometry(source.rows, source.columns)


def series_description(kind: str, algorithm: AlgorithmInfo) -> str:
    """SeriesDescription saying the series is AI-generated, by which model, and not for diagnosis alone.

    It is LO (64 characters): a long version first drops the manufacturer, then loses its tail.
    """
    head, tail = f"AI {kind}", NOT_FOR_DIAGNOSIS
    model = f"{algorithm.name} v{algorithm.version}"
    for candidate in (f"{algorithm.manufacturer} {model}", model):
        text = f"{head} ({candidate}) - {tail}"
        if len(text) <= _LO_MAX:
            return text
    room = _LO_MAX - len(f"{head} (..) - {tail}")
    return f"{head} ({model[: max(room, 1)]}..) - {tail}"[:_LO_MAX]


def equipment(algorithm: AlgorithmInfo, *, org_root: str, created_at: dt.datetime) -> ContributingEquipment:
    """The Contributing Equipment item naming the model version that made the object (after IHE AIR).

    Manufacturer's Model Name is the algorithm name, Software Versions the model version (then the
    dxassist package version), Device Serial Number the SHA-256 of the served weights, and Device UID
    the UID that changes with every model version.
    """
    from highdicom import ContributingEquipment

    item = ContributingEquipment(
        manufacturer=algorithm.manufacturer,
        purpose_of_reference=_coding.code(v.PROCESSING_EQUIPMENT),
        manufacturer_model_name=algorithm.name,
        software_versions=[algorithm.version, f"dxassist {algorithm.software_version}"[:_LO_MAX]],
        device_serial_number=algorithm.sha256[:_LO_MAX],
        contribution_datetime=_naive(created_at),  # restamped by set_times with the source's offset
        contribution_description=provenance(algorithm),
    )
    item.DeviceUID = device_uid(org_root, algorithm)
    return item


def provenance(algorithm: AlgorithmInfo) -> str:
    """One sentence naming the model version, its weights, and (when true) its synthetic training data."""
    text = (
        f"AI analysis by {algorithm.manufacturer} {algorithm.name} version {algorithm.version} "
        f"(model sha256 {algorithm.sha256}); not verified by a physician, not for diagnosis alone."
    )
    if algorithm.synthetic:
        text += " The model was trained on synthetic data only: demonstration use, not clinical use."
    return text


def stamp_equipment(ds: Dataset, algorithm: AlgorithmInfo, *, org_root: str) -> None:
    """General Equipment of the new object: the model version that made it, with its Device UID."""
    ds.Manufacturer = algorithm.manufacturer
    ds.ManufacturerModelName = algorithm.name
    ds.SoftwareVersions = [algorithm.version, f"dxassist {algorithm.software_version}"[:_LO_MAX]]
    ds.DeviceSerialNumber = algorithm.sha256[:_LO_MAX]
    ds.DeviceUID = device_uid(org_root, algorithm)


def _naive(created_at: dt.datetime, offset: str | None = None) -> dt.datetime:
    """Wall-clock time of ``created_at`` at a DICOM offset (``+HHMM``), else in UTC; naive is kept."""
    if created_at.tzinfo is None:
        return created_at
    zone = dt.UTC
    minutes = _offset_minutes(offset)
    if minutes is not None:
        zone = dt.timezone(dt.timedelta(minutes=minutes))
    return created_at.astimezone(zone).replace(tzinfo=None)


def _offset_minutes(offset: str | None) -> int | None:
    """A DICOM Timezone Offset From UTC (``+HHMM``) in minutes; None unless it is a real offset.

    The sender's value is checked like any number that enters: ``+9999`` or ``+²³⁴⁵`` (which
    ``str.isdigit`` accepts) would make ``datetime.timezone`` raise and the build fail.
    """
    if offset is None or len(offset) != 5 or offset[0] not in "+-" or not offset[1:].isascii():
        return None
    if not offset[1:].isdigit():
        return None
    hours, minutes = int(offset[1:3]), int(offset[3:])
    if hours > 14 or minutes >= 60:
        return None
    return (hours * 60 + minutes) * (1 if offset[0] == "+" else -1)


def set_times(ds: Dataset, created_at: dt.datetime, source: Dataset) -> None:
    """Stamp every date and time highdicom took from the clock with the result's creation time.

    Building the same result twice must give byte-identical objects, so nothing may come from
    ``now()``. Dates and times copied from the source (study date and time) stay local times of the
    site; an aware ``created_at`` is written as local time with its Timezone Offset From UTC
    (0008,0201): the source's offset when it has a plausible one, else the server's local time zone
    (``TZ``; ``+0000`` on a server that runs in UTC). A naive ``created_at`` is written as it is,
    without an offset.
    """
    from pydicom.valuerep import DA, DT, TM

    offset = str(source.get("TimezoneOffsetFromUTC") or "") or None
    if _offset_minutes(offset) is None:
        offset = _local_offset(created_at)
    moment = _naive(created_at, offset)
    date, time = DA(moment.date()), TM(moment.time())
    for keyword_date, keyword_time in (
        ("InstanceCreationDate", "InstanceCreationTime"),
        ("ContentDate", "ContentTime"),
        ("SeriesDate", "SeriesTime"),
        ("DateOfSecondaryCapture", "TimeOfSecondaryCapture"),
    ):
        if keyword_date in ds or keyword_date in ("SeriesDate", "InstanceCreationDate"):
            setattr(ds, keyword_date, date)
            setattr(ds, keyword_time, time)
    processing = v.PROCESSING_EQUIPMENT.code
    for item in ds.get("ContributingEquipmentSequence", []):
        purposes = [c.CodeValue for c in item.get("PurposeOfReferenceCodeSequence", [])]
        # Only the processing items (ours and highdicom's) are stamped now; the acquisition item
        # carries the source's own acquisition time.
        if processing in purposes and "ContributionDateTime" in item:
            item.ContributionDateTime = DT(moment)
    if _offset_minutes(offset) is not None:  # an implausible offset is not copied into our objects
        ds.TimezoneOffsetFromUTC = offset


def _local_offset(created_at: dt.datetime) -> str | None:
    """The offset (``+HHMM``) of the server's local time zone at ``created_at``; None for a naive time.

    The process's time zone (``TZ``) stands for the site's: a PACS reads times without an offset as its
    local time, so a UTC wall-clock time written bare would place the AI series hours off the study.
    """
    if created_at.tzinfo is None:
        return None
    delta = created_at.astimezone().utcoffset() or dt.timedelta(0)
    minutes = int(delta.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
