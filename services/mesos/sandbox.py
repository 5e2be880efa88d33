"""A task's stdout and stderr, read from its sandbox the way Mesos users read them (the web UI's
pailer, `mesos task log`): the agent's `/state` names the sandbox `directory` of the task's
executor, and the agent's files API reads the files in it.

- `GET /state` on the agent (Mesos' "HTTP Endpoints - /state" page for agents; src/slave/http.cpp)
  lists `frameworks` and `completed_frameworks`, each with `executors` and `completed_executors`,
  each with its `id`, `directory` and `tasks` / `completed_tasks`. The command executor that runs
  a task has the task's id as its own. Only the latest completed executors are listed
  (`--max_completed_executors_per_framework`, 150); the files API also serves every sandbox under
  its virtual path `/frameworks/<framework id>/executors/<executor id>/runs/latest`
  (src/slave/paths.hpp, getExecutorVirtualPath) until it is garbage-collected.
- `GET /files/read?path=P&offset=N&length=M` (the "/files/read" endpoint page; src/files/files.cpp)
  answers `{"data": "...", "offset": N}`: at most M bytes from N (reads are capped at 16 pages),
  "" at or past the end; `offset=-1` answers the file's size as `offset`, with no data. A path
  outside what the agent serves (task sandboxes), or one it no longer serves (its sandbox was
  garbage-collected, `--gc_delay`), is 404. `data` is the file's bytes in a JSON string as stout's
  jsonify writes one (StringWriter::append escapes quotes, backslashes, `/` and control bytes, and
  passes every other byte through, UTF-8 or not), hence the surrogateescape below.
"""

from __future__ import annotations

import json
import posixpath
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import urllib3

from batchgate.errors import NoOutput

READ_LENGTH = 16 * 4096  # what the agent gives at most per read (16 pages)
FOLLOW_POLL_SECONDS = 0.2


class AgentError(Exception):
    """The agent could not be asked (or answered something other than 200 / 404)."""


class NotServed(Exception):
    """404 from the agent's files API: a path it does not (or no longer) serve."""


class AgentFiles:
    """HTTP to agents: their `/state` and their files API."""

    def __init__(self, headers: dict[str, str], *, connect_timeout: float = 2.0, read_timeout: float = 10.0) -> None:
        self._headers = headers
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._pool = urllib3.PoolManager(maxsize=4, retries=False)

    def state(self, address: str) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self._get(address, "/state"))
        return answer

    def read(self, address: str, path: str, offset: int, length: int) -> tuple[int, bytes]:
        """(offset answered, bytes) of the file `path` on the agent. Raises NotServed, AgentError."""
        body = self._get(address, "/files/read?" + urlencode({"path": path, "offset": offset, "length": length}))
        answer = json.loads(body.decode("utf-8", "surrogateescape"))
        return int(answer["offset"]), str(answer["data"]).encode("utf-8", "surrogateescape")

    def _get(self, address: str, path: str) -> bytes:
        try:
            response = self._pool.request("GET", f"{address}{path}", headers=self._headers, timeout=self._timeout)
        except urllib3.exceptions.HTTPError as error:
            raise AgentError(f"agent {address} cannot be reached: {error}") from error
        if response.status == 404:
            raise NotServed(path)
        if response.status != 200:
            raise AgentError(f"agent {address} answered {response.status} {response.data.decode(errors='replace').strip()}")
        return bytes(response.data)


def virtual_path(framework_id: str, executor_id: str) -> str:
    return f"/frameworks/{framework_id}/executors/{executor_id}/runs/latest"


def executor_directory(state: dict[str, Any], task_id: str) -> str | None:
    """The sandbox directory of the executor that ran `task_id`, from an agent's /state."""
    for framework in [*state.get("frameworks", []), *state.get("completed_frameworks", [])]:
        for executor in [*framework.get("executors", []), *framework.get("completed_executors", [])]:
            tasks = [*executor.get("tasks", []), *executor.get("queued_tasks", []), *executor.get("completed_tasks", [])]
            if executor.get("id") == task_id or any(task.get("id") == task_id for task in tasks):
                return str(executor["directory"])
    return None


@dataclass(frozen=True)
class Sandbox:
    """Where a task ran: its agent (id, host name, files API base URL) and sandbox directory."""

    agent_id: str
    hostname: str
    address: str
    directory: str


class NotYet(Exception):
    """The task has no sandbox yet (not launched, or its executor not yet registered)."""


