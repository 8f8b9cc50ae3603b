"""The API documentation pages: each is served with its Content-Security-Policy and the pages' other
headers, and Swagger UI's OAuth2 redirect page, which nothing uses (the API takes bearer tokens, it has no
OAuth2 flow), is not served at all (it was, without any of them)."""

from __future__ import annotations

from _ui_live import TestClient  # noqa: I001

from inference.api.ui._app import DOCS_CSP


def test_the_documentation_pages_carry_their_headers_and_the_oauth2_redirect_is_gone(
    client: TestClient,
) -> None:
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == DOCS_CSP, path
        assert page.headers["x-frame-options"] == "DENY", path
        assert page.headers["x-content-type-options"] == "nosniff", path
        assert page.headers["referrer-policy"] == "no-referrer", path
        assert "oauth2" not in page.text.lower(), path

    assert client.get("/docs/oauth2-redirect").status_code == 404
    assert "oauth2" not in client.get("/ui/static/swagger-init.js").text.lower()
    # Were an OAuth2 scheme ever added, Swagger UI would need the redirect page back (with the headers).
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes and {s["type"] for s in schemes.values()} == {"http"}
