"""The token signing key is read once and looked at again at most once a second: a key replaced on disk
(rotation) or removed is still noticed, and tokens follow it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _loopback import wait_until

from inference.config import Settings
from inference.security import KEY_FILE, Unauthenticated, issue_token, signing_key, verify_token


def test_a_replaced_key_is_noticed_and_old_tokens_stop_verifying(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", database_url=None, mlflow_tracking_uri=None)
    first = signing_key(settings)
    assert signing_key(settings) is first  # served from memory
    old = issue_token(settings, subject="reader-1", role="radiologist", facility="F1")
    # An operator rotates the key: another key file put in place of the first (atomically, new inode).
    other = Settings(home=tmp_path / "other", database_url=None, mlflow_tracking_uri=None)
    replacement = signing_key(other)
    path = settings.keys_dir / KEY_FILE
    os.replace(other.keys_dir / KEY_FILE, path)
    rotated = wait_until(
        lambda: signing_key(settings).kid == replacement.kid and signing_key(settings),
        timeout=10,
        what="the replaced signing key in use",
    )
    assert rotated.kid != first.kid
    with pytest.raises(Unauthenticated):
        verify_token(settings, old)
    new = issue_token(settings, subject="reader-1", role="radiologist", facility="F1")
    assert verify_token(settings, new).subject == "reader-1"


def test_a_removed_key_is_made_again(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", database_url=None, mlflow_tracking_uri=None)
    first = signing_key(settings)
    (settings.keys_dir / KEY_FILE).unlink()
    wait_until(lambda: signing_key(settings).kid != first.kid, timeout=10, what="a new signing key made")
    assert (settings.keys_dir / KEY_FILE).exists()


def test_a_key_rewritten_in_place_is_noticed(tmp_path: Path) -> None:
    # The same file (same inode) given another key, as `cp new.pem token-signing-ed25519.pem` does; a file
    # system that reuses a freed inode gives a removed key's successor the same number too. The key kept
    # in memory must not outlive its file's content.
    settings = Settings(home=tmp_path / "home", database_url=None, mlflow_tracking_uri=None)
    first = signing_key(settings)
    other = Settings(home=tmp_path / "other", database_url=None, mlflow_tracking_uri=None)
    replacement = signing_key(other)
    path = settings.keys_dir / KEY_FILE
    inode = path.stat().st_ino
    with open(path, "r+b") as handle:
        handle.truncate(0)
        handle.write((other.keys_dir / KEY_FILE).read_bytes())
    assert path.stat().st_ino == inode
    wait_until(
        lambda: signing_key(settings).kid == replacement.kid, timeout=10, what="the rewritten key in use"
    )
    assert replacement.kid != first.kid
