"""The HTTP endpoints of one of the fake master's agents (fake_master.py), on a port of its own
as a Mesos agent has (its libprocess pid, "slave(1)@127.0.0.1:PORT", in GET_AGENTS):

- `GET /state`, as Mesos' "HTTP Endpoints - /state" page for agents shows and src/slave/http.cpp
  writes it: the agent's `id`, `pid`, `hostname` and `flags`; `frameworks` (those with a live
  executor) and `completed_frameworks`, each with `executors` and `completed_executors`; an
  executor has its `id` (the command executor takes its task's id), `name`, `source`,
  `container`, `directory` (the sandbox) and its task under `tasks` or, once ended,
  `completed_tasks`. Only the latest `--max_completed_executors_per_framework` (150) completed
  executors of a framework are listed.
- `GET /files/read?path=&offset=&length=`, as src/files/files.cpp serves it (the "/files/read"
  endpoint page): `{"data": ..., "offset": N}` with at most `length` bytes from `offset`, capped
  at 16 pages; no `length` (or -1): to the end; `offset=-1`: the file's size as `offset`, no data;
  at or past the end: "". Each sandbox is served under its real path and under its virtual path
  `/frameworks/<framework id>/executors/<executor id>/runs/latest`. 400 for a missing path, an offset or length below -1 or not a number,
  or a directory; 404 for a path outside the directories the agent serves (each executor's
  sandbox, from its launch until it is garbage-collected) or one that does not exist. `data`
  holds the file's bytes as stout's jsonify writes a string (json_string below).

Sandboxes are laid out as Mesos lays them out (the "Sandbox" page):
<work_dir>/slaves/<agent id>/frameworks/<framework id>/executors/<executor id>/runs/<container id>.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fake_http import QuietServer, authorized, handler_class, reply

MAX_READ = 16 * os.sysconf("SC_PAGESIZE")
MAX_COMPLETED_EXECUTORS = 150  # the agent's --max_completed_executors_per_framework default


def virtual_path(framework_id: str, executor_id: str) -> str:
    """Where the files API also serves an executor's latest sandbox (paths::getExecutorVirtualPath)."""
    return f"/frameworks/{framework_id}/executors/{executor_id}/runs/latest"


@dataclass
class _Executor:
    executor_id: str
    framework_id: str
    container_id: str
    directory: Path
    task: dict[str, Any]
    completed: bool = False


