"""The live status page on the metrics port, tested against real processes: a gateway with a
local and a Slurm backend behind it, read over HTTP and in a real browser (Debian's headless
Chromium driven through chromedriver by selenium).

Set BATCHGATE_STATUS_SCREENSHOT=PATH to save the browser's view of the page there (that is how
docs/status-page.png is made).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from events import next_event
from harness import RunningService, spec, start_service, wait_until

from batchgate.store import Store
from batchgate.v1 import batchgate_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "slurm"))
from slurm_cluster import cancel_tagged, ensure_slurm  # noqa: E402

BROWSER_WAIT = 60.0  # generous: Slurm starts jobs slowly on a loaded machine


@dataclass
class Deployment:
    gateway: RunningService
    local: RunningService
    cluster: RunningService

    def url(self, path: str, service: RunningService | None = None) -> str:
        return f"http://{(service or self.gateway).metrics_address}{path}"

    def get(self, path: str, service: RunningService | None = None) -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(self.url(path, service), timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def get_json(self, path: str, service: RunningService | None = None) -> dict[str, object]:
        status, _, body = self.get(path, service)
        assert status == 200, body
        found: dict[str, object] = json.loads(body)
        return found


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A gateway in front of a local backend and a Slurm one (named "cluster")."""
    ensure_slurm()
    state = tmp_path_factory.mktemp("statuspage")
    local = start_service("local", state / "local", "--cores", "2", "--memory", "2G", "--kill-grace", "1")
    cluster = start_service("slurm", state / "cluster", "--name", "cluster", "--slurm-poll-interval", "0.2")
    gateway = start_service("gateway", state / "gateway", "--backends", f"local={local.address},cluster={cluster.address}")
    try:
        yield Deployment(gateway, local, cluster)
    finally:
        for service in (gateway, local, cluster):
            service.kill()
        store = Store(state / "cluster" / "cluster.sqlite")
        cancel_tagged(store.instance_id())
        store.close()


def run_jobs(deployment: Deployment, *specs: pb.JobSpec) -> list[pb.UpdatedJob]:
    """Issue jobs through the gateway's gRPC API and wait for them to end; their updates, in
    the order of `specs`."""
    stub = deployment.gateway.stub()
    ids = list(stub.IssueJobs(pb.IssueJobsRequest(specs=list(specs))).job_ids)
    found: dict[int, pb.UpdatedJob] = {}
    stream = stub.GetUpdatedJob(pb.GetUpdatedJobRequest(after_sequence=0), timeout=90)
    try:
        for response in stream:
            found.update({update.job_id: update for update in response.updates if update.job_id in ids})
            if len(found) == len(ids):
                break
    finally:
        stream.cancel()
    return [found[job_id] for job_id in ids]


def start_sleepers(deployment: Deployment, *where: tuple[str, str]) -> list[int]:
    """Jobs that run until killed, one per (backend, job set)."""
    specs = [spec("sleep 300", backend=backend, job_set=job_set) for backend, job_set in where]
    return list(deployment.gateway.stub().IssueJobs(pb.IssueJobsRequest(specs=specs)).job_ids)


# ---- over HTTP -------------------------------------------------------------------------------


