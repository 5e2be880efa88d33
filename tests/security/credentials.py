"""Certificates and tokens the security tests make for themselves."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from batchgate.auth import Tenant, new_token, tokens_file_line

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pki:
    """Three CAs, as a deployment would have them: one signs the services' certificates, one the
    users' client certificates (which the gateway accepts), one the gateway's own client
    certificate (the only one the backends accept)."""

    folder: Path

    def path(self, name: str) -> str:
        return str(self.folder / name)

    def server_flags(self, *, client_ca: str) -> list[str]:
        return ["--tls-cert", self.path("server.pem"), "--tls-key", self.path("server.key"), "--tls-client-ca", self.path(client_ca)]

    def client_paths(self, name: str = "user") -> dict[str, str]:
        return {"tls_ca": self.path("service-ca.pem"), "tls_cert": self.path(f"{name}.pem"), "tls_key": self.path(f"{name}.key")}


def _openssl(folder: Path, *arguments: str) -> None:
    subprocess.run(["openssl", *arguments], cwd=folder, check=True, capture_output=True)


def _issue(folder: Path, name: str, ca: str, extensions: str) -> None:
    _openssl(folder, "req", *EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    (folder / f"{name}.ext").write_text(extensions)
    _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")  # fmt: skip


def make_pki(folder: Path) -> Pki:
    for ca in ("service-ca", "user-ca", "gateway-ca"):
        _openssl(folder, "req", "-x509", *EC_KEY, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "1", "-subj", f"/CN={ca}")
    _issue(folder, "server", "service-ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    for user in ("user", "gateway"):
        _issue(folder, user, f"{user}-ca", "extendedKeyUsage=clientAuth\n")
    return Pki(folder)


@dataclass(frozen=True)
class Tokens:
    """A tokens file and the plaintext tokens it stands for (kept by the test alone)."""

    path: Path
    by_tenant: dict[str, str]

    def __getitem__(self, tenant: str) -> str:
        return self.by_tenant[tenant]


TENANTS = (
    Tenant("alice", ("alice-*",)),
    Tenant("bob", ("bob-wf",)),
    Tenant("ops", ("ops",), see_all=True, env_all=True),
    Tenant("gateway", ("gateway-*",)),
)


def write_tokens(path: Path, tenants: tuple[Tenant, ...] = TENANTS) -> Tokens:
    by_tenant = {tenant.name: new_token() for tenant in tenants}
    lines = ["# made by the test"] + [tokens_file_line(tenant, by_tenant[tenant.name]) for tenant in tenants]
    path.write_text("\n".join(lines) + "\n")
    return Tokens(path, by_tenant)
