"""``dicomweb-client`` (a client nobody here wrote) stores instances into a live ``dxassist serve``.

Both STOW-RS forms: ``POST /dicomweb/studies`` and ``POST /dicomweb/studies/{uid}``. ``RetrieveURL`` is
present and empty (PS3.18 Table I.1-1, Type 2: no WADO-RS Retrieve is served); the client finds each result by
its study's UID. Links of the same server (FHIR) keep the port the client used, or are built on
``DXASSIST_PUBLIC_BASE_URL`` when that is set.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import httpx
import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import new_study_uid
from _dxassist_cli import DXASSIST, dxassist_env
from _loopback import free_port
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session
from pydicom import Dataset, dcmread

from inference.config import Settings

pytestmark = pytest.mark.integration

REFERENCED = 0x00081199
RETRIEVE = 0x00081190
FAILED = 0x00081198


class _Serve:
    def __init__(self, root: Path, extra_env: dict[str, str]) -> None:
        self.home = root / "home"
        self.home.mkdir()
        tiny_models.seed_both(self.home / "models", root / "build")
        self.port = free_port()
        self.log = root / "serve.log"
        env = {**dxassist_env(self.home), "DXASSIST_MODEL_WATCH_SECONDS": "0", **extra_env}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(DXASSIST), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
            )
        deadline = time.monotonic() + 90
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"dxassist serve exited at start:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("dxassist serve was not ready within 90 s")
            time.sleep(0.3)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, role: str, facility: str | None = None) -> str:
        args = ["--facility", facility] if facility else []
        done = subprocess.run(
            [str(DXASSIST), "token", "issue", "--subject", "dwc", "--role", role, *args],
            env=dxassist_env(self.home),
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def client(self) -> DICOMwebClient:
        session = create_session()
        session.trust_env = False  # loopback only, whatever proxy the environment names
        session.headers["Authorization"] = f"Bearer {self.token('pacs', 'F1')}"
        return DICOMwebClient(url=f"{self.url}/dicomweb", session=session)

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        auth = {"Authorization": f"Bearer {self.token('radiologist', 'F1')}"}
        headers = {**auth, **(headers or {})}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=30, trust_env=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[dict[str, str]], _Serve]]:
    started: list[_Serve] = []

    def start(extra_env: dict[str, str]) -> _Serve:
        started.append(_Serve(tmp_path_factory.mktemp("dwc"), extra_env))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def _instance(study: str, number: int, view: str = "PA") -> Dataset:
    return dcmread(BytesIO(chest_dicom(study=study, sop=f"{study}.{number}", view=view)))


def _stored(answer: Dataset) -> set[str]:
    return {str(item[0x00081155].value) for item in answer[REFERENCED].value}


def _retrieve_url_is_empty(answer: Dataset) -> bool:
    """Retrieve URL (Type 2) is there and empty, at the top level and in each Referenced SOP item."""
    items = [answer, *answer[REFERENCED].value]
    return all(RETRIEVE in item and item[RETRIEVE].VR == "UR" and item[RETRIEVE].is_empty for item in items)


def test_store_instances_with_and_without_the_study_uid_answers_an_empty_retrieve_url(
    serve: Callable[[dict[str, str]], _Serve],
) -> None:
    server = serve({})
    client = server.client()
    study = new_study_uid()
    answer = client.store_instances(datasets=[_instance(study, 1), _instance(study, 2, "LL")])
    assert FAILED not in answer
    assert _stored(answer) == {f"{study}.1", f"{study}.2"}
    assert _retrieve_url_is_empty(answer)

    other = new_study_uid()
    answer = client.store_instances(datasets=[_instance(other, 1)], study_instance_uid=other)
    assert FAILED not in answer
    assert _stored(answer) == {f"{other}.1"}
    assert _retrieve_url_is_empty(answer)
    # Where the result is: by the UID of the study the client sent.
    result = server.get(f"/v1/studies/{other}/result")
    assert result.status_code == 200 and result.json()["study_instance_uid"] == other


def test_two_studies_in_one_store_answer_an_empty_retrieve_url(
    serve: Callable[[dict[str, str]], _Serve],
) -> None:
    server = serve({})
    first, second = new_study_uid(), new_study_uid()
    answer = server.client().store_instances(datasets=[_instance(first, 1), _instance(second, 1)])
    assert FAILED not in answer
    assert _stored(answer) == {f"{first}.1", f"{second}.1"}
    assert _retrieve_url_is_empty(answer)
    for study in (first, second):
        assert server.get(f"/v1/studies/{study}/result").status_code == 200, study


def test_an_instance_of_another_study_fails_in_the_study_form(
    serve: Callable[[dict[str, str]], _Serve],
) -> None:
    server = serve({})
    client = server.client()
    target, stray = new_study_uid(), new_study_uid()
    answer = client.store_instances(
        datasets=[_instance(target, 1), _instance(stray, 1)], study_instance_uid=target
    )
    assert [str(item[0x00081155].value) for item in answer[FAILED].value] == [f"{stray}.1"]
    assert _stored(answer) == {f"{target}.1"}
    assert _retrieve_url_is_empty(answer)


def test_links_keep_the_port_a_client_left_out_of_host(serve: Callable[[dict[str, str]], _Serve]) -> None:
    # dicomweb-client 0.61 sends Host without the port; the FHIR base is then the address it connected to.
    server = serve({})
    metadata = server.get("/fhir/metadata", headers={"Host": "127.0.0.1"})
    assert metadata.status_code == 200, metadata.text
    assert metadata.json()["implementation"]["url"] == f"{server.url}/fhir"


def test_links_are_built_on_the_public_base_url_when_set(serve: Callable[[dict[str, str]], _Serve]) -> None:
    server = serve({"DXASSIST_PUBLIC_BASE_URL": "https://dxassist.hospital.example:8443/ai/"})
    metadata = server.get("/fhir/metadata")
    assert metadata.status_code == 200, metadata.text
    assert metadata.json()["implementation"]["url"] == "https://dxassist.hospital.example:8443/ai/fhir"
    study = new_study_uid()
    answer = server.client().store_instances(datasets=[_instance(study, 1)], study_instance_uid=study)
    assert _stored(answer) == {f"{study}.1"}
    assert _retrieve_url_is_empty(answer)


def test_public_base_url_is_checked_and_normalised() -> None:
    assert (
        Settings(public_base_url="https://ai.example/base/").server.public_base_url
        == "https://ai.example/base"
    )
    assert Settings(public_base_url="").server.public_base_url is None
    for bad in ("ai.example", "ftp://ai.example", "https://ai.example/?x=1", "https:///nohost"):
        with pytest.raises(ValueError, match="DXASSIST_PUBLIC_BASE_URL"):
            Settings(public_base_url=bad)