@dataclass(frozen=True)
class OutputFile:
    """The file one stream of a job goes to: its sandbox's `stdout`/`stderr`, or the file the
    job names (relative to its working directory, else to the sandbox, where the task starts)."""

    stream: str  # "stdout" or "stderr"
    named: str = ""
    working_directory: str = ""

    def path_in(self, sandbox: str) -> str:
        if not self.named:
            return posixpath.join(sandbox, self.stream)
        return posixpath.join(self.working_directory or sandbox, self.named)


class SandboxOutput:
    """Driver.output's answer on Mesos (batchgate.driver.OutputChunks): the file's last
    `tail_bytes` (0: all of it), then, when following, what is added until the task has ended
    and the file is drained. `locate` finds the task's sandbox (raising NotYet or NoOutput);
    `live` says whether the task may still write."""

    def __init__(
        self,
        job_id: int,
        files: AgentFiles,
        output: OutputFile,
        locate: Callable[[], Sandbox],
        live: Callable[[], bool],
        *,
        tail_bytes: int,
        follow: bool,
    ) -> None:
        self.job_id = job_id
        self._files = files
        self._output = output
        self._locate = locate
        self._live = live
        self._tail_bytes = tail_bytes
        self._follow = follow
        self._cancelled = threading.Event()
        # Found now, in the caller's thread, so that a job with no output says so at once.
        self._sandbox = self._find(waiting=False)

    def cancel(self) -> None:
        self._cancelled.set()

    def __iter__(self) -> Iterator[bytes]:
        sandbox = self._sandbox or self._find(waiting=True)
        if sandbox is None:
            return
        path = self._output.path_in(sandbox.directory)
        span = self._span(sandbox, path)
        if span is None:
            return
        offset, end = span
        while not self._cancelled.is_set():
            if end is not None and offset >= end:
                return
            was_live = self._live()  # looked at before the read: a task that has ended has written it all
            answer = self._ask(sandbox, path, offset, READ_LENGTH if end is None else min(READ_LENGTH, end - offset), was_live)
            if answer is None:
                continue  # the file it names is not there yet
            data = answer[1]
            if data:
                offset += len(data)
                yield data
            elif not (self._follow and was_live):
                return
            else:
                self._cancelled.wait(FOLLOW_POLL_SECONDS)

    def _find(self, *, waiting: bool) -> Sandbox | None:
        """The sandbox, or None when the task has none yet and the caller follows it."""
        while not self._cancelled.is_set():
            try:
                return self._locate()
            except NotYet as not_yet:
                if not self._follow:
                    raise NoOutput(self.job_id, f"{not_yet}, so it has no output yet; ask again, or follow it") from None
                if not waiting:
                    return None
            except AgentError as error:
                raise NoOutput(self.job_id, f"its sandbox cannot be read now: {error}") from None
            self._cancelled.wait(FOLLOW_POLL_SECONDS)
        return None

    def _span(self, sandbox: Sandbox, path: str) -> tuple[int, int | None] | None:
        """Where reading starts (0, or `tail_bytes` before the end) and ends (the size the file
        has now; None when following). offset=-1 answers the size: no read past it is made."""
        if self._follow and not self._tail_bytes:
            return 0, None
        while not self._cancelled.is_set():
            answer = self._ask(sandbox, path, -1, 0, self._live())
            if answer is not None:
                size = answer[0]
                return max(0, size - self._tail_bytes) if self._tail_bytes else 0, None if self._follow else size
        return None

    def _ask(self, sandbox: Sandbox, path: str, offset: int, length: int, was_live: bool) -> tuple[int, bytes] | None:
        """The agent's answer to a read, or None (after a pause) for a file not there yet."""
        try:
            return self._files.read(sandbox.address, path, offset, length)
        except NotServed:
            self._not_there(sandbox, path, was_live)
        except AgentError as error:
            raise NoOutput(self.job_id, f"its {self._output.stream} cannot be read now: {error}") from None
        self._cancelled.wait(FOLLOW_POLL_SECONDS)
        return None

    def _not_there(self, sandbox: Sandbox, path: str, was_live: bool) -> None:
        """A 404: a file the job names that it has not written yet (waited for, when following
        a live job), or one the agent does not serve; else the sandbox is gone."""
        where = f"agent {sandbox.hostname or sandbox.agent_id}"
        if self._output.named:
            if self._follow and was_live:
                return
            raise NoOutput(
                self.job_id,
                f"its {self._output.stream} file {self._output.named} ({path}) does not exist in what {where} serves "
                "(Mesos' files API serves task sandboxes only)",
            )
        raise NoOutput(
            self.job_id,
            f"its sandbox {sandbox.directory} on {where} is gone (the agent garbage-collects sandboxes after --gc_delay)",
        )
