"""Durable state of one service, in one SQLite file (WAL): jobs, their updates, SetEnv.

WAL with synchronous=NORMAL makes every commit survive a crash of the process (the case we
promise: "nothing a client submitted is lost when any process restarts") without an fsync per
commit; only a power cut can lose the last commits.
All writes go through one connection under a lock; reads for resuming streams use a connection
per thread, which WAL lets run beside the writer.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from batchgate.errors import AcquisitionTimeoutException, StoreUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY,
    request_key TEXT UNIQUE,          -- scoped_key(job_set, key); NULL when the client gave none
    job_set TEXT NOT NULL,
    spec BLOB NOT NULL,               -- the resolved JobSpec (defaults and environment filled in)
    state TEXT NOT NULL,
    backing_id TEXT NOT NULL DEFAULT '',
    issued_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_live ON jobs (state) WHERE state IN ('queued', 'submitted', 'running');
CREATE INDEX IF NOT EXISTS jobs_killing ON jobs (state) WHERE state = 'killing';
CREATE TABLE IF NOT EXISTS updates (
    sequence INTEGER PRIMARY KEY,
    job_set TEXT NOT NULL,
    body BLOB NOT NULL                -- an UpdatedJob
);
-- A stream of one job set reads its own updates, not every update since its cursor.
CREATE INDEX IF NOT EXISTS updates_by_job_set ON updates (job_set, sequence);
-- SetEnv's variables, by the job set they apply to ('' for every job set).
CREATE TABLE IF NOT EXISTS set_env (job_set TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (job_set, name));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class JobState(StrEnum):
    QUEUED = "queued"  # recorded, not yet handed to the scheduler
    SUBMITTED = "submitted"  # the scheduler has it
    RUNNING = "running"
    ENDED = "ended"  # its update is in the log
    KILLING = "killing"  # killed by the client; the scheduler has not confirmed it yet
    KILLED = "killed"  # killed by the client: never reported

    @property
    def live(self) -> bool:
        return self in (JobState.QUEUED, JobState.SUBMITTED, JobState.RUNNING)


@dataclass(frozen=True)
class StoredJob:
    job_id: int
    spec: bytes
    state: JobState
    backing_id: str
    issued_at: float
    started_at: float | None


@dataclass(frozen=True)
class JobRecord:
    """Everything the store keeps of one job, for reading (the status page's job page)."""

    job_id: int
    job_set: str
    spec: bytes
    state: JobState
    backing_id: str
    issued_at: float
    started_at: float | None
    ended_at: float | None


@dataclass(frozen=True)
class NewJob:
    job_id: int
    spec: bytes
    job_set: str
    request_key: str


@dataclass(frozen=True)
class NewUpdate:
    sequence: int
    job_id: int
    job_set: str
    body: bytes


def scoped_key(job_set: str, request_key: str) -> str:
    """A request key as the store keeps it: one job set's keys are its own, so two tenants
    choosing the same key get two jobs, and neither learns of the other's. The job set's length
    first keeps it apart from the key, whatever characters either holds."""
    return f"{len(job_set)}:{job_set}{request_key}"


class Store:
    def __init__(self, path: Path, *, lock_timeout: float = 10.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lock_timeout = lock_timeout
        self._write_lock = threading.Lock()
        self.on_write_error: Callable[[], None] = lambda: None  # counts failed writes (metrics)
        self._writer = self._connect()
        self._writer.executescript(SCHEMA)
        self._migrate()
        self._readers = threading.local()

    def _migrate(self) -> None:
        """Bring a store written by an earlier version up to date."""
        scoped = self._writer.execute("SELECT 1 FROM meta WHERE key = 'request_keys_scoped'").fetchone()
        if not scoped:  # request keys before they were kept per job set
            with self._transaction() as db:
                db.execute(
                    "UPDATE jobs SET request_key = length(job_set) || ':' || job_set || request_key WHERE request_key IS NOT NULL"
                )
                db.execute("INSERT INTO meta (key, value) VALUES ('request_keys_scoped', 1)")
        old = self._writer.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'environment'").fetchone()
        if old:  # SetEnv before job sets: every variable applied to every job set
            with self._transaction() as db:
                db.execute("INSERT OR IGNORE INTO set_env (job_set, name, value) SELECT '', name, value FROM environment")
                db.execute("DROP TABLE environment")

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=self.lock_timeout, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        started = time.monotonic()
        with self._write_lock:
            try:
                self._writer.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                self.on_write_error()
                if "locked" in str(error) or "busy" in str(error):
                    raise AcquisitionTimeoutException("the job store's write lock", time.monotonic() - started) from error
                raise StoreUnavailable.because(str(self.path), error) from error
            try:
                yield self._writer
            except BaseException as error:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                    self._writer.execute("ROLLBACK")
                if isinstance(error, sqlite3.OperationalError):  # e.g. "database or disk is full"
                    self.on_write_error()
                    raise StoreUnavailable.because(str(self.path), error) from error
                raise
            try:
                self._writer.execute("COMMIT")
            except sqlite3.OperationalError as error:
                self.on_write_error()
                with contextlib.suppress(sqlite3.Error):  # a failed COMMIT can leave it open
                    self._writer.execute("ROLLBACK")
                raise StoreUnavailable.because(str(self.path), error) from error

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._readers, "connection", None)
        if connection is None:
            connection = self._connect()
            self._readers.connection = connection
        return connection

    # ---- counters ----------------------------------------------------------------------------

    def instance_id(self) -> str:
        """A name for this store that never changes: made once, when the store is created."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance_id', ?)", (uuid.uuid4().hex[:12],))
            (value,) = db.execute("SELECT value FROM meta WHERE key = 'instance_id'").fetchone()
        return str(value)

    def last_job_id(self) -> int:
        # Job rows are never deleted, so the highest id here is the highest ever given: ids are
        # never reused. (Anything that prunes jobs must keep the newest row.)
        row = self._writer.execute("SELECT MAX(job_id) FROM jobs").fetchone()
        return int(row[0] or 0)

    def last_sequence(self) -> int:
        row = self._writer.execute("SELECT MAX(sequence) FROM updates").fetchone()
        return int(row[0] or 0)

    # ---- jobs --------------------------------------------------------------------------------

    def job_ids_for_keys(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """(job set, request key) -> the job issued with that key in that job set, where there is one."""
        by_scoped = {scoped_key(job_set, key): (job_set, key) for job_set, key in keys}
        wanted = list(by_scoped)
        found: dict[tuple[str, str], int] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._reader().execute(f"SELECT request_key, job_id FROM jobs WHERE request_key IN ({marks})", chunk)
            found.update({by_scoped[key]: job_id for key, job_id in rows})
        return found

    def job_sets(self, job_ids: Iterable[int]) -> dict[int, str]:
        """Job id -> job set, for the ids that are jobs."""
        wanted = [job_id for job_id in set(job_ids) if 0 < job_id < 2**63]  # SQLite's integers
        found: dict[int, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._reader().execute(f"SELECT job_id, job_set FROM jobs WHERE job_id IN ({marks})", chunk))
        return found

    def insert_jobs(self, jobs: Sequence[NewJob], issued_at: float) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO jobs (job_id, request_key, job_set, spec, state, issued_at) VALUES (?, ?, ?, ?, 'queued', ?)",
                [(job.job_id, scoped_key(job.job_set, job.request_key) if job.request_key else None, job.job_set, job.spec, issued_at) for job in jobs],
            )

    def set_submitted(self, submitted: Sequence[tuple[int, str]]) -> None:
        with self._transaction() as db:
            db.executemany(
                # The start may be recorded first (a driver that learns the id only later).
                "UPDATE jobs SET backing_id = ?, state = CASE state WHEN 'queued' THEN 'submitted' ELSE state END "
                "WHERE job_id = ? AND backing_id = '' AND state IN ('queued', 'running')",
                [(backing_id, job_id) for job_id, backing_id in submitted],
            )

    def set_requeued(self, job_ids: Sequence[int]) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE jobs SET state = 'queued', backing_id = '', started_at = NULL WHERE job_id = ?",
                [(job_id,) for job_id in job_ids],
            )

    def set_killed(self, job_ids: Sequence[int], at: float, *, confirmed: bool = True) -> None:
        """Killed by the client. Unconfirmed kills (KILLING) are made again after a restart
        until the scheduler confirms them."""
        state = JobState.KILLED if confirmed else JobState.KILLING
        with self._transaction() as db:
            db.executemany(
                "UPDATE jobs SET state = ?, ended_at = COALESCE(ended_at, ?) WHERE job_id = ?",
                [(state.value, at, job_id) for job_id in job_ids],
            )

    def count_killing(self) -> int:
        """How many kills the scheduler has not confirmed yet."""
        (count,) = self._reader().execute("SELECT COUNT(*) FROM jobs WHERE state = 'killing'").fetchone()
        return int(count)

    def killing_jobs(self) -> list[StoredJob]:
        """Jobs whose kill the scheduler has not confirmed."""
        return self._jobs_in_state("state = 'killing'")

    def record(
        self,
        started: Sequence[tuple[int, str | None, float]],
        updates: Sequence[NewUpdate],
        at: float,
        checkpoints: Mapping[str, int],
    ) -> None:
        """In one transaction: mark jobs started (job id, backing id or None, when), append
        updates to the log and mark their jobs ended, and save the driver's checkpoints."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE jobs SET state = 'running', backing_id = COALESCE(?, backing_id), started_at = ? "
                "WHERE job_id = ? AND state IN ('queued', 'submitted')",
                [(backing_id, when, job_id) for job_id, backing_id, when in started],
            )
            db.executemany(
                "INSERT INTO checkpoints (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(checkpoints.items()),
            )
            db.executemany(
                "INSERT INTO updates (sequence, job_set, body) VALUES (?, ?, ?)",
                [(update.sequence, update.job_set, update.body) for update in updates],
            )
            db.executemany(
                "UPDATE jobs SET state = 'ended', ended_at = ? WHERE job_id = ?",
                [(at, update.job_id) for update in updates],
            )

    def live_jobs(self) -> list[StoredJob]:
        return self._jobs_in_state("state IN ('queued', 'submitted', 'running')")

    def _jobs_in_state(self, condition: str) -> list[StoredJob]:
        rows = self._writer.execute(
            f"SELECT job_id, spec, state, backing_id, issued_at, started_at FROM jobs WHERE {condition} ORDER BY job_id"
        )
        return [StoredJob(row[0], row[1], JobState(row[2]), row[3], row[4], row[5]) for row in rows]

    def job(self, job_id: int) -> JobRecord | None:
        """One job, whatever its state (None if this store never issued it)."""
        row = self._reader().execute(
            "SELECT job_id, job_set, spec, state, backing_id, issued_at, started_at, ended_at FROM jobs WHERE job_id = ?", (job_id,)
        ).fetchone()
        return None if row is None else JobRecord(row[0], row[1], row[2], JobState(row[3]), *row[4:])

    def checkpoints(self) -> dict[str, int]:
        # A reader's connection: only what is committed (the writer's would show a transaction
        # in progress to another thread).
        return dict(self._reader().execute("SELECT key, value FROM checkpoints").fetchall())

    def ping(self) -> bool:
        """Whether the store answers (for health checks)."""
        try:
            self._reader().execute("SELECT 1 FROM meta LIMIT 1").fetchall()
        except sqlite3.Error:
            return False
        return True

    # ---- updates -----------------------------------------------------------------------------

    def updates_after(self, sequence: int, job_set: str, limit: int, *, up_to: int) -> list[tuple[int, bytes]]:
        """Up to `limit` updates (sequence, body) with sequences in (sequence, up_to], of
        `job_set` or of all when empty, oldest first."""
        if job_set:
            rows = self._reader().execute(
                "SELECT sequence, body FROM updates WHERE job_set = ? AND sequence > ? AND sequence <= ? ORDER BY sequence LIMIT ?",
                (job_set, sequence, up_to, limit),
            )
        else:
            rows = self._reader().execute(
                "SELECT sequence, body FROM updates WHERE sequence > ? AND sequence <= ? ORDER BY sequence LIMIT ?",
                (sequence, up_to, limit),
            )
        return rows.fetchall()

    def latest_updates(self, limit: int) -> list[bytes]:
        """The bodies of the `limit` newest updates, newest first."""
        rows = self._reader().execute("SELECT body FROM updates ORDER BY sequence DESC LIMIT ?", (limit,))
        return [body for (body,) in rows]

    def updates_before(self, sequence: int, job_set: str, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` updates (sequence, body) of `job_set` older than `sequence`, newest first
        (reading back from the end, e.g. to find one job's update)."""
        rows = self._reader().execute(
            "SELECT sequence, body FROM updates WHERE job_set = ? AND sequence < ? ORDER BY sequence DESC LIMIT ?",
            (job_set, sequence, limit),
        )
        return rows.fetchall()

    # ---- environment -------------------------------------------------------------------------

    def environment(self) -> dict[str, dict[str, str]]:
        """SetEnv's variables by job set ('' for every job set)."""
        by_job_set: dict[str, dict[str, str]] = {}
        for job_set, name, value in self._writer.execute("SELECT job_set, name, value FROM set_env ORDER BY job_set, name"):
            by_job_set.setdefault(job_set, {})[name] = value
        return by_job_set

    def set_environment(self, job_set: str, name: str, value: str | None) -> None:
        with self._transaction() as db:
            if value is None:
                db.execute("DELETE FROM set_env WHERE job_set = ? AND name = ?", (job_set, name))
            else:
                db.execute(
                    "INSERT INTO set_env (job_set, name, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (job_set, name) DO UPDATE SET value = excluded.value",
                    (job_set, name, value),
                )

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()
