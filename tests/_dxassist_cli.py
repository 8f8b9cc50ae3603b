"""Running the real `dxassist` console script from tests, with a home of its own."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DXASSIST = Path(sys.executable).with_name("dxassist")


def dxassist_env(home: Path) -> dict[str, str]:
    """The environment of a ``dxassist`` subprocess with its own home and embedded defaults."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("DXASSIST_") and k != "MLFLOW_TRACKING_URI"
    }
    env["DXASSIST_HOME"] = str(home)
    return env
