"""Bearer tokens: who a caller is (its tenant) and which job sets it may use.

A service started with `--tokens-file FILE` wants `authorization: Bearer TOKEN` on every
BatchSystem call. The file holds no token, only each token's SHA-256, one token a line:

    # tenant  token hash            grants
    alice     sha256:9f86d08...     job-sets=alice-*,shared
    ops       sha256:60303ae...     job-sets=* see-all env-all
    gateway   sha256:fd61a03...     job-sets=gateway-*

Grants:
- `job-sets=P,...`: the job sets the tenant may use (issue, check, kill, list, watch, SetEnv in):
  exact names, or prefixes ending in `*` (`*` alone: every job set);
- `see-all`: it may also list and watch every job set (read only), e.g. a dashboard;
- `env-all`: it may SetEnv for every job set at once (SetEnv with no job set).

Tokens are 256 random bits (`batchgate token`), so a plain SHA-256 of one cannot be turned back
into it by guessing: no slow KDF is needed, and checking a call costs one hash. A tenant may have
several lines (several tokens, e.g. while rotating one). The file is read at start and again on
SIGHUP; a file that does not parse on SIGHUP leaves the tokens as they were, and says why.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import logging
import re
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from batchgate.errors import Unauthenticated

log = logging.getLogger(__name__)

HASH_PREFIX = "sha256:"
TOKEN_PREFIX = "bg_"
METADATA_KEY = "authorization"
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
TENANT_NAME_RULE = "tenant name {name!r} must be letters, digits, '_', '.', '@' or '-'"
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Tenant:
    """What one token grants."""

    name: str
    job_sets: tuple[str, ...] = ()  # exact names, or prefixes ending in '*'
    see_all: bool = False
    env_all: bool = False

    def may_use(self, job_set: str) -> bool:
        """Issue, check, kill and SetEnv in `job_set` (and read it)."""
        return any(job_set == grant or (grant.endswith("*") and job_set.startswith(grant[:-1])) for grant in self.job_sets)

    def may_see(self, job_set: str) -> bool:
        """List, watch and read the status of `job_set` ('' meaning every job set)."""
        return self.see_all or (bool(job_set) and self.may_use(job_set))

    def may_set_env(self, job_set: str) -> bool:
        """SetEnv for `job_set` ('' meaning every job set)."""
        return self.env_all if not job_set else self.may_use(job_set)

    def describe_grants(self) -> str:
        return ", ".join(self.job_sets) or "none"


# The caller when the service wants no token: everything, as before authentication existed.
ANYONE = Tenant("anonymous", job_sets=("*",), see_all=True, env_all=True)


def hash_token(token: str) -> str:
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def tokens_file_line(tenant: Tenant, token: str) -> str:
    words = [tenant.name, hash_token(token)]
    if tenant.job_sets:
        words.append("job-sets=" + ",".join(tenant.job_sets))
    if tenant.see_all:
        words.append("see-all")
    if tenant.env_all:
        words.append("env-all")
    return " ".join(words)


class TokensFileError(ValueError):
    pass


def parse_tokens_file(text: str, source: str) -> dict[str, Tenant]:
    """Token hash -> tenant; raises TokensFileError naming the line that is wrong."""
    tenants: dict[str, Tenant] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{source}, line {number}"
        if len(words) < 2:
            raise TokensFileError(f"{where}: expected TENANT sha256:HASH [job-sets=...] [see-all] [env-all]")
        name, token_hash, *grants = words
        if not _TENANT.match(name):
            raise TokensFileError(f"{where}: {TENANT_NAME_RULE.format(name=name)}")
        if not _HASH.match(token_hash):
            # Never echo the word: it may be a token pasted by mistake.
            raise TokensFileError(f"{where}: the second word must be sha256: and 64 hex digits (batchgate token makes the line)")
        if token_hash in tenants:
            raise TokensFileError(f"{where}: this token hash is already given to tenant {tenants[token_hash].name!r}")
        tenants[token_hash] = _tenant(name, grants, where)
    return tenants


def _tenant(name: str, grants: Sequence[str], where: str) -> Tenant:
    job_sets: tuple[str, ...] = ()
    flags = {"see-all": False, "env-all": False}
    for grant in grants:
        key, equals, value = grant.partition("=")
        if key == "job-sets" and equals:
            job_sets = tuple(part for part in value.split(",") if part)
            for pattern in job_sets:
                if "*" in pattern[:-1]:
                    raise TokensFileError(f"{where}: job set {pattern!r}: '*' may only end a prefix")
        elif grant in flags:
            flags[grant] = True
        else:
            raise TokensFileError(f"{where}: unknown grant {grant!r} (job-sets=..., see-all, env-all)")
    return Tenant(name, job_sets, see_all=flags["see-all"], env_all=flags["env-all"])


class Tokens:
    """The tokens a service accepts, from its tokens file; None of a file: no token wanted."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._by_hash: dict[str, Tenant] = {}
        if path is not None:
            self._by_hash = self._read(path)

    @property
    def required(self) -> bool:
        return self.path is not None

    @staticmethod
    def _read(path: Path) -> dict[str, Tenant]:
        try:
            text = path.read_text()
        except OSError as error:
            raise TokensFileError(f"cannot read the tokens file {path}: {error.strerror}") from None
        return parse_tokens_file(text, str(path))

    def reload(self) -> None:
        """Read the file again (SIGHUP); on an error keep the tokens as they were."""
        if self.path is None:
            return
        try:
            self._by_hash = self._read(self.path)
        except TokensFileError as error:
            log.error("tokens file not reloaded, the old tokens stay in force: %s", error)
            return
        log.info("tokens file reloaded: %d token(s) of %d tenant(s)", len(self._by_hash), len(self.tenant_names()))

    def tenant_names(self) -> set[str]:
        return {tenant.name for tenant in self._by_hash.values()}

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Tenant:
        """The tenant whose token the call carries; raises Unauthenticated. Anyone, when no
        token is wanted."""
        if self.path is None:
            return ANYONE
        presented = [value for key, value in metadata or () if key == METADATA_KEY]
        if len(presented) != 1 or not isinstance(presented[0], str):
            raise Unauthenticated(
                "this service wants a bearer token: send the metadata 'authorization: Bearer TOKEN' "
                "(batchgate --token, or $BATCHGATE_TOKEN)"
            )
        scheme, _, token = presented[0].partition(" ")
        tenant = self._by_hash.get(hash_token(token.strip())) if scheme.lower() == "bearer" else None
        if tenant is None:
            raise Unauthenticated("the bearer token is not valid here (unknown, or revoked)")
        return tenant


