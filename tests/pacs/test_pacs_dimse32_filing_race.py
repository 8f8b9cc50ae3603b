"""A late instance reaching a study's folder while the listener clears it after filing the study.

Once a study is filed, the analysis loop removes the certificates that delivered it (``tls-peers.txt``)
and the folder (``_identity.forget``), while association threads may be moving a late instance of the same
study into that folder and noting its certificate. Two interleavings lost something:

- the late instance moved in after ``forget`` had found the folder empty, but before it removed the file:
  its certificate, already listed by the filed instances, was not added again, and the file went, so the
  audit entry of the late instance's filing named no certificate;
- the folder removed between its making and the move of the late instance into it: the instance was
  refused with 0xA700 ``storage_unavailable``.

Each thread is held at a chosen call (a profiling hook stops it there until the other has done its part),
so each interleaving is run, not hoped for; the waits are liveness bounds only.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from _pacs_dicom import chest_cr, new_uid

from inference.dicom import Limits, StudyCollector
from inference.dimse import _nodes, _receive
from inference.dimse._identity import delivered_by, forget

_REMOVALS = (os.unlink, os.rename, os.replace, os.rmdir)
_NODE_TITLE = "STORESCU"
_CERTIFICATE = "127.0.0.1 certificate sha256:" + "ab" * 32 + " CN=pacs.example DNS=pacs.example"


class _HoldAt:
    """Stops the thread it runs a function in at its first call of one of ``functions`` (before the call,
    or just after it with ``after``), until :meth:`go` is called."""

    def __init__(self, functions: tuple[Callable[..., Any], ...], *, after: bool = False) -> None:
        self._functions = functions
        self._event = "c_return" if after else "c_call"
        self._held = False
        self.reached = threading.Event()
        self._released = threading.Event()

    def _profile(self, _frame: FrameType, event: str, arg: Any) -> None:
        if event == self._event and not self._held and any(arg is f for f in self._functions):
            self._held = True
            self.reached.set()
            self._released.wait(60)

    def run(self, fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
        """Start ``fn`` in a thread held as said; the thread and the list its return value goes to."""
        outcome: list[Any] = []

        def target() -> None:
            sys.setprofile(self._profile)
            try:
                outcome.append(fn())
            finally:
                sys.setprofile(None)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread, outcome

    def go(self) -> None:
        self._released.set()


def _node(tmp_path: Path) -> _nodes._Node:
    collector = StudyCollector(tmp_path / "incoming", quiet_seconds=0.0)
    limits = Limits(max_instance_bytes=1_000_000, max_pixels=1 << 24, max_instances=100)
    return _nodes._Node(collector=collector, limits=limits, target_size=None)


def _received(tmp_path: Path, study: str, view: str) -> Path:
    """A valid chest CR as pynetdicom leaves it under ``receiving/``."""
    receiving = tmp_path / "receiving"
    receiving.mkdir(exist_ok=True)
    path = receiving / f"{new_uid()}.dcm"
    path.write_bytes(chest_cr(study=study, view=view, seed=len(list(receiving.iterdir()))))
    return path


def _store(node: _nodes._Node, path: Path) -> tuple[int, str | None]:
    """What an association thread does with a received instance from the node, over mutual TLS."""
    return _receive._validate_and_keep(path, path.stat().st_size, node, _NODE_TITLE, _CERTIFICATE)


def _filed(tmp_path: Path) -> tuple[_nodes._Node, str, Path]:
    """A study received over TLS, analysed and removed: its folder keeps only ``tls-peers.txt``."""
    node = _node(tmp_path)
    study = new_uid()
    assert _store(node, _received(tmp_path, study, "PA")) == (0x0000, None)
    (stable,) = node.collector.stable()
    node.collector.done(stable, remove=True)
    assert not any(stable.folder.glob("*.dcm"))
    return node, study, stable.folder


@pytest.mark.parametrize("after", [False, True], ids=["before-its-first-removal", "after-it"])
def test_a_late_instance_keeps_its_certificate_while_the_filed_study_is_forgotten(
    tmp_path: Path, after: bool
) -> None:
    node, study, folder = _filed(tmp_path)
    hold = _HoldAt(_REMOVALS, after=after)
    forgetting, _ = hold.run(lambda: forget(folder))
    assert hold.reached.wait(60), "forget() never came to remove anything"
    late = _store(node, _received(tmp_path, study, "LL"))  # the same node, the same certificate
    hold.go()
    forgetting.join(60)
    assert not forgetting.is_alive()

    assert late == (0x0000, None)
    assert len(list(folder.glob("*.dcm"))) == 1
    # What the audit entry of the late instance's filing will name (the listener reads it at filing).
    assert delivered_by(folder) == _CERTIFICATE


def test_a_late_instance_is_kept_when_its_folder_is_removed_under_it(tmp_path: Path) -> None:
    node, study, folder = _filed(tmp_path)
    late_file = _received(tmp_path, study, "LL")
    hold = _HoldAt((os.replace,))  # the late instance's folder is made; the move into it comes next
    storing, stored = hold.run(lambda: _store(node, late_file))
    assert hold.reached.wait(60), "the late instance was never moved"
    assert folder.is_dir()
    forget(folder)  # the analysis loop clears the filed study's folder, found without instances
    hold.go()
    storing.join(60)
    assert not storing.is_alive()

    assert stored == [(0x0000, None)]
    assert len(list(folder.glob("*.dcm"))) == 1
    assert delivered_by(folder) == _CERTIFICATE
