"""Where the server spends its time under load: py-spy samples of the server process, summarised.

Optional (``--profile``): needs the ``py-spy`` executable next to the interpreter or on PATH. The summary
lists the frames seen in most samples (inclusive) and the leaf frames (where the CPU actually was).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    """Path of the py-spy executable, or None."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    """Start sampling ``pid`` for ``seconds`` into ``out`` (collapsed stacks); None without py-spy."""
    exe = py_spy()
    if exe is None:
        return None
    command = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, int(seconds))),
        "--rate",
        "50",
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise(path: Path, top: int = 15) -> dict[str, Any]:
    """Inclusive and leaf frame counts of a py-spy raw (collapsed) file, as shares of all samples."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {"samples": 0}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_LINE.sub(")", frame.strip()) for frame in stack.split(";")]
        total += count
        threads[frames[0]] += count
        for frame in set(frames[1:]):
            inclusive[frame] += count
        if len(frames) > 1:
            leaf[frames[-1]] += count

    def shares(counter: Counter[str]) -> list[list[Any]]:
        return [[frame, round(n / total, 3)] for frame, n in counter.most_common(top)] if total else []

    return {
        "samples": total,
        "threads": shares(threads),
        "inclusive": shares(inclusive),
        "leaf": shares(leaf),
    }
