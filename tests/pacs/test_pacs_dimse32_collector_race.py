"""An instance stored into a study's folder while the collector removes that folder (the study before it
was just finished).

``StudyCollector.done`` removes a finished study's folder once it holds no instance
(``remove_study_files``), while another thread (an association, a DICOMweb request) may be storing a late
instance of the same study: its folder made, the file not moved or written into it yet. The store then
found no folder and failed (``FileNotFoundError``: the DICOM listener answered 0xA700 for it, unless its
own caller tried again), and the late instance was lost to the spool. The collector now makes the folder
again and stores the instance in it, as the listener's ``_move_in`` did for its own calls.

The storing thread is held at its move (or write) into the folder, after the folder was made, until the
folder is removed (``_HoldAt``, as in ``test_pacs_dimse32_filing_race``); the waits are liveness bounds.
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
from test_pacs_dimse32_filing_race import _HoldAt

from inference.dicom import StudyCollector

_SENDER = "STORESCU"


def _by_move(collector: StudyCollector, tmp_path: Path, study: str, seed: int) -> Callable[[], Path]:
    """Store one instance as the DICOM listener does: a received file moved in."""
    source = tmp_path / "receiving" / f"{seed}.dcm"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(chest_cr(study=study, view="LL", seed=seed))
    sop = new_uid()
    return lambda: collector.store_file(
        study_instance_uid=study, sop_instance_uid=sop, source=source, sender=_SENDER
    )


def _by_bytes(collector: StudyCollector, _tmp_path: Path, study: str, seed: int) -> Callable[[], Path]:
    """Store one instance from memory."""
    data = chest_cr(study=study, view="LL", seed=seed)
    sop = new_uid()
    return lambda: collector.store(study_instance_uid=study, sop_instance_uid=sop, data=data, sender=_SENDER)


@pytest.mark.parametrize(
    ("store", "into_folder"),
    [(_by_move, (os.replace,)), (_by_bytes, (open,))],
    ids=["moved-in", "written"],
)
def test_an_instance_stored_while_its_study_folder_is_removed_is_kept(
    tmp_path: Path, store: Callable[..., Callable[[], Path]], into_folder: tuple[Callable[..., Any], ...]
) -> None:
    collector = StudyCollector(tmp_path / "incoming", quiet_seconds=0.0)
    study = new_uid()
    store(collector, tmp_path, study, 1)()
    (finished,) = collector.stable()  # being analysed; its folder goes once it is done

    late = store(collector, tmp_path, study, 2)
    hold = _HoldAt(into_folder)  # the late instance's folder is made; what goes into it comes next
    storing, stored = hold.run(late)
    assert hold.reached.wait(60), "the late instance never reached its folder"
    collector.done(finished, remove=True)
    assert not finished.folder.exists()  # removed under the late instance
    hold.go()
    storing.join(60)
    assert not storing.is_alive()

    (path,) = stored
    assert path.is_file() and path.parent == finished.folder
    # The late instance is a study of its own to analyse, with the node that sent it.
    (again,) = collector.stable()
    assert (again.files, again.sender) == ((path,), _SENDER)


class _HoldAtCall:
    """Stops the thread it runs a function in before its ``nth`` call of ``function``, until :meth:`go`."""

    def __init__(self, function: Callable[..., Any], nth: int) -> None:
        self._function = function
        self._left = nth
        self.reached = threading.Event()
        self._released = threading.Event()

    def _profile(self, _frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_call" and arg is self._function:
            self._left -= 1
            if self._left == 0:
                self.reached.set()
                self._released.wait(60)

    def run(self, fn: Callable[[], Any]) -> threading.Thread:
        def target() -> None:
            sys.setprofile(self._profile)
            try:
                fn()
            finally:
                sys.setprofile(None)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread

    def go(self) -> None:
        self._released.set()


def test_an_instance_moved_in_once_its_study_folder_was_found_empty_keeps_its_sender(tmp_path: Path) -> None:
    """The collector found the finished study's folder without instances, then removed its sender file
    (``sender.txt``, the node that sent the study): a late instance moved in between, which found the
    file still there, was left in a folder without it, and was analysed as sent by no node (the DICOM
    listener drops such a study: 'its DICOM node is no longer registered')."""
    collector = StudyCollector(tmp_path / "incoming", quiet_seconds=0.0)
    study = new_uid()
    _by_move(collector, tmp_path, study, 1)()
    (finished,) = collector.stable()

    # Held once the finished study's own file is removed and its folder looked at (found empty): the
    # next file it removes is the first of what an empty folder keeps.
    hold = _HoldAtCall(os.unlink, nth=len(finished.files) + 1)
    removing = hold.run(lambda: collector.done(finished, remove=True))
    assert hold.reached.wait(60), "the finished study's folder was never cleared"
    path = _by_move(collector, tmp_path, study, 2)()  # a late instance, stored whole meanwhile
    hold.go()
    removing.join(60)
    assert not removing.is_alive()

    assert path.is_file()
    (late,) = collector.stable()
    assert (late.files, late.sender) == ((path,), _SENDER)
