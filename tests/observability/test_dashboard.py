"""deploy/: the Prometheus config is valid, the alert rules pass their unit tests, and every query
of the Grafana dashboard runs against a real Prometheus scraping real services (gateway, local
and Slurm backends) and finds data, the alerts panel included."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import RunningService, collect_updates, spec, start_service, wait_until

from batchgate.v1 import batchgate_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "slurm"))
from slurm_cluster import cancel_tagged, ensure_slurm  # noqa: E402

from batchgate.store import Store  # noqa: E402

DASHBOARD = ROOT / "deploy" / "grafana" / "batchgate.json"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus.yml"
ALERT_RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
# What Grafana puts in place of the dashboard's variables: every backend, a rate window that
# holds several scrapes.
VARIABLES = {"$backend": ".*", "$__rate_interval": "1m"}


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target in the dashboard."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel.get("targets", [])]


def test_the_prometheus_config_is_valid() -> None:
    checked = subprocess.run(["promtool", "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alert_rules_pass_their_unit_tests() -> None:
    tested = subprocess.run(["promtool", "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


class Prometheus:
    """A real Prometheus server scraping the given metrics addresses every second, with
    batchgate's alert rules evaluated every second."""

    def __init__(self, state: Path, targets: list[str]) -> None:
        state.mkdir(parents=True)
        config = state / "prometheus.yml"
        config.write_text(
            json.dumps(  # YAML is a superset of JSON
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(ALERT_RULES)],
                    "scrape_configs": [{"job_name": "batchgate", "static_configs": [{"targets": targets}]}],
                }
            )
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{probe.getsockname()[1]}"
        self._log = open(state / "prometheus.log", "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={state / 'data'}",
                f"--web.listen-address={self.address}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, 30, 0.2, message="Prometheus to start")

    def _ready(self) -> bool:
        assert self.process.poll() is None, "Prometheus exited; see prometheus.log"
        try:
            with urllib.request.urlopen(f"http://{self.address}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def get(self, path: str, **parameters: str) -> dict[str, object]:
        url = f"http://{self.address}{path}?{urllib.parse.urlencode(parameters)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            answer: dict[str, object] = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer

    def query(self, expression: str) -> list[object]:
        result = self.get("/api/v1/query", query=expression)["data"]["result"]  # type: ignore[index]
        return list(result)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._log.close()


@pytest.fixture
def busy_services(tmp_path: Path) -> Iterator[list[RunningService]]:
    """A gateway in front of a local and a Slurm backend (named "cluster"), and of one that is
    gone (an alert), after a little of everything: jobs that finish, fail and are killed, on both
    backends that are there."""
    ensure_slurm()
    local = start_service("local", tmp_path / "local", "--cores", "2", "--kill-grace", "1")
    slurm = start_service("slurm", tmp_path / "slurm", "--name", "cluster", "--slurm-poll-interval", "0.2")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        gone = f"127.0.0.1:{unused.getsockname()[1]}"
    backends = f"local={local.address},cluster={slurm.address},gone={gone}"
    gateway = start_service("gateway", tmp_path / "gateway", "--backends", backends)
    services = [gateway, local, slurm]
    try:
        stub = gateway.stub()
        specs = [spec("true", backend="local"), spec("exit 3", backend="local"), spec("true", backend="cluster")]
        stub.IssueJobs(pb.IssueJobsRequest(specs=specs))
        (sleeper,) = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("sleep 300", backend="local")])).job_ids
        collect_updates(stub, len(specs))
        stub.KillJobs(pb.KillJobsRequest(job_ids=[sleeper]))
        yield services
    finally:
        for service in services:
            service.kill()
        store = Store(tmp_path / "slurm" / "cluster.sqlite")
        cancel_tagged(store.instance_id())
        store.close()


def test_every_dashboard_query_finds_data(busy_services: list[RunningService], tmp_path: Path) -> None:
    prometheus = Prometheus(tmp_path / "prometheus", [service.metrics_address for service in busy_services])
    try:
        queries = dashboard_queries()
        assert queries
        answers: dict[str, list[object]] = {}

        def all_answered() -> bool:
            for title, expression in queries:
                for name, value in VARIABLES.items():
                    expression = expression.replace(name, value)
                answers[title] = prometheus.query(expression)  # a query Prometheus refuses fails here
            return all(answers.values())

        deadline = time.monotonic() + 60
        while not all_answered():
            empty = [title for title, found in answers.items() if not found]
            assert time.monotonic() < deadline, f"no data for: {empty}"
            time.sleep(1)

        # The dashboard's backend picker offers every service, and picking one shows all of its
        # series: the scheduler's commands too are labelled with the service's name.
        variable = json.loads(DASHBOARD.read_text())["templating"]["list"][1]["definition"]
        metric = variable.removeprefix("label_values(").split(",")[0]
        backends = prometheus.get("/api/v1/label/backend/values", **{"match[]": metric})["data"]
        assert set(backends) == {"gateway", "local", "cluster"}  # type: ignore[arg-type]
        commands = prometheus.query("batchgate_scheduler_commands_total")
        assert {series["metric"]["backend"] for series in commands} == {"cluster"}  # type: ignore[index]
        # The one backend that is gone is the one alert, and only it.
        alerts = prometheus.query('ALERTS{alertname=~"Batchgate.*"}')
        assert {(a["metric"]["alertname"], a["metric"].get("target")) for a in alerts} == {  # type: ignore[index]
            ("BatchgateBackendUnreachable", "gone")
        }
    finally:
        prometheus.stop()
