"""Where the studies of a batch come from: a folder tree of DICOM files, or a DICOMweb server (QIDO-RS).

A source is scanned once by the driver (headers only: the study each file belongs to) and read again,
study by study, on the Dask workers. Both must see the same archive: a shared file system mounted at the
same path, or the same DICOMweb server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, overload
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from inference.batch._errors import SourceError
from inference.dicom import DicomTooLarge

# Studies per QIDO-RS page; a page's body is read up to MAX_PAGE_BYTES (a study's answer is about 1 KiB).
PAGE_SIZE = 500
MAX_PAGE_BYTES = 64 * 2**20
# The studies one run lists (their UIDs and paths stay in the driver's memory for the run).
MAX_STUDIES = 2_000_000


@dataclass(frozen=True)
class StudyRef:
    """One study of the archive, as a worker needs it to read the study again.

    Attributes:
        study_instance_uid: The StudyInstanceUID (a UID, not patient data; never printed).
        paths: Its files, for a folder source; empty for DICOMweb.
    """

    study_instance_uid: str
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scan:
    """What a scan of the source found.

    Attributes:
        studies: The studies, in a stable order (sorted by StudyInstanceUID).
        unreadable: Files that are not DICOM Part-10 or name no StudyInstanceUID (never analysed).
    """

    studies: tuple[StudyRef, ...]
    unreadable: int = 0


class _Files(Sequence[bytes]):
    """A study's files as a sequence of their bytes, each read when asked for and refused when too large."""

    def __init__(self, paths: Sequence[str], max_bytes: int) -> None:
        self._paths = list(paths)
        self._max = max_bytes

    def __len__(self) -> int:
        return len(self._paths)

    def _read(self, path: str) -> bytes:
        # Checked before reading, so one huge file never sits in a worker's memory.
        if os.stat(path).st_size > self._max:
            raise DicomTooLarge("instance_too_large")
        return Path(path).read_bytes()

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self._read(path) for path in self._paths[index]]
        return self._read(self._paths[index])


class FolderSource:
    """A folder tree of DICOM Part-10 files (any names, any depth), grouped by StudyInstanceUID.

    Args:
        root: The folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def describe(self) -> str:
        """The source as named in the summary (a folder path: no patient data)."""
        return str(self.root)

    def scan(self) -> Scan:
        """Read every file's header (no pixel data) and group the files by study.

        Raises:
            SourceError: The folder does not exist.
        """
        import pydicom
        from pydicom.errors import InvalidDicomError

        if not self.root.is_dir():
            raise SourceError(f"The archive folder {self.root} does not exist or is not a folder.")
        groups: dict[str, list[str]] = {}
        unreadable = 0
        for path in self._files():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
                uid = str(ds.get("StudyInstanceUID", "") or "").strip()
            except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
                uid = ""
            if not uid:
                unreadable += 1
                continue
            groups.setdefault(uid, []).append(str(path))
        studies = tuple(StudyRef(uid, tuple(sorted(paths))) for uid, paths in sorted(groups.items()))
        return Scan(studies=studies, unreadable=unreadable)

    def _files(self) -> Iterator[Path]:
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()  # a stable order, so two scans of one archive list the studies alike
            for name in sorted(files):
                if not name.startswith("."):
                    yield Path(folder) / name

    def instance_uids(self, ref: StudyRef) -> list[str] | None:
        """The SOPInstanceUIDs of the study's files (headers only); None when a file names none."""
        import pydicom

        uids = []
        for path in ref.paths:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            except Exception:  # noqa: BLE001 - the analysis refuses the file properly, with its code
                return None
            uid = str(ds.get("SOPInstanceUID", "") or "")
            if not uid:
                return None
            uids.append(uid)
        return uids

    def read(self, ref: StudyRef, *, max_instance_bytes: int) -> Sequence[bytes]:
        """The study's files, read lazily (as :func:`inference.dicom.read_study` asks for them)."""
        return _Files(ref.paths, max_instance_bytes)


