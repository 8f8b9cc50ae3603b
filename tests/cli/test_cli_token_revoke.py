"""`dxassist token revoke`: a leaked token is refused by a running server within seconds, without
replacing the signing key (which would stop every other client's token too); issuing and revoking are
on the audit trail; a lifetime beyond `DXASSIST_TOKEN_MAX_TTL_SECONDS` and a subject the server would
refuse are not issued.

The real console script and a real `dxassist serve`; waits are liveness bounds (the server re-reads the
revocations every 5 s), never speed assertions.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import tiny_models
from _dxassist_cli import DXASSIST, dxassist_env, run_dxassist, serving

LIVENESS_SECONDS = 60


def _issue(home: Path, subject: str, *extra: str) -> tuple[str, str]:
    """``(token, its id)`` from `dxassist token issue` (the id from its stderr line)."""
    done = run_dxassist(
        home, "token", "issue", "--subject", subject, "--role", "pacs", "--facility", "F1", *extra
    )
    assert done.returncode == 0, done.stderr
    words = done.stderr.split()
    return done.stdout.strip(), words[words.index("(jti)") + 1]


def _status(url: str, token: str) -> tuple[int, str]:
    answer = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {token}"}, trust_env=False)
    code = answer.json().get("error", {}).get("code", "") if answer.status_code != 200 else ""
    return answer.status_code, code


def _refused_within(url: str, token: str) -> tuple[int, str]:
    deadline = time.monotonic() + LIVENESS_SECONDS
    while True:
        status = _status(url, token)
        if status[0] != 200 or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


@pytest.mark.timeout(600)
def test_a_revoked_token_is_refused_and_the_others_still_work(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    leaked, leaked_id = _issue(home, "pacs-a")
    sibling, _ = _issue(home, "pacs-a")
    other, _ = _issue(home, "pacs-b")
    with serving(home, tmp_path / "serve.log") as url:
        assert _status(url, leaked) == (200, "")
        revoke = run_dxassist(home, "token", "revoke", "--jti", leaked_id, "--reason", "laptop stolen")
        assert revoke.returncode == 0, revoke.stderr
        assert _refused_within(url, leaked) == (401, "token_revoked")
        assert _status(url, sibling) == (200, "") and _status(url, other) == (200, "")

        # Every token of a subject issued so far (its id unknown: a router's configuration was copied).
        by_subject = run_dxassist(home, "token", "revoke", "--subject", "pacs-a")
        assert by_subject.returncode == 0, by_subject.stderr
        # When a new token of the subject works (its cut-off reaches over the issuers' clock skew:
        # tests/security/test_security_revocation_skew.py).
        assert "a new token for it works if issued from" in by_subject.stdout
        assert _refused_within(url, sibling) == (401, "token_revoked")
        assert _status(url, other) == (200, "")

    listing = run_dxassist(home, "token", "revocations")
    assert listing.returncode == 0 and leaked_id in listing.stdout and "laptop stolen" in listing.stdout
    trail = run_dxassist(home, "audit", "verify")
    assert trail.returncode == 0, trail.stdout + trail.stderr
    with closing(sqlite3.connect(f"file:{home / 'record.db'}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        rows = [
            dict(row)
            for row in db.execute(
                "SELECT action, resource_id, outcome, subject FROM audit_events "
                "WHERE action IN ('token:issue', 'token:revoke', 'api:authenticate') ORDER BY seq"
            )
        ]
    assert sum(r["action"] == "token:issue" for r in rows) == 3
    # Who got which credential: id, role and facility, then the subject.
    issued_lines = {r["resource_id"] for r in rows if r["action"] == "token:issue"}
    assert f"jti:{leaked_id} role:pacs facility:F1 sub:pacs-a" in issued_lines
    assert [r["resource_id"] for r in rows if r["action"] == "token:revoke"] == [
        f"jti:{leaked_id}",
        "subject:pacs-a",
    ]
    # The leaked token's use after its revocation is on the trail, under its own subject.
    refused = [r for r in rows if r["action"] == "api:authenticate"]
    assert refused and all(r["outcome"] == "denied" for r in refused)
    assert {r["resource_id"] for r in refused} == {"token_revoked"} and {r["subject"] for r in refused} == {
        "pacs-a"
    }


def test_tokens_that_would_never_work_or_live_too_long_are_not_issued(tmp_path: Path) -> None:
    home = tmp_path / "home"
    too_long = run_dxassist(
        home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--ttl", str(10**12)
    )
    assert too_long.returncode == 2 and "DXASSIST_TOKEN_MAX_TTL_SECONDS" in too_long.stderr
    assert not too_long.stdout.strip()
    for subject in ("x" * 129, "pacs\nadmin"):
        refused = run_dxassist(home, "token", "issue", "--subject", subject, "--role", "pacs")
        assert refused.returncode == 2 and not refused.stdout.strip(), refused.stderr
    odd = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1\nF2")
    assert odd.returncode == 2 and not odd.stdout.strip()


def test_a_token_is_still_issued_beside_an_external_issuer(tmp_path: Path) -> None:
    # With DXASSIST_JWKS_URL the server trusts another issuer; `token issue` still signs with this key
    # (for a server of this key) instead of failing on the other issuer's JWKS with a traceback.
    env = dxassist_env(tmp_path / "home") | {"DXASSIST_JWKS_URL": "https://127.0.0.1:9/jwks.json"}
    done = subprocess.run(
        [str(DXASSIST), "token", "issue", "--subject", "pacs", "--role", "pacs"],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(".") == 2 and "Traceback" not in done.stderr
