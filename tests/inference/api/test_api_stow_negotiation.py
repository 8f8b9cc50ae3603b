"""STOW-RS answers a client what it can read, at the URL it uses.

An Accept that allows neither DICOM JSON nor DICOM XML was answered in DICOM JSON after storing and
analysing everything (PS3.18 asks for 406 Not Acceptable); a URL with a trailing slash (built from a base
URL that ends in one) was answered with a 307 redirect, which many STOW-RS clients do not follow for a
POST, so their instances never arrived.
"""

from __future__ import annotations

import pytest
from _api_dicom import chest_dicom, related_body
from _api_env import Env, TestClient, new_study_uid

REFERENCED = "00081199"
SOP_INSTANCE = "00081155"


def _post(client: TestClient, env: Env, path: str, study: str, **headers: str):
    body, content_type = related_body([("application/dicom", chest_dicom(study=study, sop=f"{study}.1"))])
    sent = {**env.headers("pacs", facility="F1"), "Content-Type": content_type, **headers}
    return client.post(path, content=body, headers=sent, follow_redirects=False)


def _filed(client: TestClient, env: Env, study: str) -> int:
    return client.get(f"/v1/studies/{study}/result", headers=env.headers("radiologist")).status_code


@pytest.mark.parametrize(
    "accept", ["text/html", "application/dicom", "application/dicom+json;q=0, application/dicom+xml;q=0"]
)
def test_an_accept_the_server_cannot_satisfy_is_406_and_nothing_is_stored(
    client: TestClient, env: Env, accept: str
) -> None:
    study = new_study_uid()
    response = _post(client, env, "/dicomweb/studies", study, Accept=accept)
    assert response.status_code == 406, response.text
    assert response.json()["error"]["code"] == "not_acceptable"
    assert _filed(client, env, study) == 404


@pytest.mark.parametrize("accept", ["application/dicom+json", "*/*", "text/html, application/*;q=0.5"])
def test_an_accept_that_allows_dicom_json_is_served(client: TestClient, env: Env, accept: str) -> None:
    study = new_study_uid()
    response = _post(client, env, "/dicomweb/studies", study, Accept=accept)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")


@pytest.mark.parametrize("form", ["/dicomweb/studies/", "/dicomweb/studies/{study}/"])
def test_a_trailing_slash_is_served_without_a_redirect(client: TestClient, env: Env, form: str) -> None:
    study = new_study_uid()
    response = _post(client, env, form.format(study=study), study)
    assert response.status_code == 200, (response.status_code, response.headers.get("location"))
    assert response.json()[REFERENCED]["Value"][0][SOP_INSTANCE]["Value"] == [f"{study}.1"]
    assert _filed(client, env, study) == 200


def test_the_accept_is_refused_before_the_body_is_read(client: TestClient, env: Env) -> None:
    # A body that is not even multipart: read first, it would have been a 400; the 406 comes first.
    headers = {
        **env.headers("pacs", facility="F1"),
        "Content-Type": 'multipart/related; type="application/dicom"; boundary=b',
        "Accept": "text/html",
    }
    response = client.post("/dicomweb/studies", content=b"not multipart at all", headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (406, "not_acceptable")
