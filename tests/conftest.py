"""Fixtures shared by the whole suite.

The telemetry switches are set before anything imports ONNX Runtime or MLflow: no test sends traffic
off the machine. ``bootstrapped_home`` runs the real ``dxassist bootstrap --profile quick`` once per
session, so the acceptance tests see what a user sees after ``make run``.
"""

from __future__ import annotations

import os

for _key, _value in (
    ("ORT_DISABLE_TELEMETRY", "1"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("DO_NOT_TRACK", "true"),
):
    os.environ[_key] = _value

import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from _dxassist_cli import DXASSIST, dxassist_env  # noqa: E402


@pytest.fixture(scope="session")
def bootstrapped_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DXASSIST_HOME after ``dxassist bootstrap --profile quick``: both champions trained and registered."""
    home = tmp_path_factory.mktemp("bootstrapped-home")
    proc = subprocess.run(
        [str(DXASSIST), "bootstrap", "--profile", "quick"],
        env=dxassist_env(home),
        cwd=tmp_path_factory.mktemp("cwd"),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    (home / "bootstrap.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    assert proc.returncode == 0, f"bootstrap failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return home


# `make test` runs the suite on two pytest-xdist workers (most of its time is spent waiting on
# subprocesses: servers, Orthanc, PostgreSQL, network-namespace hosts). A worker receives whole test
# modules, so each module's fixtures (servers, homes, stores) are still built once. Folders whose
# session fixtures are expensive go to one worker as a single unit, so they are built once per run:
# every acceptance module shares the one `bootstrapped_home` (a quick bootstrap trains for minutes).
_ONE_WORKER_FOLDERS = ("tests/acceptance/",)

# Units that take minutes are handed out first, so that neither worker is left with a long one at the
# end while the other idles (only the order changes; every test still runs).
_LONG_UNITS_FIRST = (
    "tests/acceptance/",
    "tests/scale/test_multi_host.py",
    "tests/security/test_security_crash.py",
    "tests/scale/test_batch_hosts.py",
    "tests/install/",
    "tests/cli/test_cli_feedback_loop.py",
    "tests/cli/test_cli_copied_home.py",
    "tests/cli/test_cli_batch.py",
    "tests/security/test_security_schemathesis.py",
)


def _unit_of(nodeid: str) -> str:
    """The work unit of a test: its module, or its whole folder for `_ONE_WORKER_FOLDERS`."""
    for folder in _ONE_WORKER_FOLDERS:
        if nodeid.startswith(folder):
            return folder
    return nodeid.split("::", 1)[0]


def _priority(unit: str) -> int:
    """The rank of a unit in `_LONG_UNITS_FIRST`; every other unit ranks after them."""
    ranks = (i for i, prefix in enumerate(_LONG_UNITS_FIRST) if unit.startswith(prefix))
    return next(ranks, len(_LONG_UNITS_FIRST))


# The suite's temporary folders peak at about 1.3 GB (PostgreSQL clusters, Orthanc storage, trained
# models; measured on a full `make test`, 2026-12-04): under this, it would fail with hundreds of
# confusing errors ("No space left on device" from the first test), so it does not start.
MIN_FREE_BYTES = 3 * 1024**3 // 2


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to start, in one line, on a disk that cannot hold the suite's temporary folders."""
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller checked
    folder = Path(tempfile.gettempdir())
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        pytest.exit(
            f"Only {free / 1024**2:.0f} MB free for {folder}; the test suite needs about "
            f"{MIN_FREE_BYTES / 1024**2:.0f} MB there (PostgreSQL, Orthanc, trained models).",
            returncode=3,
        )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadscope`` as `make test` uses it: whole modules per worker, acceptance as one unit,
    long units first. Other ``--dist`` modes keep pytest-xdist's own scheduler."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class _Scheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _unit_of(nodeid)

        def _assign_work_unit(self, node: object) -> None:
            # The queue is in collection order; hand out the first of the longest-ranked units.
            first = min(self.workqueue, key=_priority)
            self.workqueue.move_to_end(first, last=False)
            super()._assign_work_unit(node)

    config.option.loadscopereorder = False
    return _Scheduling(config, log)
