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
import select
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import psutil

from .spawn import spawn

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
    reaped: threading.Event = field(default_factory=threading.Event)

    def wait(self) -> int | None:
        """Reap the ended root process: its return code as Popen gives it (-N: killed by signal
        N), or None for an adopted one."""
        if not self.child:
            return None
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


def start(job_id: int, token: str, command: str, environment: Mapping[str, bytes], cwd: str | None, stdout: str, stderr: str) -> JobProcess:
    """Start the job in a session of its own; raises OSError when it cannot (missing directory,
    unwritable output). `environment` is encoded (spawn.encode_environment)."""
    variables = {**environment, MARKER_VARIABLE: os.fsencode(f"{MARKER_VARIABLE}={token}")}
    # Timed from before the spawn: the child may run a while before spawn returns on a busy
    # machine, and a job's wall time must never come out shorter than what it ran.
    started = time.monotonic()
    pid = spawn(["/bin/sh", "-c", command], variables.values(), cwd=cwd, stdout=stdout, stderr=stderr)
    return JobProcess(job_id=job_id, pid=pid, token=token, started_monotonic=started)


def keep_inherited_descriptors_from_jobs() -> None:
    """Mark every descriptor above stderr that the service inherited close-on-exec.

    Python makes its own descriptors non-inheritable, but whatever started the service may have
    left some open; posix_spawn, unlike Popen(close_fds=True), would pass those on to every job."""
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if int(name) > 2:
                os.set_inheritable(int(name), False)


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


MAX_TIMER_WAIT_SECONDS = 3600.0


class Reaper:
    """One thread that waits on every job's pidfd and on timers (wall-time limits).

    `on_exit(process, returncode)` runs in the reaper thread when a root process ends; it is
    None for an adopted process (not our child: its exit status cannot be read)."""

    def __init__(self, on_exit: Callable[[JobProcess, int | None], None], on_timer: Callable[[], float | None]) -> None:
        self._on_exit = on_exit
        self._on_timer = on_timer  # returns seconds until the next timer is due, or None
        self._epoll = select.epoll()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._epoll.register(self._wake_read, select.EPOLLIN)
        self._watched: dict[int, JobProcess] = {}  # by pidfd
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="local-reaper", daemon=True)
        self._thread.start()

    def watch(self, process: JobProcess) -> None:
        """Callable from any thread: epoll takes new descriptors while the reaper waits on it,
        so watching a job costs no wake-up of the reaper."""
        try:
            pidfd = os.pidfd_open(process.pid)
        except ProcessLookupError:  # adopted, and already gone
            self._finish(process, None)
            return
        self._watched[pidfd] = process  # before the reaper can see the descriptor ready
        self._epoll.register(pidfd, select.EPOLLIN)

    def wake(self) -> None:
        """Make the reaper ask for its next timer now (a deadline earlier than it knows of)."""
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"\0")

    def stop(self) -> None:
        self._running = False
        self.wake()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        timeout: float | None = None
        while self._running:
            # A deadline years away (a client may ask any wall time) is not one epoll can wait
            # for: its timeout is a C int of milliseconds. Waking once an hour costs nothing.
            wait = -1 if timeout is None else min(timeout, MAX_TIMER_WAIT_SECONDS)
            for descriptor, _ in self._epoll.poll(wait):
                if descriptor == self._wake_read:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_read, 4096)
                else:
                    self._reap(descriptor)
            timeout = self._on_timer()

    def _reap(self, pidfd: int) -> None:
        process = self._watched.pop(pidfd)
        self._epoll.unregister(pidfd)
        os.close(pidfd)  # only after the pop: the number may be reused at once
        self._finish(process, process.wait())

    def _finish(self, process: JobProcess, returncode: int | None) -> None:
        process.reaped.set()
        try:
            self._on_exit(process, returncode)
        except Exception:
            log.exception("handling the end of job %d failed", process.job_id)
