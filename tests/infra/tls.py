"""A throwaway test CA and a server certificate for the loopback addresses, made with the openssl CLI."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.infra._util import require_binary, run_checked

DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a test CA and a server certificate signed by it."""

    ca_cert: Path  # ca.crt
    ca_key: Path
    server_cert: Path  # server.crt (leaf only)
    server_key: Path  # server.key (PKCS#8, unencrypted)
    ca_dir: Path  # a directory holding only ca.crt: for `skopeo --cert-dir`, containers certs.d layouts
    hosts: tuple[str, ...]


def _san(hosts: Sequence[str]) -> str:
    entries: list[str] = []
    n_ip = n_dns = 0
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            n_dns += 1
            entries.append(f"DNS.{n_dns} = {host}")
        else:
            n_ip += 1
            entries.append(f"IP.{n_ip} = {host}")
    return "\n".join(entries)


def make_tls_files(directory: Path, hosts: Sequence[str] = DEFAULT_HOSTS, days: int = 7) -> TLSFiles:
    """Create ``ca.crt``/``ca.key`` and ``server.crt``/``server.key`` (P-256) in ``directory``.

    The server certificate carries every entry of ``hosts`` as an IP or DNS subjectAltName
    (Go, which the registry and containerd are written in, ignores the CN).
    """
    openssl = require_binary("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    conf = directory / "openssl.cnf"
    # Our own config: independent of the system openssl.cnf and its default extensions.
    conf.write_text(
        "[req]\n"
        "prompt = no\n"
        "distinguished_name = dn\n"
        "[dn]\n"
        "CN = registry-credential-provider test\n"
        "[v3_ca]\n"
        "basicConstraints = critical,CA:TRUE\n"
        "keyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        "[v3_server]\n"
        "basicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid,issuer\n"
        "subjectAltName = @alt\n"
        "[alt]\n" + _san(hosts) + "\n"
    )
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run_checked(
        [openssl, "req", "-x509", "-new", "-config", str(conf), "-extensions", "v3_ca", *newkey,
         "-subj", "/CN=registry-credential-provider test CA",
         "-keyout", str(ca_key), "-out", str(ca_cert), "-days", str(days)],
        what="openssl: create test CA",
    )  # fmt: skip
    run_checked(
        [openssl, "req", "-new", "-config", str(conf), *newkey, "-keyout", str(key), "-out", str(csr)],
        what="openssl: server key and CSR",
    )
    run_checked(
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
         "-set_serial", "0x" + secrets.token_hex(8), "-days", str(days),
         "-extfile", str(conf), "-extensions", "v3_server", "-out", str(cert)],
        what="openssl: sign server certificate",
    )  # fmt: skip
    ca_dir = directory / "ca-only"
    ca_dir.mkdir(exist_ok=True)
    (ca_dir / "ca.crt").write_bytes(ca_cert.read_bytes())
    return TLSFiles(
        ca_cert=ca_cert, ca_key=ca_key, server_cert=cert, server_key=key, ca_dir=ca_dir, hosts=tuple(hosts)
    )
