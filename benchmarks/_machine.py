"""The machine a run measured on: every figure is recorded with it."""

from __future__ import annotations

import datetime as dt
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1024 * 1024), 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def describe() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python and the versions of the libraries on the measured path."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    return {
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "ram_gib": _ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime": _version("onnxruntime"),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "pydicom": _version("pydicom"),
        "pillow": _version("pillow"),
        "pylibjpeg-openjpeg": _version("pylibjpeg-openjpeg"),
        "pylibjpeg-libjpeg": _version("pylibjpeg-libjpeg"),
        "pylibjpeg-rle": _version("pylibjpeg-rle"),
        "pyjpegls": _version("pyjpegls"),
        "uvicorn": _version("uvicorn"),
        "fastapi": _version("fastapi"),
    }
