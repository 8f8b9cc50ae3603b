"""The PACS test harness: Debian's Orthanc with the DICOMweb plugin, and ``dxassist listen`` beside it.

Orthanc runs from a generated configuration in tmp: HTTP and DICOM on free ports, remote HTTP access off,
authentication on with one registered user, HTTP compression off (Orthanc 1.10.1 gzips every reply
otherwise, which is slow), storage and index in tmp, the DICOMweb plugin loaded, dxassist declared as
modality ``dxassist``, and a Lua ``OnStableStudy`` that sends the new CR/DX series of a stable study to
dxassist in one job and never the AI's own output. Orthanc 1.10.1 cannot bind to one address: its DICOM
port listens on every interface of this firewall-free sandbox, is ephemeral and only ever used over
loopback.

The listener runs in a subprocess with a tmp ``DXASSIST_HOME`` seeded with the tiny models; its only
destination is Orthanc's DICOM port. Both processes are stopped (SIGTERM, then SIGKILL) by the fixtures.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from _dxassist_cli import DXASSIST, dxassist_env
from _loopback import free_port as free_port  # the PACS tests take both from the harness
from _loopback import wait_until as wait_until

ORTHANC_BIN = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
ORTHANC_AET = "ORTHANC"
LISTENER_AET = "DXASSIST"
TEST_AET = "DXTEST"
NODE_FACILITY = "F-PACS"
USER, PASSWORD = "integrator", "pacs-test-secret"
STABLE_AGE = 2
QUIET_SECONDS = 1.0
MAX_INSTANCE_BYTES = 1_000_000

LUA_ROUTE = """
-- Send every new CR/DX series of a stable study to dxassist, never dxassist's own output. All of them
-- in one store job (one association): series sent one job each could reach the listener further apart
-- than its quiet period, which would analyse the study in two parts.
function OnStableStudy(studyId, tags, metadata)
  local series = ParseJson(RestApiGet('/studies/' .. studyId .. '/series'))
  local eligible = {}
  for _, s in ipairs(series) do
    local t = s['MainDicomTags']
    local modality = t['Modality'] or ''
    local manufacturer = t['Manufacturer'] or ''
    local sent = false
    for _, name in ipairs(ParseJson(RestApiGet('/series/' .. s['ID'] .. '/metadata'))) do
      if name == 'DxassistSent' then sent = true end
    end
    if (modality == 'CR' or modality == 'DX') and manufacturer ~= 'dxassist' and not sent then
      table.insert(eligible, s['ID'])
    end
  end
  if #eligible > 0 then
    -- The REST route takes series (Lua's SendToModality takes instances only in Orthanc 1.10).
    RestApiPost('/modalities/dxassist/store', DumpJson({Resources = eligible, Synchronous = true}))
    for _, id in ipairs(eligible) do
      RestApiPut('/series/' .. id .. '/metadata/DxassistSent', 'yes')
    end
  end
end
"""


def _stop(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


@dataclass
class Orthanc:
    """One Orthanc process and its REST client (stop and start keep the same storage and ports)."""

    root: Path
    http_port: int
    dicom_port: int
    listener_port: int
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "orthanc.log"
        lua = self.root / "route.lua"
        lua.write_text(LUA_ROUTE)
        config = {
            "Name": "dxassist-test-pacs",
            "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "index"),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "HttpCompressionEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": ORTHANC_AET,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": {"dxassist": [LISTENER_AET, "127.0.0.1", self.listener_port]},
            "StableAge": STABLE_AGE,
            "LuaScripts": [str(lua)],
            "UserMetadata": {"DxassistSent": 1024},
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
            "ConcurrentJobs": 2,
            "SaveJobs": False,
        }
        (self.root / "orthanc.json").write_text(json.dumps(config, indent=2))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def client(self) -> httpx.Client:
        """An authenticated HTTP client of Orthanc's REST API and DICOMweb."""
        return httpx.Client(base_url=self.url, auth=(USER, PASSWORD), timeout=30.0, trust_env=False)

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [ORTHANC_BIN, str(self.root / "orthanc.json")],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"Orthanc exited at start:\n{self.log.read_text()[-3000:]}")
            try:
                with self.client() as client:
                    return client.get("/system").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout=30, what="Orthanc's REST API")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None

    def get(self, path: str, **kwargs: Any) -> Any:
        with self.client() as client:
            response = client.get(path, **kwargs)
            response.raise_for_status()
            return response.json() if "json" in response.headers.get("content-type", "") else response.content

    def study_id(self, study_uid: str) -> str | None:
        with self.client() as client:
            found = client.post("/tools/lookup", content=study_uid).json()
        ids = [item["ID"] for item in found if item["Type"] == "Study"]
        return ids[0] if ids else None


