"""Job processes on this machine: start one in its own session, know when it ends, kill its tree.

Each job runs as `/bin/sh -c COMMAND` in a new session (so its process group is its own) and
carries a marker variable in its environment. A kill signals the process group and every
process whose environment holds the marker: descendants that left the group (setsid, double
fork) still inherit the environment, the way Jenkins finds a build's strays.
Ends are observed through pidfds in one epoll loop: no polling, no sleeping.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import psutil

log = logging.getLogger(__name__)

MARKER_VARIABLE = "BATCHGATE_JOB_TOKEN"


@dataclass
class JobProcess:
    """A job's root process: our child, or adopted from an earlier run (not our child, so its
    exit status cannot be read)."""

    job_id: int
    pid: int
    token: str
    started_monotonic: float
    child: bool = True
    popen: subprocess.Popen[bytes] | None = None  # when started through Popen (see start)
    reaped: threading.Event = field(default_factory=threading.Event)

    def wait(self) -> int | None:
        """Reap the ended root process: its exit status, or None for an adopted one."""
        if self.popen is not None:
            return exit_status(self.popen.wait())
        if not self.child:
            return None
        _, status = os.waitpid(self.pid, 0)
        return exit_status(os.waitstatus_to_exitcode(status))


# Signals Python ignores for itself, which a job must get back at their defaults (as Popen does).
_RESET_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name))
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def start(job_id: int, token: str, command: str, environment: Mapping[str, str], cwd: str | None, stdout: str, stderr: str) -> JobProcess:
    """Start the job in a session of its own; raises OSError when it cannot (missing directory,
    unwritable output).

    posix_spawn costs the service a fraction of what Popen does per job (Popen encodes the
    environment in Python); Popen is used only for a working directory, which posix_spawn cannot
    set before Python 3.13."""
    argv = ["/bin/sh", "-c", command]
    env = {**environment, MARKER_VARIABLE: token}
    if cwd:
        return _start_with_popen(job_id, token, argv, env, cwd, stdout, stderr)
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0), (os.POSIX_SPAWN_OPEN, 1, stdout or os.devnull, _WRITE, 0o666)]
    if stderr and stderr == stdout:
        actions.append((os.POSIX_SPAWN_DUP2, 1, 2))
    else:
        actions.append((os.POSIX_SPAWN_OPEN, 2, stderr or os.devnull, _WRITE, 0o666))
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True, setsigdef=_RESET_SIGNALS)
    return JobProcess(job_id=job_id, pid=pid, token=token, started_monotonic=time.monotonic())


def keep_inherited_descriptors_from_jobs() -> None:
    """Mark every descriptor above stderr that the service inherited close-on-exec.

    Python makes its own descriptors non-inheritable, but whatever started the service may have
    left some open; posix_spawn, unlike Popen(close_fds=True), would pass those on to every job."""
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if int(name) > 2:
                os.set_inheritable(int(name), False)


def _start_with_popen(
    job_id: int, token: str, argv: list[str], env: dict[str, str], cwd: str, stdout: str, stderr: str
) -> JobProcess:
    with contextlib.ExitStack() as files:
        out = files.enter_context(open(stdout, "wb")) if stdout else subprocess.DEVNULL
        err = out if stderr and stderr == stdout else files.enter_context(open(stderr, "wb")) if stderr else subprocess.DEVNULL
        popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True, close_fds=True
        )
    return JobProcess(job_id=job_id, pid=popen.pid, token=token, started_monotonic=time.monotonic(), popen=popen)


def exit_status(returncode: int) -> int:
    """Popen's returncode as the contract reports it: a death by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def tree_members(process: JobProcess) -> list[psutil.Process]:
    """Every live process of the job: its process group and whatever carries its marker."""
    members: dict[int, psutil.Process] = {}
    for candidate in psutil.process_iter():
        try:
            if candidate.pid == process.pid or os.getpgid(candidate.pid) == process.pid:
                members[candidate.pid] = candidate
            elif candidate.environ().get(MARKER_VARIABLE) == process.token:
                members[candidate.pid] = candidate
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return [member for member in members.values() if _alive(member)]


def signal_tree(process: JobProcess, signal_number: int) -> list[psutil.Process]:
    members = tree_members(process)
    for member in members:
        with contextlib.suppress(psutil.Error):
            member.send_signal(signal_number)
    return members


def kill_tree(process: JobProcess, grace_seconds: float) -> None:
    """SIGTERM the whole tree, SIGKILL what is left after the grace period; return once the
    root is reaped and nothing carrying the job's marker is alive."""
    if process.child and process.reaped.is_set():
        members = tree_members(process)  # the root ended: only strays are left
        if not members:
            return
    members = signal_tree(process, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while members and time.monotonic() < deadline:
        time.sleep(0.02)
        members = [member for member in members if _alive(member)]
    while True:
        members = signal_tree(process, signal.SIGKILL)
        if process.reaped.wait(timeout=1.0) and not members:
            return
        time.sleep(0.02)


def _alive(member: psutil.Process) -> bool:
    try:
        return member.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Reaper:
    """One thread that waits on every job's pidfd and on timers (wall-time limits).

    `on_exit(process, status)` runs in the reaper thread when a root process ends; status is
    None for an adopted process (not our child: its exit status cannot be read)."""

    def __init__(self, on_exit: Callable[[JobProcess, int | None], None], on_timer: Callable[[], float | None]) -> None:
        self._on_exit = on_exit
        self._on_timer = on_timer  # returns seconds until the next timer is due, or None
        self._selector = selectors.EpollSelector()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._pending: list[JobProcess] = []
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="local-reaper", daemon=True)
        self._thread.start()

    def watch(self, process: JobProcess) -> None:
        with self._lock:
            self._pending.append(process)
        if threading.get_ident() != self._thread.ident:  # the loop registers it before it waits
            self.wake()

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"\0")

    def stop(self) -> None:
        self._running = False
        self.wake()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        timeout: float | None = None
        while self._running:
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_read, 4096)
                else:
                    self._reap(key.fd, key.data)
            self._register_pending()
            timeout = self._on_timer()

    def _register_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for process in pending:
            try:
                pidfd = os.pidfd_open(process.pid)
            except ProcessLookupError:  # adopted, and already gone
                self._finish(process, None)
                continue
            self._selector.register(pidfd, selectors.EVENT_READ, process)

    def _reap(self, pidfd: int, process: JobProcess) -> None:
        self._selector.unregister(pidfd)
        os.close(pidfd)
        self._finish(process, process.wait())

    def _finish(self, process: JobProcess, status: int | None) -> None:
        process.reaped.set()
        try:
            self._on_exit(process, status)
        except Exception:
            log.exception("handling the end of job %d failed", process.job_id)