class FakeAgentHttp:
    def __init__(
        self,
        agent_id: str,
        hostname: str,
        work_dir: Path,
        credentials: tuple[str, str] | None = None,
        max_completed_executors: int = MAX_COMPLETED_EXECUTORS,
    ) -> None:
        self.agent_id = agent_id
        self.max_completed_executors = max_completed_executors
        self.hostname = hostname
        self.work_dir = work_dir
        self.credentials = credentials
        self._lock = threading.Lock()
        self._executors: dict[str, _Executor] = {}  # by executor id, in launch order
        self._frameworks: dict[str, dict[str, Any]] = {}  # framework id -> FrameworkInfo
        self._served: dict[str, str] = {}  # path as attached (real, and virtual) -> the real directory
        self._server = QuietServer(("127.0.0.1", 0), handler_class("GET", self._serve))
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-agent-{hostname}", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def pid(self) -> str:
        return f"slave(1)@127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()

    # ---- what the agent does -----------------------------------------------------------------

    def launch(self, framework: dict[str, Any], task: dict[str, Any]) -> Path:
        """A command executor for `task` (its id the task's): its sandbox, created and served."""
        framework_id = framework["id"]["value"]
        executor_id = task["id"]
        container_id = str(uuid.uuid4())
        directory = (
            self.work_dir / "slaves" / self.agent_id / "frameworks" / framework_id / "executors" / executor_id / "runs" / container_id
        )
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._frameworks[framework_id] = framework
            self._executors[executor_id] = _Executor(executor_id, framework_id, container_id, directory, dict(task))
            real = os.path.realpath(directory)
            self._served[str(directory)] = self._served[virtual_path(framework_id, executor_id)] = real
        return directory

    def task_state(self, executor_id: str, state: str, terminal: bool) -> None:
        with self._lock:
            executor = self._executors.get(executor_id)
            if executor is not None:
                executor.task["state"] = state
                executor.completed = executor.completed or terminal

    def collect_garbage(self, executor_id: str) -> None:
        """The agent's garbage collection of an ended executor's sandbox (after --gc_delay): the
        directory is removed and no longer served under either path; /state still lists the
        executor if it is among the latest completed ones."""
        with self._lock:
            executor = self._executors[executor_id]
            self._served.pop(str(executor.directory), None)
            self._served.pop(virtual_path(executor.framework_id, executor_id), None)
        shutil.rmtree(executor.directory.parent.parent)

    # ---- HTTP --------------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        url = urlsplit(handler.path)
        if not authorized(handler, self.credentials):
            return reply(handler, 401, b"", {"WWW-Authenticate": 'Basic realm="mesos"'})
        if url.path == "/state":
            return reply(handler, 200, json.dumps(self._state()), {"Content-Type": "application/json"})
        if url.path == "/files/read":
            code, answer = self._read(parse_qs(url.query))
            return reply(handler, code, answer, {"Content-Type": "application/json"} if code == 200 else {})
        reply(handler, 404, b"")

    def _state(self) -> dict[str, Any]:
        with self._lock:
            executors = list(self._executors.values())
            frameworks = dict(self._frameworks)
        live, completed = [], []
        for framework_id, info in frameworks.items():
            own = [executor for executor in executors if executor.framework_id == framework_id]
            ended = [executor for executor in own if executor.completed]
            entry = {
                "id": framework_id,
                "name": info.get("name", ""),
                "user": info.get("user", ""),
                "executors": [_executor_json(executor) for executor in own if not executor.completed],
                # A bounded list, as the agent keeps it: older ones are forgotten (not collected).
                "completed_executors": [_executor_json(executor) for executor in ended[-self.max_completed_executors :]],
            }
            (live if entry["executors"] else completed).append(entry)
        return {
            "id": self.agent_id,
            "pid": self.pid,
            "hostname": self.hostname,
            "frameworks": live,
            "completed_frameworks": completed,
            "flags": {"work_dir": str(self.work_dir), "port": str(self.port), "gc_delay": "1weeks"},
        }

    def _read(self, query: dict[str, list[str]]) -> tuple[int, bytes]:
        path = query.get("path", [""])[0]
        if not path:
            return 400, b"Expecting 'path=value' in query.\n"
        numbers = {}
        for name in ("offset", "length"):
            text = query.get(name, ["-1"])[0]
            try:
                numbers[name] = int(text)
            except ValueError:
                return 400, f"Failed to parse {name}: Failed to convert '{text}' to number.\n".encode()
            if numbers[name] < -1:
                return 400, f"Negative {name} provided: {numbers[name]}.\n".encode()
        offset, length = numbers["offset"], numbers["length"]
        start, wanted = (0, 0) if offset == -1 else (offset, None if length == -1 else length)
        real = self._resolve(path)
        if real is None:
            return 404, b""
        if real.startswith("!"):  # a link out of the sandbox
            return 400, f"'{path}' is inaccessible.\n".encode()
        if os.path.isdir(real):
            return 400, b"Cannot read a directory.\n"
        with open(real, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            data = b""
            if start < size and wanted != 0:
                file.seek(start)
                data = file.read(min(size - start if wanted is None else wanted, MAX_READ))
        return 200, b'{"offset":%d,"data":%s}' % (size if offset == -1 else offset, json_string(data))

    def _resolve(self, path: str) -> str | None:
        """The real file for `path`, under the longest directory served that it names; None if
        there is none; "!" and the real path for one outside that directory."""
        with self._lock:
            served = dict(self._served)
        trimmed = path.rstrip("/")
        for attached in sorted(served, key=len, reverse=True):
            if trimmed == attached or trimmed.startswith(attached + "/"):
                real = os.path.realpath(served[attached] + trimmed[len(attached) :])
                if not (real == served[attached] or real.startswith(served[attached] + "/")):
                    return "!" + real
                return real if os.path.exists(real) else None
        return None


def json_string(data: bytes) -> bytes:
    """Bytes as a JSON string the way stout's jsonify writes one (StringWriter::append): `"`, `\\`
    and `/` escaped, \\b \\f \\n \\r \\t, other control bytes and DEL as \\u00XX, and every other byte
    as it is (so a file that is not UTF-8 gives a string that is not UTF-8 either)."""
    return b'"' + _ESCAPED.sub(lambda match: _ESCAPES[match.group()], data) + b'"'


_ESCAPES = {
    **{bytes([byte]): b"\\u%04x" % byte for byte in [*range(0x20), 0x7F]},
    b'"': b'\\"',
    b"\\": b"\\\\",
    b"/": b"\\/",
    b"\b": b"\\b",
    b"\f": b"\\f",
    b"\n": b"\\n",
    b"\r": b"\\r",
    b"\t": b"\\t",
}
_ESCAPED = re.compile(b"|".join(re.escape(byte) for byte in _ESCAPES))


def _executor_json(executor: _Executor) -> dict[str, Any]:
    task = executor.task
    return {
        "id": executor.executor_id,
        "name": f"Command Executor (Task: {executor.executor_id})",
        "source": executor.executor_id,
        "container": executor.container_id,
        "directory": str(executor.directory),
        "tasks": [] if executor.completed else [task],
        "queued_tasks": [],
        "completed_tasks": [task] if executor.completed else [],
    }
