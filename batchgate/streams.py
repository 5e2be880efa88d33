"""GetUpdatedJob on an asyncio gRPC server: an open stream is a coroutine waiting on a future,
a few kilobytes and no thread, however many there are.

A stream pulls: it reads the update log from its cursor, sends one message, and reads again only
once gRPC has taken that message (which waits while the client's flow-control window is full).
So a subscriber that reads slowly holds one message and its cursor, never a growing queue: it
reads from the store whatever the log's in-memory tail no longer has.

Waiting streams are kept by job set, and a publish wakes only the streams of the job sets it
touched (and the streams of every job set), through one call into the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass

from batchgate.errors import LimitExceeded
from batchgate.updatelog import UpdateLog


WAKE_BATCH = 32  # streams woken in one turn of the event loop


@dataclass(frozen=True)
class StreamLimits:
    total: int  # open streams in all
    per_peer: int  # open streams of one client connection


class Subscribers:
    """The open streams of one service and their wake-ups; used from its event loop only
    (but for `_published`, which the log calls from the publishing thread)."""

    def __init__(self, log: UpdateLog, loop: asyncio.AbstractEventLoop, limits: StreamLimits) -> None:
        self._log = log
        self._loop = loop
        self._limits = limits
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._to_wake: collections.deque[asyncio.Future[None]] = collections.deque()
        self._by_peer: collections.Counter[str] = collections.Counter()
        self.open = 0
        log.listen(self._published)

    def admit(self, peer: str) -> None:
        """Count a new stream from `peer` (release it when it ends); raise LimitExceeded when
        it would go past a limit."""
        if self.open >= self._limits.total:
            raise LimitExceeded(
                "--max-streams",
                self._limits.total,
                f"the service has {self.open} GetUpdatedJob streams open, its limit (--max-streams {self._limits.total}); "
                "close a stream or raise the limit",
            )
        if self._by_peer[peer] >= self._limits.per_peer:
            raise LimitExceeded(
                "--max-streams-per-peer",
                self._limits.per_peer,
                f"this client connection ({peer}) has {self._by_peer[peer]} GetUpdatedJob streams open, its limit "
                f"(--max-streams-per-peer {self._limits.per_peer}); close a stream or raise the limit",
            )
        self.open += 1
        self._by_peer[peer] += 1

    def release(self, peer: str) -> None:
        self.open -= 1
        self._by_peer[peer] -= 1
        if not self._by_peer[peer]:
            del self._by_peer[peer]

    async def follow(
        self, after: int, job_set: str, *, keepalive: float, store_readers: Executor
    ) -> AsyncIterator[bytes]:
        """Encoded GetUpdatedJobResponses from `after` on, in order, each update once; an empty
        one after `keepalive` seconds without any. Ends when the log closes."""
        log = self._log
        cursor = after
        # As if the last message went at a random point of the last interval: streams opened
        # together (a gateway's restart) then send their keep-alives spread out, not all at once.
        last_sent = self._loop.time() - random.uniform(0, keepalive)
        while not log.closed:
            chunk = log.read_recent(cursor, job_set)
            if chunk is None:  # behind what memory holds
                chunk = await self._loop.run_in_executor(store_readers, log.read_stored, cursor, job_set)
            cursor = chunk.cursor
            if chunk.count:
                yield chunk.message
                last_sent = self._loop.time()
                continue
            quiet_for = self._loop.time() - last_sent
            if quiet_for >= keepalive:
                yield b""  # a keep-alive: tells the client the stream still works
                last_sent = self._loop.time()
                continue
            await self._wait(job_set, cursor, keepalive - quiet_for)

    async def _wait(self, job_set: str, cursor: int, timeout: float) -> None:
        """Until an update of `job_set` (or of any, for '') comes after `cursor`, the log
        closes, or `timeout` seconds pass."""
        if self._log.last_sequence > cursor or self._log.closed:
            return  # published since the read (a filtered read may find nothing new: fine)
        woken: asyncio.Future[None] = self._loop.create_future()
        waiting = self._waiting.setdefault(job_set, set())
        waiting.add(woken)
        expiry = self._loop.call_later(timeout, _settle, woken)
        try:
            await woken
        finally:
            expiry.cancel()
            waiting.discard(woken)
            if not waiting and self._waiting.get(job_set) is waiting:
                del self._waiting[job_set]

    def _published(self, job_sets: frozenset[str] | None) -> None:
        # The publishing thread: hand over to the loop, once per publish whatever the streams.
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._wake, job_sets)

    def _wake(self, job_sets: frozenset[str] | None) -> None:
        names = list(self._waiting) if job_sets is None else [*job_sets, ""]
        pending = bool(self._to_wake)
        for name in names:
            self._to_wake.extend(self._waiting.pop(name, ()))
        if not pending:
            self._wake_some()

    def _wake_some(self) -> None:
        """Wake WAKE_BATCH streams, and the next ones after whatever else is ready to run: an
        update watched by thousands then does not hold up the calls that came meanwhile."""
        for _ in range(min(WAKE_BATCH, len(self._to_wake))):
            _settle(self._to_wake.popleft())
        if self._to_wake:
            self._loop.call_soon(self._wake_some)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
