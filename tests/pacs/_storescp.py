"""dcmtk's ``storescp`` as a PACS that stores only the SOP classes it is configured for.

Many PACS in service accept Comprehensive SR (1.2.840.10008.5.1.4.1.1.88.33) but not Comprehensive 3D SR
(88.34); some accept no SR at all. ``storescp -xf`` takes its presentation contexts from a configuration
profile (the format of dcmtk's ``storescp.cfg``): a context whose SOP class is not in the profile is
rejected with "abstract syntax not supported", as such a PACS answers. Received objects are written to
``out`` (one file per instance).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _pacs_harness import dcmtk, free_port, wait_until

STORESCP_AET = "LEGACYPACS"
# dcmtk's names of the SOP classes (dcuid.h) that a profile may list.
COMPREHENSIVE_SR = "ComprehensiveSRStorage"
SECONDARY_CAPTURE = "SecondaryCaptureImageStorage"


@dataclass(frozen=True)
class StoreScp:
    """A running ``storescp``: its port and the folder it writes what it stores to."""

    port: int
    out: Path

    def destination(self, name: str) -> dict[str, Any]:
        """The ``DXASSIST_DESTINATIONS`` entry of this PACS."""
        return {
            "name": name,
            "kind": "dimse",
            "host": "127.0.0.1",
            "port": self.port,
            "ae_title": STORESCP_AET,
            "calling_ae_title": "DXASSIST",
            "timeout_seconds": 5,
        }

    def stored(self) -> list[Any]:
        """Every dataset stored so far (headers only)."""
        from pydicom import dcmread

        return [dcmread(path, stop_before_pixels=True) for path in sorted(self.out.iterdir())]


def _config(sop_classes: tuple[str, ...]) -> str:
    contexts = "\n".join(
        f"PresentationContext{n} = {name}\\Uncompressed"
        for n, name in enumerate(("VerificationSOPClass", *sop_classes), start=1)
    )
    return (
        "[[TransferSyntaxes]]\n[Uncompressed]\n"
        "TransferSyntax1 = LocalEndianExplicit\nTransferSyntax2 = LittleEndianImplicit\n\n"
        f"[[PresentationContexts]]\n[Accepted]\n{contexts}\n\n"
        "[[Profiles]]\n[Site]\nPresentationContexts = Accepted\n"
    )


@contextmanager
def storescp(
    root: Path, sop_classes: tuple[str, ...], *, port: int | None = None, tls: Sequence[str] = ()
) -> Iterator[StoreScp]:
    """Run ``storescp`` on ``port`` (a free loopback port by default), accepting only ``sop_classes``
    (dcmtk names) and echo; a destination configured with ``port`` earlier is unreachable until then.

    ``tls``: dcmtk's TLS options of the PACS (``+tls key cert +cf ca``: DICOM TLS, a client certificate
    required) and of the echo that waits for it (the same key and certificate).
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "out").mkdir()
    config = root / "storescp.cfg"
    config.write_text(_config(sop_classes))
    port = port or free_port()
    with open(root / "storescp.log", "wb") as log:
        process = subprocess.Popen(
            [dcmtk("storescp"), *tls, "-xf", str(config), "Site", "-aet", STORESCP_AET]
            + ["-od", str(root / "out"), str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def echoes() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"storescp exited at start:\n{(root / 'storescp.log').read_text()}")
            done = subprocess.run(
                [dcmtk("echoscu"), *tls, "-aec", STORESCP_AET, "-to", "2", "127.0.0.1", str(port)],
                capture_output=True,
                check=False,
            )
            return done.returncode == 0

        wait_until(echoes, timeout=30, interval=0.2, what="storescp's C-ECHO")
        yield StoreScp(port=port, out=root / "out")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