@dataclass
class Listener:
    """``dxassist listen`` in a subprocess."""

    home: Path
    port: int
    destinations: list[dict[str, Any]]
    process: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    metrics_port: int | None = None  # the listener's GET /metrics (DXASSIST_DIMSE_METRICS_PORT), if any
    echo_args: tuple[str, ...] = ()  # echoscu's options to reach it (a TLS listener: +tls key cert...)
    host: str | None = None  # the address it binds (``--host``); 127.0.0.1 when None

    @property
    def log(self) -> Path:
        return self.home / "listener-stdout.log"

    @property
    def record_url(self) -> str:
        return f"sqlite:///{self.home / 'record.db'}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DXASSIST_", "MLFLOW_"))}
        env.update(
            {
                "DXASSIST_HOME": str(self.home),
                "DXASSIST_MODEL_WATCH_SECONDS": "0",
                "DXASSIST_PREPROCESS_WORKERS": "1",
                "DXASSIST_MAX_INSTANCE_BYTES": str(MAX_INSTANCE_BYTES),
                "DXASSIST_DESTINATIONS": json.dumps(self.destinations),
                # Each registered node's results belong to its facility (docs/security.md "DICOM nodes").
                "DXASSIST_DIMSE_NODES": json.dumps(
                    [
                        {"ae_title": title, "facility": NODE_FACILITY}
                        for title in (ORTHANC_AET, TEST_AET, "STORESCU")
                    ]
                ),
                "DXASSIST_DIMSE_STABLE_SECONDS": str(QUIET_SECONDS),
                "DXASSIST_DELIVERY_BACKOFF_SECONDS": "0.3",
                "DXASSIST_DELIVERY_BACKOFF_CAP_SECONDS": "1.0",
                "DXASSIST_DELIVERY_POLL_SECONDS": "0.2",
            }
        )
        if self.metrics_port is not None:
            env["DXASSIST_DIMSE_METRICS_PORT"] = str(self.metrics_port)
        env.update(self.extra_env)
        command = [
            str(Path(sys.executable).with_name("dxassist")),
            "listen",
            "--ae-title",
            LISTENER_AET,
            "--port",
            str(self.port),
            *(("--host", self.host) if self.host is not None else ()),
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.home
            )

        def echoes() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"The listener exited at start:\n{self.log.read_text()[-3000:]}")
            return echo(self.port, timeout=2, options=self.echo_args).returncode == 0

        wait_until(echoes, timeout=60, interval=0.3, what="the dxassist listener's C-ECHO")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, timeout=20)
            self.process = None


@dataclass(frozen=True)
class Pacs:
    """Orthanc and the dxassist listener, wired to each other."""

    orthanc: Orthanc
    listener: Listener
    work: Path


def orthanc_destination(dicom_port: int, *, calling: str = LISTENER_AET) -> dict[str, Any]:
    """The delivery destination (``DXASSIST_DESTINATIONS`` entry) of Orthanc's DICOM port, called as
    ``calling``."""
    return {
        "name": "orthanc",
        "kind": "dimse",
        "host": "127.0.0.1",
        "port": dicom_port,
        "ae_title": ORTHANC_AET,
        "calling_ae_title": calling,
        "timeout_seconds": 5,
    }


