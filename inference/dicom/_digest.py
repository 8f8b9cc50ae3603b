"""The SHA-256 of a Pixel Data value, computed on a thread of its own (hashlib lets go of the GIL on large
buffers), and the ``Instance.pixel_digest`` field that may hold one still under way."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Final, overload

from inference.errors import InferenceError

if TYPE_CHECKING:
    from ._model import Instance

_CHUNK: Final = 16 * 1024 * 1024
"""Bytes hashed between two looks at whether the digest was abandoned (a refused study's stops soon).
Large enough that a film is hashed in one call: each call ends waiting for the GIL, which a busy server
hands over only every switch interval (5 ms), and 1 MiB chunks made an 8 MiB digest five times slower
beside a thread running Python."""


class DigestAbandoned(InferenceError, RuntimeError):
    """The digest was abandoned before it was done (the file or its study was refused)."""


class PixelDigest:
    """The hex SHA-256 of ``view``, under way on a daemon thread from construction on.

    The thread holds ``view`` (a view of the received file, never a copy) until it is done or abandoned,
    then lets go of it.
    """

    def __init__(self, view: memoryview) -> None:
        self._future: Future[str] = Future()
        self._future.set_running_or_notify_cancel()  # an awaiting request that goes away cannot cancel it
        self._stop = threading.Event()
        threading.Thread(target=self._run, args=(view,), name="dxassist-digest", daemon=True).start()

    def _run(self, view: memoryview) -> None:
        try:
            sha = hashlib.sha256()
            for begin in range(0, len(view), _CHUNK):
                if self._stop.is_set():
                    self._future.set_exception(DigestAbandoned("The pixel digest was abandoned."))
                    return
                sha.update(view[begin : begin + _CHUNK])
            self._future.set_result(sha.hexdigest())
        except BaseException as e:  # handed to whoever asks for the result
            self._future.set_exception(e)
        finally:
            del view

    def abandon(self) -> None:
        """Stop hashing at the next chunk (nobody will ask for the result): the thread ends and lets go of
        the file's bytes."""
        self._stop.set()

    def result(self) -> str:
        """The hex digest (waits for the thread).

        Raises:
            DigestAbandoned: :meth:`abandon` stopped it first.
        """
        return self._future.result()

    async def wait(self) -> None:
        """Wait for the thread without holding up the event loop."""
        await asyncio.wrap_future(self._future)

    @property
    def done(self) -> bool:
        """True once the digest is known (or failed)."""
        return self._future.done()


class DigestField:
    """``Instance.pixel_digest``: set to a hex string, or to a :class:`PixelDigest` still under way, read
    as the hex string (waiting for the thread the first time, when it is not done yet)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}"

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> str: ...
    @overload
    def __get__(self, instance: Instance, owner: type | None = None) -> str: ...
    def __get__(self, instance: Instance | None, owner: type | None = None) -> str:
        if instance is None:
            return ""  # the dataclass field's default
        value = instance.__dict__.get(self._slot, "")
        if isinstance(value, PixelDigest):
            value = value.result()
            instance.__dict__[self._slot] = value  # the thread's result, kept: the digest is done
        return str(value)

    def __set__(self, instance: Instance, value: str | PixelDigest) -> None:
        instance.__dict__[self._slot] = value

    @staticmethod
    def pending(instance: Instance) -> PixelDigest | None:
        """The digest still under way for ``instance``, if any (without waiting for it)."""
        value = instance.__dict__.get("_pixel_digest")
        return value if isinstance(value, PixelDigest) else None
