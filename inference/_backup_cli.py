"""The bodies of ``dxassist backup create | verify | restore`` (the CLI only parses flags).

A backup is a folder: the record and the MLflow store copied through SQLite's online backup API (a
consistent snapshot while ``serve`` and ``listen`` keep filing), the MLflow artifacts, the model cache,
``keys/``, the audit anchor, the DIMSE spool's received studies and dead letters, the output builds'
spool and, when asked, the logs; then ``manifest.json``, written last, names every file with its size
and sha256 (paths relative to the backup: it can be moved) and the audit chain's head found in the
copied record. Without a manifest a folder is not a backup.

A **sealed** backup (``backup create DEST --encrypt-to CUSTODIAN.pub``) is that same folder, staged in
a private folder of the home, then written into ``DEST`` as one file encrypted to the custodian's public
key (``backup.sealed``, :mod:`inference.security._sealing`) beside a manifest that names only that file
(size, sha256, the key's fingerprint) and the audit head; the host that takes it cannot open it, nor can
whoever finds the medium. The manifest also carries a statement signed with the server's backup-signing
key (the sealed file's sha256 and size, the custodian key, when and on which host): ``verify --signer
SERVER.pub`` and ``restore`` check who made it (anyone holding the custodian's public key could seal
one). Once the server has that key (``backup signer``), a plain backup's manifest is signed too (its
sha256, when and on which host): ``--signer`` checks it the same way, and refuses an unsigned one.
A sealed backup is opened into a private folder of the home (``restore``: of its staging folder, beside
the new home), never a shared temporary folder. ``verify`` checks the sealed file as written without the
key and everything inside with it; ``restore`` needs the key.

Messages name files and folders of the installation, never a patient's name, identifier or birth date.

The bodies live in :mod:`inference._backup`, one module per concern (``files``, ``manifest``,
``signing``, ``sealed``, ``create``, ``verify``, ``restore``, ``journal``); the CLI imports them from here.
"""

from inference._backup.create import backup_create
from inference._backup.files import BackupRefused
from inference._backup.restore import backup_restore
from inference._backup.signing import backup_signer_key
from inference._backup.verify import backup_verify

__all__ = ["BackupRefused", "backup_create", "backup_restore", "backup_signer_key", "backup_verify"]
