"""A form post to the pages with a body over the limit (64 KiB), announced or not, is answered with the
pages' own error page in the reader's language, with the pages' headers, not with the API's JSON (the API
itself still answers JSON)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from _ui_live import Env, TestClient, add_account, csrf_of, send_study, sign_in  # noqa: I001

from inference.api._app import LOG_FILE
from inference.api.ui._render import PAGE_CSP

FORM = {"content-type": "application/x-www-form-urlencoded"}
TITLES = {"en": "Request too large", "fr": "Requête trop volumineuse", "ar": "الطلب كبير جدًا"}


def _chunks(body: bytes) -> Iterator[bytes]:
    """The body sent in pieces, without a Content-Length (chunked)."""
    for start in range(0, len(body), 8192):
        yield body[start : start + 8192]


def _rejected_too_large(client: TestClient) -> float:
    found = re.search(
        r'^dxassist_rejected_inputs_total\{code="payload_too_large"\} (\S+)$',
        client.get("/metrics").text,
        re.M,
    )
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("lang", ["en", "fr", "ar"])
@pytest.mark.parametrize("announced", [True, False], ids=["Content-Length", "chunked"])
def test_an_oversized_form_post_gets_the_pages_error_page_in_the_readers_language(
    client: TestClient, env: Env, lang: str, announced: bool
) -> None:
    result = send_study(client, env, critical=True)
    client.cookies.clear()
    assert sign_in(client, add_account(env)).status_code == 303
    token = csrf_of(client.get(f"/ui/results/{result['result_id']}").text)
    code = next(f["code"] for f in result["findings"] if f["positive"])
    body = f"csrf_token={token}&code={code}&verdict=agree&note=".encode() + b"x" * (70 * 1024)
    headers = {**FORM, "accept-language": lang}
    ids: list[str] = []
    counted = _rejected_too_large(client)
    for path in (f"/ui/results/{result['result_id']}/feedback", "/ui/signin"):
        content = body if announced else _chunks(body)
        response = client.post(path, content=content, headers=headers, follow_redirects=False)
        assert response.status_code == 413, (path, response.text[:200])
        assert response.headers["content-type"].startswith("text/html"), path
        assert response.headers["content-security-policy"] == PAGE_CSP
        assert response.headers["connection"] == "close"  # the rest of the body is never read
        assert f'<html lang="{lang}"' in response.text
        assert TITLES[lang] in response.text, path
        ids.append(response.headers["x-request-id"])
    # Nothing was recorded: the finding has no verdict, the result is still open.
    viewer = client.get(f"/ui/results/{result['result_id']}", headers={"accept-language": "en"})
    assert 'aria-pressed="true"' not in viewer.text
    # The access log and the metrics name the refusals, as they do the API's.
    assert _rejected_too_large(client) == counted + len(ids)
    lines = [json.loads(line) for line in (env.settings.log_dir / LOG_FILE).read_text("utf-8").splitlines()]
    codes = {line["request_id"]: line.get("code") for line in lines if line.get("event") == "request"}
    assert [codes.get(i) for i in ids] == ["payload_too_large"] * len(ids)

    # The API itself still answers JSON.
    api = client.post(
        "/v1/vitals", content=body, headers={**env.headers("clinician"), "content-type": "application/json"}
    )
    assert api.status_code == 413 and api.json()["error"]["code"] == "payload_too_large"
