"""The bodies of ``dxassist backup``, one module per concern (:mod:`inference._backup_cli` names them)."""
