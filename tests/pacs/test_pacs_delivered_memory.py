"""A listener sharing its spool with other instances (``DXASSIST_DIMSE_GROUPING=database``) remembered,
for every study it received, which associations delivered it, and forgot only the studies it analysed
itself: those another instance analysed stayed in memory for the life of the process. It now forgets,
past a bound, the studies whose folder has left the spool."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from inference.dimse import _nodes


def test_studies_another_instance_analysed_are_forgotten(tmp_path: Path) -> None:
    node = _nodes._Node(collector=cast(Any, None), limits=cast(Any, None), target_size=None)
    incoming = tmp_path / "incoming"
    waiting = incoming / "still-waiting"
    waiting.mkdir(parents=True)
    node.delivered(waiting, "assoc-waiting")
    bound = _nodes._REMEMBERED_STUDIES
    for n in range(bound + 500):
        # Received here, then analysed (and removed) by another listener instance: no forget() here.
        node.delivered(incoming / f"study-{n}", f"assoc-{n}")
    assert len(node.delivered_by) <= bound + 1
    assert node.associations("still-waiting") == ["assoc-waiting"]  # a study still in the spool stays
