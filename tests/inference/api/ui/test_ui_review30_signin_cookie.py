"""Login CSRF through a planted cookie: outside development the sign-in form's double-submit cookie is
``__Host-`` prefixed like the session's, so a sibling host of the hospital's domain (which may set a
cookie for the whole domain) cannot plant one and sign a workstation's browser in to its own account,
whose session would then collect the radiologist's verdicts."""

from __future__ import annotations

from pathlib import Path

from _api_env import make_settings  # noqa: I001
from _ui_live import PASSWORD, TestClient, csrf_of

from inference.api import create_app
from inference.record import Record
from inference.services import add_user


def test_a_planted_sign_in_cookie_signs_no_one_in(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, environment="production", database_url=f"sqlite:///{tmp_path / 'record.db'}"
    )
    import tiny_models

    tiny_models.seed_both(settings.model_cache, tmp_path / "build")
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        record = Record(settings.record_url)
        try:
            add_user(record, username="mallory", password=PASSWORD, role="radiologist", facility="F1")
        finally:
            record.close()

        # What a sibling host can do: a cookie of its choosing for the whole domain, then a form posted
        # to the sign-in with the same value and its own account's credentials.
        client.cookies.clear()
        client.cookies.set("dxassist_signin", "planted-by-a-sibling-host")
        response = client.post(
            "/ui/signin",
            data={"username": "mallory", "password": PASSWORD, "csrf_token": "planted-by-a-sibling-host"},
            follow_redirects=False,
        )
        assert response.status_code == 403
        assert not any("dxassist_session" in c for c in response.headers.get_list("set-cookie"))

        # The form's own cookie is the prefixed one, and signing in through the form still works.
        client.cookies.clear()
        form = client.get("/ui/signin")
        assert form.headers["set-cookie"].startswith("__Host-dxassist_signin=")
        response = client.post(
            "/ui/signin",
            data={"username": "mallory", "password": PASSWORD, "csrf_token": csrf_of(form.text)},
            follow_redirects=False,
        )
        assert response.status_code == 303
        cleared = next(c for c in response.headers.get_list("set-cookie") if "dxassist_signin" in c)
        assert cleared.startswith("__Host-dxassist_signin=") and "secure" in cleared.lower()
        assert client.get("/ui/").status_code == 200
