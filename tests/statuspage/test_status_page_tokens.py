"""The status page of a service with tokens: its data only for a tenant with a valid token, and
of each tenant's job sets only (as its gRPC API answers), over HTTP and in a real browser.

A gateway with a tokens file in front of a local backend; alice may use alice-*, bob bob-*, and
the operator sees every job set.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from events import next_event
from harness import RunningService, spec, start_service, wait_until

from batchgate.auth import Tenant, new_token, tokens_file_line
from batchgate.client.batch_client import open_channel
from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc

TENANTS = {
    "alice": Tenant("alice", ("alice-*",)),
    "bob": Tenant("bob", ("bob-*",)),
    "operator": Tenant("operator", see_all=True),
}


@dataclass
class Tenanted:
    gateway: RunningService
    tokens: dict[str, str]  # tenant -> its token
    channels: dict[str, grpc.Channel]

    def stub(self, tenant: str) -> pb_grpc.BatchSystemStub:
        return pb_grpc.BatchSystemStub(self.channels[tenant])

    def get(self, path: str, *, tenant: str | None = None, token: str | None = None, cookie: bool = False) -> tuple[int, dict[str, str], bytes]:
        """GET `path`, as `tenant` (its token in the Authorization header, or in the page's
        cookie), or with `token` as given, or with none."""
        token = self.tokens[tenant] if tenant else token
        headers = {}
        if token is not None:
            headers = {"Cookie": f"batchgate_token={urllib.parse.quote(token)}"} if cookie else {"Authorization": f"Bearer {token}"}
        connection = http.client.HTTPConnection(self.gateway.metrics_address, timeout=10)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def get_json(self, path: str, tenant: str) -> dict[str, object]:
        status, _, body = self.get(path, tenant=tenant)
        assert status == 200, body
        found: dict[str, object] = json.loads(body)
        return found

    def run(self, tenant: str, job_set: str, command: str = "true") -> pb.UpdatedJob:
        """Issue one job as `tenant` and wait for its update."""
        stub = self.stub(tenant)
        (job_id,) = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec(command, job_set=job_set)])).job_ids
        stream = stub.GetUpdatedJob(pb.GetUpdatedJobRequest(after_sequence=0, job_set=job_set), timeout=60)
        try:
            for response in stream:
                for update in response.updates:
                    if update.job_id == job_id:
                        return update
        finally:
            stream.cancel()
        raise AssertionError(f"no update for job {job_id}")


@pytest.fixture(scope="module")
def tenanted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenanted]:
    state = tmp_path_factory.mktemp("statuspage-tokens")
    tokens = {name: new_token() for name in TENANTS}
    (state / "tokens").write_text("".join(tokens_file_line(TENANTS[name], token) + "\n" for name, token in tokens.items()))
    local = start_service("local", state / "local", "--cores", "2", "--memory", "2G", "--kill-grace", "1")
    gateway = start_service("gateway", state / "gateway", "--backends", f"local={local.address}", "--tokens-file", str(state / "tokens"))
    channels = {name: open_channel(gateway.address, token=token) for name, token in tokens.items()}
    try:
        yield Tenanted(gateway, tokens, channels)
    finally:
        for channel in channels.values():
            channel.close()
        gateway.kill()
        local.kill()


def test_the_data_wants_a_valid_token_and_the_page_itself_does_not(tenanted: Tenanted) -> None:
    for path in ("/api/overview", "/api/updates", "/api/jobs/1", "/events"):
        for token in (None, "bg_not-a-token-of-this-service"):
            status, headers, body = tenanted.get(path, token=token)
            assert status == 401, (path, token)
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert json.loads(body)["token_wanted"] is True
    for path in ("/", "/jobs/1", "/static/status.js"):
        assert tenanted.get(path)[0] == 200, path  # files with no data in them: they ask for the token
    status, _, body = tenanted.get("/metrics")  # Prometheus scrapes without a token: no job set is named there
    assert status == 200 and b"batchgate_" in body


def test_each_tenant_sees_only_its_own_job_sets(tenanted: Tenanted) -> None:
    mine = tenanted.run("alice", "alice-1", "exit 3")
    theirs = tenanted.run("bob", "bob-1")
    sleepers = {
        tenant: tenanted.stub(tenant).IssueJob(pb.IssueJobRequest(spec=spec("sleep 300", job_set=f"{tenant}-live"))).job_id
        for tenant in ("alice", "bob")
    }
    try:
        def rows(tenant: str) -> list[tuple[str, int]]:
            overview = tenanted.get_json("/api/overview", tenant)
            return sorted((row["job_set"], row["running"]) for row in overview["jobs"])  # type: ignore[attr-defined, index]

        wait_until(lambda: rows("operator") == [("alice-live", 1), ("bob-live", 1)], message="both sleepers running")
        assert rows("alice") == [("alice-live", 1)]
        assert tenanted.get_json("/api/overview", "alice")["totals"] == {"queued": 0, "running": 1}

        def job_sets_updated(tenant: str) -> set[str]:
            updates = tenanted.get_json("/api/updates?limit=500", tenant)["updates"]
            return {update["job_set"] for update in updates}  # type: ignore[attr-defined, index]

        assert job_sets_updated("alice") == {"alice-1"}
        assert job_sets_updated("operator") >= {"alice-1", "bob-1"}
        # A job of another tenant's is answered as one that does not exist.
        job = tenanted.get_json(f"/api/jobs/{mine.job_id}", "alice")
        assert job["job_set"] == "alice-1" and job["update"]["exit_status"] == 3  # type: ignore[index]
        status, _, body = tenanted.get(f"/api/jobs/{theirs.job_id}", tenant="alice")
        missing_status, _, missing = tenanted.get("/api/jobs/999999", tenant="alice")
        assert (status, missing_status) == (404, 404)
        assert json.loads(body)["error"] == f"no job {theirs.job_id} on gateway" and "999999" in json.loads(missing)["error"]
    finally:
        for tenant, job_id in sleepers.items():
            tenanted.stub(tenant).KillJobs(pb.KillJobsRequest(job_ids=[job_id]))


def test_the_live_feed_carries_only_the_viewer_s_updates(tenanted: Tenanted) -> None:
    after = tenanted.get_json("/api/overview", "operator")["last_sequence"]
    connection = http.client.HTTPConnection(tenanted.gateway.metrics_address, timeout=60)
    try:  # as a browser's EventSource asks: with the page's cookie
        connection.request("GET", f"/events?after={after}", headers={"Cookie": f"theme=dark; batchgate_token={tenanted.tokens['alice']}"})
        response = connection.getresponse()
        assert response.status == 200
        hidden = tenanted.run("bob", "bob-2")
        shown = tenanted.run("alice", "alice-2")
        event = next_event(response, "updates")
        assert [update["job_id"] for update in json.loads(event["data"])] == [shown.job_id]
        assert hidden.sequence < shown.sequence  # bob's came first, and was not sent
    finally:
        connection.close()


def test_in_a_browser_the_page_asks_for_a_token_then_shows_the_tenant_s_jobs(tenanted: Tenanted, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    assert isinstance(browser, WebDriver)
    wait = WebDriverWait(browser, 60)
    mine = tenanted.run("alice", "alice-browser", "echo why >&2; exit 4")
    theirs = tenanted.run("bob", "bob-browser")
    browser.get(f"http://{tenanted.gateway.metrics_address}/")
    field = wait.until(expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, "#token-form input")))
    assert "token" in browser.find_element(By.ID, "token-form").text
    field.send_keys(tenanted.tokens["alice"])
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "connection"), "live"))
    row = f'#updates tbody tr[data-sequence="{mine.sequence}"]'
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, row)))
    assert not browser.find_elements(By.CSS_SELECTOR, f'#updates tbody tr[data-sequence="{theirs.sequence}"]')
    assert not browser.find_elements(By.ID, "token-form")
    # A job page, with the same cookie: its output, and another tenant's job is not found.
    browser.get(f"http://{tenanted.gateway.metrics_address}/jobs/{mine.job_id}")
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "stderr"), "why"))
    browser.get(f"http://{tenanted.gateway.metrics_address}/jobs/{theirs.job_id}")
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "error"), f"no job {theirs.job_id}"))
