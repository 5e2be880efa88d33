"""The tokens file's rules and what each grant allows, and where a service counts as loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from harness import start_service

from batchgate.auth import Tenant, TokensFileError, hash_token, is_loopback, parse_tokens_file

HASH = hash_token("bg_example")


def test_a_line_gives_a_tenant_its_grants() -> None:
    (tenant,) = parse_tokens_file(f"# comment\n\nops {HASH} job-sets=ops,team-* see-all env-all  # trailing\n", "f").values()
    assert tenant == Tenant("ops", ("ops", "team-*"), see_all=True, env_all=True)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("alice", "expected TENANT sha256:HASH"),
        ("alice bg_plaintext-token job-sets=a", "sha256: and 64 hex digits"),
        (f"alice {HASH} job-sets=a*b", "'*' may only end a prefix"),
        (f"alice {HASH} admin", "unknown grant 'admin'"),
        (f"al ice {HASH}", "must be sha256:"),
        (f"alice {HASH}\nbob {HASH}", "line 2: this token hash is already given to tenant 'alice'"),
    ],
)
def test_a_wrong_line_is_refused_naming_it_and_never_echoing_a_token(line: str, says: str) -> None:
    with pytest.raises(TokensFileError) as refused:
        parse_tokens_file(line, "tokens")
    assert says in str(refused.value)
    assert "bg_plaintext-token" not in str(refused.value)


def test_what_each_grant_allows() -> None:
    alice = Tenant("alice", ("alice-*", "shared"))
    assert alice.may_use("alice-1") and alice.may_use("alice-") and alice.may_use("shared")
    assert not alice.may_use("shared-2") and not alice.may_use("bob") and not alice.may_use("")
    assert not alice.may_see("") and alice.may_see("shared") and not alice.may_see("bob")
    assert not alice.may_set_env("") and alice.may_set_env("alice-x")
    reader = Tenant("dashboard", (), see_all=True)
    assert reader.may_see("") and reader.may_see("bob") and not reader.may_use("bob") and not reader.may_set_env("bob")
    admin = Tenant("admin", ("*",), env_all=True)
    assert admin.may_use("") and admin.may_use("anything") and admin.may_set_env("")


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [("127.0.0.1:1", True), ("127.3.0.1:1", True), ("localhost:1", True), ("[::1]:1", True), ("unix:/tmp/s", True),
     ("0.0.0.0:1", False), ("[::]:1", False), ("10.1.2.3:1", False), ("example.org:1", False)],
)  # fmt: skip
def test_loopback_addresses(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


def test_a_service_with_a_broken_tokens_file_does_not_start(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice {HASH} job-sets=alice-*\nbob sha256:short\n")
    with pytest.raises(RuntimeError) as refused:
        start_service("local", tmp_path / "local", "--tokens-file", str(tokens))
    assert f"{tokens}, line 2" in str(refused.value)


def test_the_token_command_refuses_a_bad_tenant_name() -> None:
    batchgate = str(Path(sys.executable).parent / "batchgate")
    made = subprocess.run([batchgate, "token", "no spaces", "--job-sets", "x"], capture_output=True, text=True)
    assert made.returncode == 2 and "tenant name" in made.stderr and "bg_" not in made.stdout
