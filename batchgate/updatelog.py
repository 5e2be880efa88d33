"""The ordered log of job updates, read by every stream from its own cursor.

New updates are kept in memory as well as in the store: a bounded tail, indexed by job set, of
each update already encoded as a stream sends it, so a live stream neither touches SQLite nor
encodes anything, and a stream of one job set never looks at another job set's updates. A reader
whose cursor is older than the tail reads the store (`read_stored`, which blocks: callers on an
event loop run it in a thread) until it catches up; so a subscriber that falls behind costs the
service nothing but its cursor, whatever it missed.

Readers learn of new updates through listeners called by `publish` (grpc_api's streams wake
through their event loop; see batchgate/streams.py).
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass

from batchgate.store import Store

# What one GetUpdatedJobResponse carries at most: few enough bytes for any client's default
# receive limit (4 MiB), many enough updates that a client catching up reads 100,000s a second.
MAX_UPDATES_PER_MESSAGE = 2000
MAX_BYTES_PER_MESSAGE = 1024 * 1024

_UPDATES_FIELD_TAG = b"\x0a"  # GetUpdatedJobResponse.updates: field 1, length-delimited


def encode_for_stream(body: bytes) -> bytes:
    """A serialized UpdatedJob as one element of GetUpdatedJobResponse.updates: concatenated,
    such elements are that message's encoding (protobuf's wire format for a repeated field)."""
    length = len(body)
    prefix = bytearray(_UPDATES_FIELD_TAG)
    while length > 0x7F:
        prefix.append((length & 0x7F) | 0x80)
        length >>= 7
    prefix.append(length)
    return bytes(prefix) + body


@dataclass(frozen=True)
class LoggedUpdate:
    sequence: int
    job_set: str
    body: bytes  # the serialized UpdatedJob, as the store keeps it


@dataclass(frozen=True)
class Chunk:
    """Some updates after a cursor, encoded as a GetUpdatedJobResponse."""

    message: bytes
    count: int
    cursor: int  # the last sequence looked at: pass it to the next read


# Called with the job sets of newly published updates, or None when the log closes.
Listener = Callable[[frozenset[str] | None], None]


class UpdateLog:
    def __init__(self, store: Store, *, tail_size: int = 50_000) -> None:
        self._store = store
        self._tail_size = max(1, tail_size)
        self._lock = threading.Lock()
        self._first = store.last_sequence() + 1  # the sequence of _messages[0]
        self._messages: list[bytes] = []  # encoded updates, contiguous sequences from _first
        self._by_job_set: dict[str, list[int]] = {}  # the tail's sequences of each job set
        self._last_sequence = self._first - 1
        self._listeners: list[Listener] = []
        self._closed = False

    @property
    def last_sequence(self) -> int:
        return self._last_sequence

    @property
    def closed(self) -> bool:
        return self._closed

    def listen(self, listener: Listener) -> None:
        """Call `listener` (from the publishing thread) after each publish and on close."""
        self._listeners.append(listener)

    def next_sequences(self, count: int) -> range:
        """Sequences for the next `count` updates; only the single recorder thread calls this."""
        return range(self._last_sequence + 1, self._last_sequence + 1 + count)

    def publish(self, updates: list[LoggedUpdate]) -> None:
        """Make updates (already durable in the store) visible to readers."""
        if not updates:
            return
        encoded = [encode_for_stream(update.body) for update in updates]
        with self._lock:
            self._messages.extend(encoded)
            for update in updates:
                self._by_job_set.setdefault(update.job_set, []).append(update.sequence)
            self._last_sequence = updates[-1].sequence
            if len(self._messages) > 2 * self._tail_size:
                self._trim()  # amortised: once per tail_size updates
        job_sets = frozenset(update.job_set for update in updates)
        for listener in self._listeners:
            listener(job_sets)

    def _trim(self) -> None:
        drop = len(self._messages) - self._tail_size
        del self._messages[:drop]
        self._first += drop
        for job_set in list(self._by_job_set):
            sequences = self._by_job_set[job_set]
            del sequences[: bisect.bisect_left(sequences, self._first)]
            if not sequences:
                del self._by_job_set[job_set]

    def close(self) -> None:
        """Readers see no more updates, and their streams end."""
        self._closed = True
        for listener in self._listeners:
            listener(None)

    def read_recent(self, after: int, job_set: str) -> Chunk | None:
        """Updates after `after` (of `job_set`, or of all when empty) from memory, without
        blocking; None when some are older than memory holds (then `read_stored`)."""
        with self._lock:
            last = self._last_sequence
            if after >= last:
                return Chunk(b"", 0, after)
            if after + 1 < self._first:
                return None
            if not job_set:
                start = after + 1 - self._first
                window = self._messages[start : start + MAX_UPDATES_PER_MESSAGE]
                count = _fitting(window)
                return Chunk(b"".join(window[:count]), count, after + count)
            sequences = self._by_job_set.get(job_set, [])
            start = bisect.bisect_right(sequences, after)
            picked = sequences[start : start + MAX_UPDATES_PER_MESSAGE]
            window = [self._messages[sequence - self._first] for sequence in picked]
        count = _fitting(window)
        complete = count == len(window) < MAX_UPDATES_PER_MESSAGE
        return Chunk(b"".join(window[:count]), count, last if complete else picked[count - 1])

    def read_stored(self, after: int, job_set: str) -> Chunk:
        """Updates after `after` from the store (blocking: SQLite)."""
        last = self._last_sequence  # every sequence up to it is committed
        rows = self._store.updates_after(after, job_set, MAX_UPDATES_PER_MESSAGE, up_to=last)
        window = [encode_for_stream(body) for _, body in rows]
        count = _fitting(window)
        complete = count == len(window) < MAX_UPDATES_PER_MESSAGE
        return Chunk(b"".join(window[:count]), count, max(after, last) if complete else rows[count - 1][0])


def _fitting(messages: list[bytes]) -> int:
    """How many of `messages`, from the first, fit in one stream message (at least one)."""
    if sum(map(len, messages)) <= MAX_BYTES_PER_MESSAGE:
        return len(messages)
    count = 0
    for count, size in enumerate(itertools.accumulate(map(len, messages)), 1):
        if size > MAX_BYTES_PER_MESSAGE:
            return max(1, count - 1)
    return count
