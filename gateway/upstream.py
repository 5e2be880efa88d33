"""One backend's jobs as the gateway follows them: which gateway job each backend job is, and the
backend's update stream (filtered to the gateway's private job set) turned into the gateway's
reports, each followed by a checkpoint of the backend sequence read so far.

The stream resumes from that checkpoint, so a restart of either side neither skips nor repeats
an update. An update can arrive before the gateway knows whose it is: while the backend's
IssueJobs answer is still on its way, or after a gateway crash between the backend accepting a
job and the gateway recording it (the kit then submits the job again under the same request key,
and the backend answers the same id). Such an update is parked until submit names its job, and
the checkpoint stays below it, so a crash meanwhile replays it. A parked update that no job
claims (a killed job's, or one reported just before a restart) is dropped after PARK_SECONDS.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import grpc

from batchgate.backoff import Backoff
from batchgate.driver import JobEvents
from batchgate.endings import ending_of
from batchgate.errors import BatchgateError, PermissionDenied, Unauthenticated
from batchgate.v1 import batchgate_pb2 as pb

from .backend import Backend

log = logging.getLogger(__name__)

PARK_SECONDS = 120.0
CONNECT_TIMEOUT = 2.0


@dataclass(frozen=True)
class _Parked:
    update: pb.UpdatedJob
    since: float  # monotonic


class Upstream:
    def __init__(self, backend: Backend, events: JobEvents, job_set: str) -> None:
        self.backend = backend
        self._events = events
        self._job_set = job_set
        self._checkpoint_key = f"cursor:{backend.name}"
        self._lock = threading.Lock()  # the maps below, and the order of reports with checkpoints
        self._gateway_ids: dict[int, int] = {}  # backend job id -> gateway job id
        self._parked: dict[int, _Parked] = {}  # by backend job id
        self._started: set[int] = set()  # gateway ids reported started
        self._kill_when_back: set[int] = set()  # backend ids a KillJobs could not reach
        self._read = events.checkpoints().get(self._checkpoint_key, 0)  # last backend sequence read
        self._committed = self._read  # last checkpoint reported
        self._stopping = threading.Event()
        self._stream: grpc.RpcContext | None = None
        self._thread = threading.Thread(target=self._follow, name=f"upstream-{backend.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()
        self._thread.join(timeout=10)

    # ---- ids ---------------------------------------------------------------------------------

    def learn(self, pairs: Iterable[tuple[int, int]]) -> None:
        """(backend job id, gateway job id) of jobs just submitted or adopted."""
        with self._lock:
            for backend_id, gateway_id in pairs:
                parked = self._parked.pop(backend_id, None)
                if parked is None:
                    self._gateway_ids[backend_id] = gateway_id
                else:
                    self._report_end(gateway_id, parked.update)
            self._advance_checkpoint()

    def forget(self, backend_ids: Iterable[int], *, kill_when_back: bool = False) -> None:
        """Killed jobs: never reported. With `kill_when_back`, the kill did not reach the backend
        and is made again as soon as it is reachable."""
        with self._lock:
            for backend_id in backend_ids:
                self._started.discard(self._gateway_ids.pop(backend_id, 0))
                if kill_when_back:
                    self._kill_when_back.add(backend_id)

    @property
    def holds_jobs(self) -> bool:
        return bool(self._gateway_ids)

    def running(self, seconds_by_backend_id: Mapping[int, float]) -> dict[int, float]:
        """The backend's running jobs in gateway ids; reports the starts not reported yet."""
        now = time.time()
        with self._lock:
            running = {self._gateway_ids[b]: seconds for b, seconds in seconds_by_backend_id.items() if b in self._gateway_ids}
            for gateway_id, seconds in running.items():
                if gateway_id not in self._started:
                    self._started.add(gateway_id)
                    self._events.started(gateway_id, at=now - seconds)
        return running

    # ---- the stream --------------------------------------------------------------------------

    def connect(self, timeout: float = CONNECT_TIMEOUT) -> bool:
        """Reach the backend: refresh its capabilities, make the kills that waited for it."""
        try:
            self.backend.fetch_capabilities(timeout)
            with self._lock:
                doomed = sorted(self._kill_when_back)
            if doomed:
                self.backend.call(self.backend.stub.KillJobs, pb.KillJobsRequest(job_ids=doomed))
                with self._lock:
                    self._kill_when_back.difference_update(doomed)
        except (Unauthenticated, PermissionDenied) as refusal:
            # Not a backend that is down: a misconfiguration, which waiting will not mend.
            log.warning(
                "backend %s refuses the gateway (%s): check --backend-token and that its tokens file grants 'gateway-*'",
                self.backend.name,
                refusal.message,
            )
            return False
        except BatchgateError as error:
            log.debug("backend %s not reached: %s", self.backend.name, error.message)
            return False
        if not self.backend.available:
            log.info("backend %s (%s) is reachable", self.backend.name, self.backend.address)
        self.backend.available = True
        return True

    def _follow(self) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            if self.backend.available or self.connect():
                backoff.reset()
                self._stream_updates()
                self.backend.available = False
            self._stopping.wait(backoff.next())

    def _stream_updates(self) -> None:
        """Read the backend's stream from the last sequence read until it ends or breaks."""
        request = pb.GetUpdatedJobRequest(after_sequence=self._read, job_set=self._job_set)
        self._stream = stream = self.backend.stub.GetUpdatedJob(request)
        try:
            if self._stopping.is_set():  # close() came before the stream could be cancelled
                return
            for response in stream:
                self._receive(response.updates)
            log.warning("backend %s ended its update stream (shutting down?); reconnecting", self.backend.name)
        except grpc.RpcError as error:
            if not self._stopping.is_set():
                log.warning("backend %s unavailable (%s); reconnecting", self.backend.name, error.details())
        finally:
            self._stream = None
            stream.cancel()

    def _receive(self, updates: Iterable[pb.UpdatedJob]) -> None:
        now = time.monotonic()
        with self._lock:
            for update in updates:
                gateway_id = self._gateway_ids.pop(update.job_id, None)
                if gateway_id is None:
                    self._parked[update.job_id] = _Parked(update, now)
                else:
                    self._report_end(gateway_id, update)
                self._read = max(self._read, update.sequence)
            expired = [job_id for job_id, parked in self._parked.items() if now - parked.since > PARK_SECONDS]
            for job_id in expired:
                del self._parked[job_id]
            if expired:
                log.info(
                    "backend %s: dropped %d update(s) of jobs not live here (killed, or reported before a restart)",
                    self.backend.name,
                    len(expired),
                )
            self._advance_checkpoint()

    # ---- with the lock held ------------------------------------------------------------------

    def _report_end(self, gateway_id: int, update: pb.UpdatedJob) -> None:
        self._started.discard(gateway_id)
        wall_time = update.wall_time_seconds if update.HasField("wall_time_seconds") else None
        ending = ending_of(update.exit_reason, update.exit_status, wall_time, update.message, update.backing_id)
        self._events.ended(gateway_id, ending)

    def _advance_checkpoint(self) -> None:
        """Checkpoint the backend sequence read, but never past a parked update."""
        safe = min(parked.update.sequence for parked in self._parked.values()) - 1 if self._parked else self._read
        if safe > self._committed:
            self._events.checkpoint(self._checkpoint_key, safe)
            self._committed = safe