@dataclass
class Serve:
    """``dxassist serve`` on loopback in a subprocess (:func:`start_serve`)."""

    home: Path
    port: int
    process: subprocess.Popen[bytes]
    subject: str  # the tokens it issues name ``<subject>-<role>``

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, role: str, facility: str | None = "F1") -> str:
        """A bearer token of ``role``, bound to ``facility`` (none when ``None``), from ``dxassist token``."""
        command = [str(DXASSIST), "token", "issue", "--subject", f"{self.subject}-{role}", "--role", role]
        if facility:
            command += ["--facility", facility]
        done = subprocess.run(
            command, env=dxassist_env(self.home), capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def stop(self) -> None:
        _stop(self.process, timeout=30)


def start_serve(
    home: Path, env: dict[str, str], *, subject: str, stdout: Path, stderr: Path | None = None
) -> Serve:
    """Start ``dxassist serve`` for ``home`` (its own environment, no model watcher, plus ``env``) and wait
    until ``/readyz`` answers 200; it prints to ``stdout``, and to ``stderr`` when given (else stdout)."""
    port = free_port()
    with ExitStack() as files:
        out = files.enter_context(open(stdout, "wb"))
        err = subprocess.STDOUT if stderr is None else files.enter_context(open(stderr, "wb"))
        process = subprocess.Popen(
            [str(DXASSIST), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**dxassist_env(home), "DXASSIST_MODEL_WATCH_SECONDS": "0", **env},
            stdout=out,
            stderr=err,
            cwd=home,
        )
    serve = Serve(home, port, process, subject)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"dxassist serve exited at start:\n{(stderr or stdout).read_text()[-3000:]}")
        try:
            return httpx.get(f"{serve.url}/readyz", timeout=2, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=90, interval=0.3, what="dxassist serve's /readyz")
    except BaseException:
        serve.stop()
        raise
    return serve


def dcmtk(tool: str) -> str:
    """The path of dcmtk's ``tool`` (``echoscu``, ``storescu``...), looked up on PATH without the
    virtual environment's own folder: pynetdicom installs scripts of the same names there, with other
    options, which would answer instead in a shell where the environment is activated."""
    ours = Path(sys.executable).parent.resolve()
    folders = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != ours]
    found = shutil.which(tool, path=os.pathsep.join(folders))
    return found if found is not None else tool  # require_tools names it when it is missing


def echo(port: int, *, timeout: int, options: Sequence[str] = ()) -> subprocess.CompletedProcess[bytes]:
    """A C-ECHO from dcmtk's ``echoscu`` (as ``TEST_AET``, with ``options``) to the dxassist listener on
    127.0.0.1."""
    return subprocess.run(
        [
            dcmtk("echoscu"),
            *options,
            "-aet",
            TEST_AET,
            "-aec",
            LISTENER_AET,
            "-to",
            str(timeout),
            "127.0.0.1",
            str(port),
        ],
        capture_output=True,
        check=False,
    )


def require_tools() -> None:
    missing = [tool for tool in (ORTHANC_BIN, DICOMWEB_PLUGIN) if not Path(tool).exists()]
    missing += [tool for tool in ("storescu", "echoscu", "dciodvfy") if not Path(dcmtk(tool)).is_absolute()]
    if missing:
        pytest.fail(
            "The PACS tests need Debian's orthanc, orthanc-dicomweb, dcmtk and dicom3tools; "
            f"missing: {missing}."
        )


def dxassist(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``dxassist`` console script with ``DXASSIST_HOME=home`` (an operator's command)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DXASSIST_", "MLFLOW_"))}
    env["DXASSIST_HOME"] = str(home)
    return subprocess.run(
        [str(Path(sys.executable).with_name("dxassist")), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def storescu(files: list[Path], *, port: int, called: str, calling: str = "STORESCU") -> None:
    """Send files to 127.0.0.1 with dcmtk's storescu (``-xv``: JPEG 2000 lossless, then uncompressed)."""
    done = subprocess.run(
        [dcmtk("storescu"), "-xv", "-aet", calling, "-aec", called, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def all_sent(listener: Listener, study_uid: str) -> tuple[Any, list[Any]] | None:
    """The listener's latest result of a study and its deliveries, once every one of them is sent.

    None before: no result yet, its outputs not built and queued yet, or one still pending (the SR can
    be in the PACS while a capture is not; a listener stopped then leaves the capture queued).
    """
    from inference.record import Record

    record = Record(listener.record_url)
    try:
        result = record.results.latest_for_study(study_instance_uid=study_uid)
        if result is None:
            return None
        deliveries = record.outbox.deliveries(result_id=result.result_id)
    finally:
        record.close()
    if not deliveries or any(d.state != "sent" for d in deliveries):
        return None
    return result, list(deliveries)