def test_metrics_are_still_served_for_prometheus(deployment: Deployment) -> None:
    status, headers, body = deployment.get("/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert b'batchgate_jobs{backend="gateway",state="queued"}' in body
    assert b'batchgate_backend_up{backend="gateway",target="cluster"} 1.0' in body
    # As Prometheus asks: OpenMetrics, compressed.
    request = urllib.request.Request(
        deployment.url("/metrics"), headers={"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.headers["Content-Encoding"] == "gzip"
        exposition = gzip.decompress(response.read())
    assert b"batchgate_jobs_issued_total" in exposition and exposition.endswith(b"# EOF\n")


def test_the_overview_names_each_backend_with_its_health_and_capabilities(deployment: Deployment) -> None:
    overview = deployment.get_json("/api/overview")
    assert overview["service"] == "gateway" and overview["gateway"] is True
    backends = {backend["name"]: backend for backend in overview["backends"]}  # type: ignore[attr-defined, index]
    assert set(backends) == {"local", "cluster"}
    assert all(backend["healthy"] for backend in backends.values())
    assert backends["local"]["capabilities"]["kind"] == "local"
    assert backends["local"]["capabilities"]["max_cores"] == 2
    assert backends["cluster"]["capabilities"]["kind"] == "slurm"
    # A backend's own page speaks for itself alone.
    own = deployment.get_json("/api/overview", deployment.local)
    assert [backend["name"] for backend in own["backends"]] == ["local"]  # type: ignore[attr-defined, index]


def test_live_jobs_are_counted_by_backend_and_job_set(deployment: Deployment) -> None:
    stub = deployment.gateway.stub()
    ids = start_sleepers(deployment, ("local", "counted-a"), ("cluster", "counted-b"))
    try:
        wanted = {("local", "counted-a"), ("cluster", "counted-b")}

        def counted() -> bool:
            rows = deployment.get_json("/api/overview")["jobs"]
            seen = {(row["backend"], row["job_set"]): row for row in rows}  # type: ignore[attr-defined, index]
            return all(key in seen and seen[key]["running"] == 1 and seen[key]["queued"] == 0 for key in wanted)

        wait_until(counted, 60, 0.2, message="both jobs counted as running")
        assert deployment.get_json("/api/overview")["totals"]["running"] >= 2  # type: ignore[index]
    finally:
        stub.KillJobs(pb.KillJobsRequest(job_ids=ids))
    rows = deployment.get_json("/api/overview")["jobs"]
    assert not [row for row in rows if row["job_set"] in ("counted-a", "counted-b")]  # type: ignore[attr-defined, index]


def test_a_jobs_json_has_its_spec_timeline_scheduler_id_and_update(deployment: Deployment) -> None:
    command = "echo to stdout; echo to stderr >&2; exit 3"
    (update,) = run_jobs(deployment, spec(command, backend="cluster", job_set="json", name="three"))
    job = deployment.get_json(f"/api/jobs/{update.job_id}")
    assert job["state"] == "ended" and job["backend"] == "cluster" and job["job_set"] == "json"
    assert job["spec"]["command"] == command and job["spec"]["name"] == "three"  # type: ignore[index]
    assert job["scheduler_id"] == update.backing_id and update.backing_id.isdigit()  # Slurm's job id
    assert [step["event"] for step in job["timeline"]] == ["issued", "started", "ended"]  # type: ignore[attr-defined, index]
    assert job["update"]["exit_reason"] == "FAILED" and job["update"]["exit_status"] == 3  # type: ignore[index]
    assert job["output"] == {"stdout": {"text": "to stdout\n"}, "stderr": {"text": "to stderr\n"}}  # from Slurm's files
    status, _, body = deployment.get("/api/jobs/999999")
    assert status == 404 and b"no job 999999" in body


def test_the_event_stream_sends_each_new_update_as_it_is_published(deployment: Deployment) -> None:
    after = deployment.get_json("/api/overview")["last_sequence"]
    connection = http.client.HTTPConnection(deployment.gateway.metrics_address, timeout=60)
    try:
        connection.request("GET", f"/events?after={after}")
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
        (update,) = run_jobs(deployment, spec("true", backend="local", job_set="sse"))
        event = next_event(response, "updates")
        assert event["id"] == str(update.sequence)
        (data,) = json.loads(event["data"])
        assert (data["job_id"], data["job_set"], data["backend"], data["exit_reason"]) == (update.job_id, "sse", "local", "FINISHED")
    finally:
        connection.close()


def test_the_page_is_read_only_and_serves_nothing_but_its_own_files(deployment: Deployment) -> None:
    request = urllib.request.Request(deployment.url("/api/overview"), data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/app.py", "/etc/passwd", "/jobs/abc"):
        status, _, _ = deployment.get(path)
        assert status == 404, path
    status, _, _ = deployment.get("/api/updates?limit=0")
    assert status == 400
    with socket.create_connection(deployment.gateway.metrics_address.rsplit(":", 1)) as raw:  # type: ignore[arg-type]
        raw.sendall(b"BREW /pot HTCPCP/1.0\r\n\r\n")
        assert raw.makefile("rb").readline().startswith(b"HTTP/1.1 400")
    head = http.client.HTTPConnection(deployment.gateway.metrics_address, timeout=10)
    head.request("HEAD", "/")
    answer = head.getresponse()
    assert answer.status == 200 and int(answer.getheader("Content-Length")) > 0 and answer.read() == b""
    head.close()


# ---- in a real browser -----------------------------------------------------------------------


def test_in_a_browser_jobs_appear_live_and_a_job_has_its_page(deployment: Deployment, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    assert isinstance(browser, WebDriver)
    screenshot = os.environ.get("BATCHGATE_STATUS_SCREENSHOT")
    wait = WebDriverWait(browser, BROWSER_WAIT)

    def texts(selector: str) -> list[str]:
        """The text of each element `selector` matches, read at one instant (the page redraws
        parts of itself as events arrive: an element found earlier may be gone)."""
        found: list[str] = browser.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map((node) => node.textContent)", selector
        )
        return found

    def live_rows() -> list[list[str]]:
        """The live jobs table's rows: backend, job set, queued, running."""
        rows: list[list[str]] = browser.execute_script(
            "return [...document.querySelectorAll('#jobs tbody tr')].map((row) => [...row.cells].map((cell) => cell.textContent))"
        )
        return rows

    browser.get(deployment.url("/"))
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "connection"), "live"))
    wait.until(lambda _: sorted(texts("#backends .card h3")) == ["clusterup", "localup"])  # name, then health
    browser.execute_script("window.loadedOnce = true")  # gone if the page reloads

    # Running jobs show in the live counts; jobs that end show in the updates as they end.
    stub = deployment.gateway.stub()
    sleepers = start_sleepers(deployment, ("cluster", "workflow-7"), ("local", "workflow-8"))
    try:
        for expected in (["cluster", "workflow-7", "0", "1"], ["local", "workflow-8", "0", "1"]):
            wait.until(
                lambda _, expected=expected: expected in live_rows()
            )
        updates = run_jobs(
            deployment,
            spec("sleep 1", backend="local", job_set="workflow-7", name="align"),
            spec("exit 3", backend="cluster", job_set="workflow-7", name="call-variants"),
            spec("true", backend="local", job_set="workflow-8", working_directory="/nonexistent/batchgate-statuspage"),
            spec("true", backend="cluster", job_set="workflow-8", name="report"),
        )

        def row_of(update: pb.UpdatedJob) -> list[str]:
            return texts(f'#updates tbody tr[data-sequence="{update.sequence}"] td')

        for update in updates:
            wait.until(lambda _, update=update: row_of(update))
            job, job_set, backend, reason, status, _wall_time, message = row_of(update)
            assert (job, job_set, backend) == (str(update.job_id), update.job_set, update.backend)
            reason_name = pb.ExitReason.Name(update.exit_reason).removeprefix("EXIT_REASON_")
            assert (reason, status, message) == (reason_name, str(update.exit_status), update.message)
        assert browser.execute_script("return window.loadedOnce") is True, "the page reloaded"
        cannot_start = updates[2]
        assert cannot_start.exit_reason == pb.EXIT_REASON_ERROR and "/nonexistent/batchgate-statuspage" in cannot_start.message
        if screenshot:
            browser.save_screenshot(screenshot)
        # The page of a running job follows it live: killed, it says so without a reload.
        browser.get(deployment.url(f"/jobs/{sleepers[0]}"))
        wait.until(expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, "#summary .pill"), "running"))
        browser.execute_script("window.loadedOnce = true")
    finally:
        stub.KillJobs(pb.KillJobsRequest(job_ids=sleepers))
    wait.until(expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, "#summary .pill"), "killed"))
    assert [event.lower() for event in texts("#timeline li strong")] == ["issued", "started", "killed"]
    assert browser.execute_script("return window.loadedOnce") is True, "the job page reloaded"
    browser.back()
    wait.until(lambda _: not [row for row in live_rows() if "workflow-7" in row or "workflow-8" in row])

    # The failed Slurm job's page: its spec, timeline, scheduler id and message.
    exit_3 = updates[1]
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, f'#updates tbody tr[data-sequence="{exit_3.sequence}"] a')))
    browser.find_element(By.CSS_SELECTOR, f'#updates tbody tr[data-sequence="{exit_3.sequence}"] a').click()
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "title"), f"Job {exit_3.job_id}"))
    summary = browser.find_element(By.ID, "summary").text
    assert "FAILED" in summary and "cluster" in summary and "workflow-7" in summary
    assert exit_3.backing_id in summary
    spec_shown = browser.find_element(By.ID, "spec").text
    assert "exit 3" in spec_shown and "call-variants" in spec_shown
    assert [event.lower() for event in texts("#timeline li strong")] == ["issued", "started", "ended"]
    assert browser.find_element(By.ID, "output-section").is_displayed()
    assert browser.find_element(By.ID, "stdout").text == "(empty)"  # `exit 3` wrote nothing
    if screenshot:
        browser.save_screenshot(str(Path(screenshot).with_name(Path(screenshot).stem + "-job.png")))


def test_a_service_stops_promptly_while_someone_watches_its_page(local_service: RunningService) -> None:
    connection = http.client.HTTPConnection(local_service.metrics_address, timeout=60)
    try:
        connection.request("GET", "/events")
        response = connection.getresponse()
        assert response.status == 200
        assert response.readline() == b"retry: 2000\n"
        assert local_service.stop() == 0  # graceful: the open event stream does not hold it up
        assert response.read() is not None  # the stream ends (EOF) rather than hanging
    finally:
        connection.close()