class DicomWebSource:
    """The studies a QIDO-RS query answers, retrieved with WADO-RS.

    Args:
        url: A QIDO-RS study query, e.g. ``http://pacs/dicom-web/studies?StudyDate=20260101-20260131``
            (the base URL is what precedes ``/studies``; the query parameters are the search filters).
        page_size: Studies asked for per QIDO-RS page (``limit``).
    """

    def __init__(self, url: str, *, page_size: int = PAGE_SIZE) -> None:
        self.page_size = page_size
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.path.rstrip("/").endswith("/studies"):
            raise SourceError(
                "A DICOMweb source is a QIDO-RS study query: http(s)://HOST/PATH/studies[?FILTERS]."
            )
        self.base = urlunsplit(
            (parts.scheme, parts.netloc, parts.path.rstrip("/")[: -len("/studies")], "", "")
        )
        self.filters = dict(parse_qsl(parts.query))

    def describe(self) -> str:
        """The source as named in the summary: the server's base URL (filters may hold patient data)."""
        return self.base

    def _session(self) -> Any:
        try:
            from requests import Session
            from requests.auth import HTTPBasicAuth
        except ImportError as e:
            raise SourceError(
                "Reading a DICOMweb source needs the 'batch' extra: pip install 'dxassist[batch]'."
            ) from e
        # Credentials come from the environment of the process that asks (driver or worker), never from
        # the command line (visible in `ps`) nor through the Dask scheduler.
        username = os.environ.get("DXASSIST_BATCH_DICOMWEB_USERNAME")
        password = os.environ.get("DXASSIST_BATCH_DICOMWEB_PASSWORD", "")
        token = os.environ.get("DXASSIST_BATCH_DICOMWEB_TOKEN")
        session = Session()
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        elif username:
            session.auth = HTTPBasicAuth(username, password)
            session.trust_env = False
        return session

    def _client(self) -> object:
        try:
            from dicomweb_client.api import DICOMwebClient
        except ImportError as e:
            raise SourceError(
                "Reading a DICOMweb source needs the 'batch' extra: pip install 'dxassist[batch]'."
            ) from e
        return DICOMwebClient(url=self.base, session=self._session())

    def scan(self) -> Scan:
        """Page through the QIDO-RS answer (``limit``/``offset``) and list the studies.

        A page shorter than asked is the last. Two misbehaviours of a server would otherwise loop for
        ever or fill the driver's memory, and each stops the scan with its own message: a full page that
        brings no study not seen already (the server ignores ``offset``), and a page longer than asked
        (it ignores ``limit``). Each page's body is read up to a fixed size, and the studies up to
        :data:`MAX_STUDIES`.

        Raises:
            SourceError: The server cannot be reached, refuses the query, or pages wrongly.
        """
        from requests import RequestException

        session = self._session()
        found: set[str] = set()
        offset, page = 0, self.page_size
        try:
            while True:
                answers = self._page(session, offset=offset, limit=page)
                if len(answers) > page:
                    raise SourceError(
                        f"The DICOMweb server at {self.base} answered {len(answers)} studies to a page of "
                        f"{page} (it ignores the QIDO-RS limit): the scan stopped; narrow the query."
                    )
                before = len(found)
                for answer in answers:
                    value = answer.get("0020000D", {}).get("Value") if isinstance(answer, dict) else None
                    if value:
                        found.add(str(value[0]))
                if len(found) > MAX_STUDIES:
                    raise SourceError(
                        f"The study query at {self.base} answers more than {MAX_STUDIES} studies: "
                        "narrow it (e.g. by StudyDate) and score the archive in parts."
                    )
                if len(answers) < page:
                    break
                if len(found) == before:
                    raise SourceError(
                        f"The DICOMweb server at {self.base} answered the same studies again at offset "
                        f"{offset} (it ignores the QIDO-RS offset): the scan stopped rather than loop."
                    )
                offset += page
        except RequestException as e:
            raise SourceError(f"The DICOMweb server at {self.base} did not answer the study query.") from e
        return Scan(studies=tuple(StudyRef(uid) for uid in sorted(found)))

    def _page(self, session: Any, *, offset: int, limit: int) -> list[Any]:
        """One QIDO-RS page, its body read up to :data:`MAX_PAGE_BYTES`.

        Raises:
            SourceError: The server refused the query, or answered too much or not JSON.
            RequestException: The server did not answer.
        """
        params = {**self.filters, "includefield": "0020000D", "offset": str(offset), "limit": str(limit)}
        with session.get(
            f"{self.base}/studies",
            params=params,
            headers={"Accept": "application/dicom+json, application/json"},
            stream=True,
            timeout=(10, 120),
        ) as response:
            if response.status_code == 204:
                return []
            if response.status_code >= 400:
                raise SourceError(
                    f"The DICOMweb server at {self.base} did not answer the study query "
                    f"(HTTP {response.status_code})."
                )
            body = bytearray()
            for chunk in response.iter_content(chunk_size=65536):
                body += chunk
                if len(body) > MAX_PAGE_BYTES:
                    raise SourceError(
                        f"The DICOMweb server at {self.base} answered more than "
                        f"{MAX_PAGE_BYTES // 2**20} MiB to one page of the study query: the scan stopped."
                    )
        if not body.strip():
            return []
        try:
            answers = json.loads(bytes(body))
        except ValueError as e:
            raise SourceError(
                f"The DICOMweb server at {self.base} answered the study query with no JSON."
            ) from e
        if not isinstance(answers, list):
            raise SourceError(f"The DICOMweb server at {self.base} answered the study query with no list.")
        return answers

    def instance_uids(self, ref: StudyRef) -> list[str] | None:
        """The study's SOPInstanceUIDs by a QIDO-RS instance query (nothing retrieved)."""
        from requests import RequestException

        client = self._client()
        try:
            answers = client.search_for_instances(  # type: ignore[attr-defined]
                study_instance_uid=ref.study_instance_uid, fields=["SOPInstanceUID"]
            )
        except (RequestException, ValueError) as e:
            raise SourceError(f"The DICOMweb server at {self.base} did not answer an instance query.") from e
        uids = [str((a.get("00080018", {}).get("Value") or [""])[0]) for a in answers]
        return uids if uids and all(uids) else None

    def read(self, ref: StudyRef, *, max_instance_bytes: int) -> Sequence[bytes]:
        """Retrieve the study's instances (WADO-RS) as Part-10 bytes."""
        from requests import RequestException

        client = self._client()
        try:
            datasets = client.retrieve_study(ref.study_instance_uid)  # type: ignore[attr-defined]
        except (RequestException, ValueError) as e:
            raise SourceError(
                f"A study could not be retrieved from the DICOMweb server at {self.base}."
            ) from e
        blobs = []
        for ds in datasets:
            out = BytesIO()
            ds.save_as(out, enforce_file_format=True)
            if out.tell() > max_instance_bytes:
                raise DicomTooLarge("instance_too_large")
            blobs.append(out.getvalue())
        return blobs


def open_source(text: str) -> FolderSource | DicomWebSource:
    """The source named on the command line: an ``http(s)://`` QIDO-RS URL, else a folder."""
    if text.startswith(("http://", "https://")):
        return DicomWebSource(text)
    return FolderSource(Path(text))
