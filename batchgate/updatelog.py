"""The ordered log of job updates and its readers: every stream reads it from its own cursor.

New updates are kept in memory (a bounded tail) as well as in the store, so live streams never
touch SQLite; a reader whose cursor is older than the tail reads the store until it catches up.
One condition variable wakes every waiting stream when updates are appended.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from batchgate.store import Store
from batchgate.v1 import batchgate_pb2 as pb


@dataclass(frozen=True)
class LoggedUpdate:
    sequence: int
    job_set: str
    update: pb.UpdatedJob


class UpdateLog:
    def __init__(self, store: Store, *, tail_size: int = 50_000) -> None:
        self._store = store
        self._tail_size = tail_size
        self._tail: list[LoggedUpdate] = []  # contiguous sequences, oldest first
        self._changed = threading.Condition()
        self._last_sequence = store.last_sequence()
        self._closed = False

    @property
    def last_sequence(self) -> int:
        return self._last_sequence

    def next_sequences(self, count: int) -> range:
        """Sequences for the next `count` updates; only the single recorder thread calls this."""
        return range(self._last_sequence + 1, self._last_sequence + 1 + count)

    def publish(self, updates: list[LoggedUpdate]) -> None:
        """Make updates (already durable in the store) visible to readers."""
        if not updates:
            return
        with self._changed:
            self._tail.extend(updates)
            if len(self._tail) > 2 * self._tail_size:
                del self._tail[: -self._tail_size]  # amortised: trims once per tail_size appends
            self._last_sequence = updates[-1].sequence
            self._changed.notify_all()

    def close(self) -> None:
        """Wake every waiting reader; they see no more updates and their streams end."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def read(self, after: int, job_set: str, *, limit: int = 1000, wait: float = 0.0) -> tuple[list[pb.UpdatedJob], int]:
        """Updates with a sequence greater than `after` (of `job_set`, or all when empty), oldest
        first, waiting up to `wait` seconds for one when there is none yet.

        Returns the updates and the cursor to pass next time: the last sequence looked at, which
        for a filtered read may be past the last update returned.
        """
        with self._changed:
            if wait > 0 and after >= self._last_sequence and not self._closed:
                self._changed.wait_for(lambda: self._last_sequence > after or self._closed, timeout=wait)
            if after >= self._last_sequence:
                return [], after
            window: list[LoggedUpdate] | None = None
            last = self._last_sequence
            if self._tail and self._tail[0].sequence <= after + 1:
                start = after + 1 - self._tail[0].sequence
                window = self._tail[start : start + limit * (1 if not job_set else 50)]
        if window is None:
            # Older than what memory holds: the store has everything.
            rows = self._store.updates_after(after, job_set, limit)
            # Every sequence up to `last` was committed before it was published.
            cursor = rows[-1][0] if len(rows) == limit else last
            return [pb.UpdatedJob.FromString(body) for _, body in rows], cursor
        found: list[pb.UpdatedJob] = []
        cursor = after
        for logged in window:
            cursor = logged.sequence
            if not job_set or logged.job_set == job_set:
                found.append(logged.update)
                if len(found) >= limit:
                    break
        return found, cursor
