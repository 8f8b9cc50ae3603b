"""Test certificates: an authority and, signed by it, a server and a client certificate for 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from http.server import HTTPServer
from pathlib import Path


def certificates(folder: Path, *, also: tuple[tuple[str, str], ...] = ()) -> dict[str, Path]:
    """A test authority and, signed by it, a server and a client certificate for 127.0.0.1 (PEM files).

    ``also``: more certificates of the same authority, ``(stem, common name)`` each (``<stem>_cert`` and
    ``<stem>_key``), e.g. a node's second key under the same name.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def certificate(name: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey) -> bytes:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dxassist test authority")]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=key is signer, path_length=None), critical=True)
        )
        if key is not signer:
            # Its address, and a DNS name of its own (``<name>.node.example``).
            san = x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName(f"{name}.node.example")]
            )
            builder = builder.add_extension(san, critical=False)
        return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def private(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    authority = ec.generate_private_key(ec.SECP256R1())
    paths = {"ca": folder / "ca.pem"}
    paths["ca"].write_bytes(certificate("dxassist test authority", authority, authority))
    for who, name in (("server", "server"), ("client", "client"), *also):
        key = ec.generate_private_key(ec.SECP256R1())
        paths[f"{who}_cert"] = folder / f"{who}.pem"
        paths[f"{who}_key"] = folder / f"{who}.key"
        paths[f"{who}_cert"].write_bytes(certificate(name, key, authority))
        paths[f"{who}_key"].write_bytes(private(key))
    return paths


def serve_tls(server: HTTPServer, certificate: Path, key: Path) -> None:
    """Make ``server`` (not serving yet) speak HTTPS with ``certificate`` and ``key``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