# ---- where a service may listen -----------------------------------------------------------


def is_loopback(listen: str) -> bool:
    """Whether HOST:PORT (or unix:PATH) can be reached from this machine alone."""
    if listen.startswith("unix:"):
        return True
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, or '' / 0.0.0.0: possibly reachable from elsewhere


def refuse_unprotected(listen: str, *, tls: bool, tokens: bool, insecure_public: bool) -> None:
    """Refuse (SystemExit) to serve off loopback with neither TLS nor tokens, unless told to."""
    if is_loopback(listen) or tls or tokens or insecure_public:
        return
    raise SystemExit(
        f"batchgate: refusing to serve on {listen} with neither TLS (--tls-cert) nor tokens (--tokens-file): "
        "anyone who can reach it could run commands as this service's user. Protect it, listen on "
        "127.0.0.1, or pass --insecure-public if something else protects it."
    )


# ---- `batchgate token` ----------------------------------------------------------------------


def token_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="batchgate token",
        description="Make a bearer token for a tenant: prints the token (give it to the tenant; it is kept "
        "nowhere) and the line to add to the service's --tokens-file (then send the service SIGHUP).",
    )
    parser.add_argument("tenant", help="who the token is for (it appears in the audit log)")
    parser.add_argument(
        "--job-sets",
        default="",
        metavar="P,...",
        help="job sets it may use: exact names, or prefixes ending in '*' ('*' alone: every one)",
    )
    parser.add_argument("--see-all", action="store_true", help="it may also list and watch every job set")
    parser.add_argument("--env-all", action="store_true", help="it may SetEnv for every job set at once")
    parser.add_argument("--append", metavar="FILE", help="append the line to this tokens file instead of printing it")
    args = parser.parse_args(argv)
    if not _TENANT.match(args.tenant):
        parser.error(TENANT_NAME_RULE.format(name=args.tenant))
    job_sets = tuple(part for part in args.job_sets.split(",") if part)
    token = new_token()
    line = tokens_file_line(Tenant(args.tenant, job_sets, see_all=args.see_all, env_all=args.env_all), token)
    try:
        parse_tokens_file(line, "the new line")  # the same rules as the service's
    except TokensFileError as error:
        parser.error(str(error).removeprefix("the new line, line 1: "))
    if args.append:
        path = Path(args.append)
        existing = path.read_text() if path.exists() else ""
        separator = "" if not existing or existing.endswith("\n") else "\n"
        with path.open("a") as tokens_file:
            path.chmod(0o600)
            tokens_file.write(f"{separator}{line}\n")
        print(token)
        print(f"added tenant {args.tenant!r} to {path}; send the service SIGHUP to take it in", file=sys.stderr)
        return 0
    print(f"token: {token}")
    print(f"tokens file line: {line}")
    return 0
