"""A DICOMweb server as a batch source: studies and instances listed by QIDO-RS pages, each instance
retrieved alone by WADO-RS with its body read up to the instance size limit.

Every answer of the server is bounded before it is held: a QIDO-RS page's body by :data:`MAX_PAGE_BYTES`,
the studies of a run by :data:`MAX_STUDIES`, the instances of a study by ``DXASSIST_MAX_INSTANCES`` (one
more is asked for, to know a study is over it), and an instance's body by ``DXASSIST_MAX_INSTANCE_BYTES``
while it arrives. A server that ignores the paging parameters stops the listing with a message saying
so instead of looping for ever or filling memory.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from inference.batch._errors import SourceError
from inference.batch._sources import Scan, StudyRef
from inference.dicom import DicomTooLarge, DicomUnsupportedMedia, LazyInstances

# Answers per QIDO-RS page (``limit``); a page's body is read up to MAX_PAGE_BYTES (an answer is < 1 KiB).
PAGE_SIZE = 500
MAX_PAGE_BYTES = 64 * 2**20
# The studies one run lists (their UIDs stay in the driver's memory for the run).
MAX_STUDIES = 2_000_000
# Room for the multipart framing (boundaries, part headers) around one instance in a WADO-RS answer.
ENVELOPE_BYTES = 64 * 1024

_STUDY_UID: Final = "0020000D"
_SERIES_UID: Final = "0020000E"
_SOP_UID: Final = "00080018"
_UID: Final = re.compile(r"[0-9]+(\.[0-9]+)*")
_ACCEPT_QIDO: Final = "application/dicom+json, application/json"
# What dicomweb-client asks by default: the server's default transfer syntax (Explicit VR Little Endian).
_ACCEPT_WADO: Final = 'multipart/related; type="application/dicom"'
_TIMEOUT: Final = (10, 120)
# However slowly an answer's body comes (each read within _TIMEOUT), it is abandoned after this long.
_BODY_SECONDS: float = 600.0


def _uid(answer: object, tag: str) -> str | None:
    """The UID of ``tag`` in one DICOM JSON answer; None when absent or not a valid UID."""
    attribute = answer.get(tag) if isinstance(answer, dict) else None
    values = attribute.get("Value") if isinstance(attribute, dict) else None
    value = values[0] if isinstance(values, list) and values else None
    # A UID is checked before it goes into a URL path: a server's answer is not trusted.
    return value if isinstance(value, str) and len(value) <= 64 and _UID.fullmatch(value) else None


@dataclass(frozen=True)
class _Query:
    """One kind of QIDO-RS query, as its messages name it."""

    name: str  # "the study query"
    items: str  # "studies"
    stopped: str  # what the listing's stop means for the run
    advice: str = ""


_STUDIES = _Query("the study query", "studies", "the scan stopped", "; narrow the query")
_INSTANCES = _Query("a study's instance query", "instances of a study", "the study was not read")


class DicomWebSource:
    """The studies a QIDO-RS query answers, retrieved instance by instance with WADO-RS.

    Args:
        url: A QIDO-RS study query, e.g. ``http://pacs/dicom-web/studies?StudyDate=20260101-20260131``
            (the base URL is what precedes ``/studies``; the query parameters are the search filters).
        page_size: Answers asked for per QIDO-RS page (``limit``), for studies and for instances.
    """

    def __init__(self, url: str, *, page_size: int = PAGE_SIZE) -> None:
        if page_size < 1:
            raise SourceError(f"A QIDO-RS page holds at least one answer, not {page_size}.")
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
        # A server certified by the hospital's own authority: trusted through that authority's PEM file.
        authority = os.environ.get("DXASSIST_BATCH_DICOMWEB_CAFILE")
        if authority:
            if not os.path.isfile(authority):
                raise SourceError("DXASSIST_BATCH_DICOMWEB_CAFILE names no readable file.")
            session.verify = authority
            # Else REQUESTS_CA_BUNDLE (set by many distributions) would replace it for every request.
            session.trust_env = False
        # Uncompressed answers only: what is read is then what is counted against the caps.
        session.headers["Accept-Encoding"] = "identity"
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        elif username:
            session.auth = HTTPBasicAuth(username, password)
            session.trust_env = False
        return session

    # -- QIDO-RS ------------------------------------------------------------------------------------

    def scan(self) -> Scan:
        """Page through the QIDO-RS answer (``limit``/``offset``) and list the studies.

        A page shorter than asked is the last. Two misbehaviours of a server would otherwise loop for
        ever or fill the driver's memory, and each stops the scan with its own message: a full page that
        brings no study not seen already (the server ignores ``offset``), and a page longer than asked
        (it ignores ``limit``). So does a short page that comes with the server's warning that more
        results exist (its pages are smaller than asked), which would otherwise end the list early. Each
        page's body is read up to a fixed size, and the studies up to :data:`MAX_STUDIES`. An answer
        without a valid StudyInstanceUID is left out.

        Raises:
            SourceError: The server cannot be reached, refuses the query, or pages wrongly.
        """
        from requests import RequestException

        found: set[str] = set()
        params = {**self.filters, "includefield": _STUDY_UID}
        try:
            with self._session() as session:
                for offset, answers in self._pages(session, "/studies", params, self.page_size, _STUDIES):
                    before = len(found)
                    found.update(uid for uid in (_uid(a, _STUDY_UID) for a in answers) if uid)
                    if len(found) > MAX_STUDIES:
                        raise SourceError(
                            f"The study query at {self.base} answers more than {MAX_STUDIES} studies: "
                            "narrow it (e.g. by StudyDate) and score the archive in parts."
                        )
                    self._check_progress(answers, self.page_size, before, len(found), offset, _STUDIES)
        except RequestException as e:
            raise SourceError(f"The DICOMweb server at {self.base} did not answer the study query.") from e
        return Scan(studies=tuple(StudyRef(uid) for uid in sorted(found)))

    def _instances(self, session: Any, ref: StudyRef, max_instances: int) -> dict[str, str]:
        """The study's instances (SOPInstanceUID -> SeriesInstanceUID) by paged QIDO-RS instance queries.

        Raises:
            DicomRejected: ``too_many_instances``: the server lists more than ``max_instances``.
            SourceError: The server refuses or pages wrongly, or names an instance without valid UIDs.
            RequestException: The server did not answer.
        """
        # One more than the limit is asked for: a study over it is known from its first page.
        page = min(self.page_size, max_instances + 1)
        path = f"/studies/{quote(ref.study_instance_uid, safe='')}/instances"
        params = {"includefield": [_SERIES_UID, _SOP_UID]}
        found: dict[str, str] = {}
        for offset, answers in self._pages(session, path, params, page, _INSTANCES):
            before = len(found)
            for answer in answers:
                sop, series = _uid(answer, _SOP_UID), _uid(answer, _SERIES_UID)
                if sop is None or series is None:
                    raise SourceError(
                        f"The DICOMweb server at {self.base} listed an instance without a valid "
                        "SOPInstanceUID and SeriesInstanceUID: the study was not read."
                    )
                found.setdefault(sop, series)
            if len(found) > max_instances:
                raise DicomTooLarge(
                    "too_many_instances",
                    f"The study has more than {max_instances} instances on the DICOMweb server, the limit "
                    "per study (DXASSIST_MAX_INSTANCES): it was not retrieved.",
                )
            self._check_progress(answers, page, before, len(found), offset, _INSTANCES)
        return found

    def _check_progress(
        self, answers: list[Any], page: int, before: int, after: int, offset: int, query: _Query
    ) -> None:
        # A full page that adds nothing: the server answers the same page whatever the offset.
        if len(answers) == page and after == before:
            raise SourceError(
                f"The DICOMweb server at {self.base} answered the same {query.items} again at offset "
                f"{offset} (it ignores the QIDO-RS offset): {query.stopped} rather than loop."
            )

    def _pages(
        self, session: Any, path: str, params: dict[str, Any], page: int, query: _Query
    ) -> Iterator[tuple[int, list[Any]]]:
        """``(offset, answers)`` of each page until a short one (the last).

        Raises:
            SourceError: A page longer than asked (the server ignores ``limit``), or see :meth:`_page`.
        """
        offset = 0
        while True:
            answers, truncated = self._page(
                session, path, {**params, "offset": str(offset), "limit": str(page)}, query
            )
            if len(answers) > page:
                raise SourceError(
                    f"The DICOMweb server at {self.base} answered {len(answers)} {query.items} to a page of "
                    f"{page} (it ignores the QIDO-RS limit): {query.stopped}{query.advice}."
                )
            if truncated and len(answers) < page:
                # Taken for the last page, it would end the list early without a word.
                raise SourceError(
                    f"The DICOMweb server at {self.base} answered {len(answers)} {query.items} to a page of "
                    f"{page} and warns that more results exist (its pages are smaller): {query.stopped}; "
                    f"set DXASSIST_BATCH_QIDO_PAGE_SIZE to {max(1, len(answers))} or less."
                )
            yield offset, answers
            if len(answers) < page:
                return
            offset += page

    def _page(self, session: Any, path: str, params: dict[str, Any], query: _Query) -> tuple[list[Any], bool]:
        """One QIDO-RS page, its body read up to :data:`MAX_PAGE_BYTES`, and whether the server warns
        that it answered fewer results than exist (PS3.18 "Query Result Limits": a ``Warning: 299``
        saying additional results can be requested).

        Raises:
            SourceError: The server refused the query, or answered too much or not JSON.
            RequestException: The server did not answer.
        """
        with session.get(
            f"{self.base}{path}",
            params=params,
            headers={"Accept": _ACCEPT_QIDO},
            stream=True,
            timeout=_TIMEOUT,
        ) as response:
            if response.status_code == 204:
                return [], False
            if response.status_code >= 400:
                raise SourceError(
                    f"The DICOMweb server at {self.base} did not answer {query.name} "
                    f"(HTTP {response.status_code})."
                )
            warning = response.headers.get("Warning", "").lower()
            truncated = "299" in warning and "additional results" in warning
            body = _read_capped(response, MAX_PAGE_BYTES, self.base)
            if body is None:
                raise SourceError(
                    f"The DICOMweb server at {self.base} answered more than {MAX_PAGE_BYTES // 2**20} MiB "
                    f"to one page of {query.name}: {query.stopped}."
                )
        if not body.strip():
            return [], truncated
        try:
            answers = json.loads(bytes(body))
        except ValueError as e:
            raise SourceError(
                f"The DICOMweb server at {self.base} answered {query.name} with no JSON."
            ) from e
        if not isinstance(answers, list):
            raise SourceError(f"The DICOMweb server at {self.base} answered {query.name} with no list.")
        return answers, truncated

    def _listed_instances(self, ref: StudyRef, max_instances: int) -> dict[str, str]:
        """``{SOPInstanceUID: SeriesInstanceUID}`` of the study, by paged QIDO-RS instance queries."""
        from requests import RequestException

        try:
            with self._session() as session:
                return self._instances(session, ref, max_instances)
        except RequestException as e:
            raise SourceError(
                f"The DICOMweb server at {self.base} did not answer a study's instance query."
            ) from e

    def instance_uids(self, ref: StudyRef, *, max_instances: int) -> list[str] | None:
        """The study's SOPInstanceUIDs by QIDO-RS instance queries (nothing retrieved); None when none.

        Raises:
            DicomRejected: ``too_many_instances``.
            SourceError: The server did not answer, or answered wrongly.
        """
        found = self._listed_instances(ref, max_instances)
        return list(found) or None

    # -- WADO-RS ------------------------------------------------------------------------------------

    def read(self, ref: StudyRef, *, max_instance_bytes: int, max_instances: int) -> Sequence[bytes]:
        """The study's instances as Part-10 bytes, each retrieved (WADO-RS) when it is asked for.

        The instances are listed now (QIDO-RS, as :meth:`instance_uids`); each is then retrieved alone,
        its body read up to ``max_instance_bytes``, so one study never holds more than one undecoded
        instance in memory and an oversized one is never read whole.

        Raises:
            DicomRejected: ``too_many_instances``; later, on access, ``instance_too_large``.
            SourceError: The server did not answer, or answered wrongly (also later, on access).
        """
        found = self._listed_instances(ref, max_instances)
        urls = [
            f"{self.base}/studies/{quote(ref.study_instance_uid, safe='')}/series/{quote(series, safe='')}"
            f"/instances/{quote(sop, safe='')}"
            for sop, series in found.items()
        ]
        return LazyInstances(urls, functools.partial(self.retrieve, max_bytes=max_instance_bytes))

    def retrieve(self, url: str, *, max_bytes: int) -> bytes:
        """One instance (WADO-RS ``.../instances/UID``) as Part-10 bytes, read up to ``max_bytes``.

        Raises:
            DicomTooLarge: ``instance_too_large``: the server declares or sends more (the rest unread).
            DicomRejected: ``not_dicom``: the part is not DICOM.
            SourceError: The server did not answer or refused, or the answer is not one DICOM part.
        """
        from requests import RequestException

        try:
            with (
                self._session() as session,
                session.get(url, headers={"Accept": _ACCEPT_WADO}, stream=True, timeout=_TIMEOUT) as response,
            ):
                if response.status_code >= 400:
                    raise SourceError(
                        f"The DICOMweb server at {self.base} did not retrieve an instance of a study "
                        f"(HTTP {response.status_code})."
                    )
                cap = max_bytes + ENVELOPE_BYTES
                declared = response.headers.get("Content-Length", "")
                body = (
                    None
                    if declared.isdigit() and int(declared) > cap
                    else _read_capped(response, cap, self.base)
                )
                if body is None:
                    raise _too_large(max_bytes)
                content_type = response.headers.get("Content-Type", "")
        except RequestException as e:
            raise SourceError(
                f"The DICOMweb server at {self.base} did not send an instance of a study."
            ) from e
        part = self._only_part(body, content_type)
        if len(part) > max_bytes:
            raise _too_large(max_bytes)
        return _part10(part, max_bytes)

    def _only_part(self, body: bytearray, content_type: str) -> bytearray:
        """The one DICOM part of a WADO-RS answer (cut out of ``body`` in place)."""
        media_type, *options = (item.strip() for item in content_type.split(";"))
        if media_type.lower() == "application/dicom":
            return body  # not multipart: some servers answer a single instance so (CP 2040)
        if media_type.lower() != "multipart/related":
            raise SourceError(
                f"The DICOMweb server at {self.base} answered an instance retrieval with "
                f"{media_type[:64] or 'no media type'}; multipart/related is expected."
            )
        pairs = (option.partition("=") for option in options)
        boundary = next((value.strip('"') for key, _, value in pairs if key.lower() == "boundary"), "")
        if not boundary:
            return body  # no boundary: the body is the one part (as dicomweb-client reads it)
        marker = b"--" + boundary.encode("latin-1")
        start = body.find(marker)
        head_end = body.find(b"\r\n\r\n", start + len(marker)) if start >= 0 else -1
        end = body.find(b"\r\n" + marker, head_end + 4) if head_end >= 0 else -1
        if end < 0:
            raise SourceError(
                f"The DICOMweb server at {self.base} answered an instance retrieval with a broken multipart "
                "body (no closing boundary)."
            )
        if body[end + 2 + len(marker) : end + 4 + len(marker)] != b"--":
            raise SourceError(
                f"The DICOMweb server at {self.base} answered one instance's retrieval with more than "
                "one part."
            )
        del body[end:]
        del body[: head_end + 4]
        return body


def _read_capped(response: Any, limit: int, base: str) -> bytearray | None:
    """The response's body, or None as soon as it passes ``limit`` bytes (the rest is never read).

    The bytes counted are those on the wire: the session asks for uncompressed answers and an answer
    compressed all the same is refused before it is read (64 KiB of gzip can inflate to 64 MiB). A body
    still arriving after :data:`_BODY_SECONDS` (a server trickling bytes under the read timeout) is
    abandoned as unanswered.

    Raises:
        SourceError: The answer is compressed.
        requests.exceptions.ReadTimeout: The body took longer than :data:`_BODY_SECONDS`.
    """
    from requests.exceptions import ReadTimeout

    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise SourceError(
            f"The DICOMweb server at {base} answered with Content-Encoding {encoding[:32]!r}; dxassist asks "
            "for uncompressed answers (Accept-Encoding: identity) so that their size can be bounded."
        )
    deadline = time.monotonic() + _BODY_SECONDS
    body = bytearray()
    while True:
        # read1: whatever has arrived (up to 64 KiB), so a trickle cannot hold one read for hours.
        chunk = response.raw.read1(65536, decode_content=False)
        if not chunk:
            return body
        body += chunk
        if len(body) > limit:
            return None
        if time.monotonic() > deadline:
            raise ReadTimeout(f"An answer's body took longer than {_BODY_SECONDS:.0f} s.")


def _too_large(max_bytes: int) -> DicomTooLarge:
    return DicomTooLarge(
        "instance_too_large",
        f"An instance of the study is larger than the limit of {max_bytes} bytes "
        "(DXASSIST_MAX_INSTANCE_BYTES); it was not retrieved whole.",
    )


def _part10(part: bytearray, max_bytes: int) -> bytes:
    """The part as a Part-10 file: as sent when it is one, else written as one by pydicom."""
    if part[128:132] == b"DICM":
        return bytes(part)
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(BytesIO(part))
        out = BytesIO()
        ds.save_as(out, enforce_file_format=True)
    except (InvalidDicomError, ValueError, TypeError, KeyError, AttributeError, EOFError) as e:
        raise DicomUnsupportedMedia(
            "not_dicom", "An instance retrieved from the DICOMweb server is not DICOM."
        ) from e
    if out.tell() > max_bytes:
        raise _too_large(max_bytes)
    return out.getvalue()
