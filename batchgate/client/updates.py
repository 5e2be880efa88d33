"""The client's side of GetUpdatedJob: one long-lived stream, read by a background thread.

The stream is reopened whenever it breaks (a service restart, a dropped connection), from the
last sequence received, so nothing is lost; any update at or below that sequence is dropped, so
nothing is seen twice even from a service that replays more than it was asked for.
"""

from __future__ import annotations

import queue
import threading

import grpc

from batchgate.backoff import Backoff
from batchgate.errors import BatchgateError, from_rpc_error
from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as rpc

MAX_RETRY_DELAY = 2.0  # seconds: a client should find a restarted service quickly

# Codes that say the request itself is wrong or can never be served: reopening the stream would
# fail the same way forever, so the reader stops and the caller sees the error.
PERMANENT_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


class UpdateFeed:
    """Updates with a sequence above `after_sequence`, each once, in order, across reconnects."""

    def __init__(self, stub: rpc.BatchSystemStub, *, job_set: str, after_sequence: int) -> None:
        self._stub = stub
        self._job_set = job_set
        self._received = after_sequence  # the highest sequence queued so far
        # None in the queue marks the end: the stream failed for good, with `_failure`.
        self._updates: queue.Queue[pb.UpdatedJob | None] = queue.Queue()
        self._failure: BatchgateError | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._call: grpc.Call | None = None
        self._reader = threading.Thread(target=self._read_forever, name="batchgate-updates", daemon=True)
        self._reader.start()

    def next(self, max_wait: float | None) -> pb.UpdatedJob | None:
        """The next update, or None when none came within `max_wait` seconds (None: no limit).

        Raises the stream's error once it has failed for good and every update before it is taken.
        """
        try:
            update = self._updates.get(timeout=max_wait)
        except queue.Empty:
            return None
        if update is None:
            self._updates.put(None)  # every later call fails the same way
            assert self._failure is not None
            raise self._failure
        return update

    def close(self) -> None:
        self._stopping.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        self._reader.join()

    def _read_forever(self) -> None:
        backoff = Backoff(most=MAX_RETRY_DELAY)
        while not self._stopping.is_set():
            request = pb.GetUpdatedJobRequest(after_sequence=self._received, job_set=self._job_set)
            with self._lock:
                if self._stopping.is_set():
                    return
                call = self._call = self._stub.GetUpdatedJob(request)
            try:
                for response in call:
                    backoff.reset()  # the service answered: the next break starts afresh
                    self._queue_new(response.updates)
            except grpc.RpcError as error:
                if self._stopping.is_set():
                    return
                if error.code() in PERMANENT_CODES:
                    self._failure = from_rpc_error(error)
                    self._updates.put(None)
                    return
            # A stream that ends, cleanly or not, is reopened: the service promises to keep it open.
            self._stopping.wait(backoff.next())

    def _queue_new(self, updates: list[pb.UpdatedJob]) -> None:
        for update in updates:
            if update.sequence > self._received:
                self._received = update.sequence
                self._updates.put(update)
