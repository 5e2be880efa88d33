"""Request keys in the store: each job set's its own, and a store written before that upgraded
in place, so a client retrying across the upgrade still gets its first job's id."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from batchgate.store import NewJob, Store


def test_a_key_is_looked_up_in_its_own_job_set(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.insert_jobs([NewJob(1, b"", "alice", "k"), NewJob(2, b"", "bob", "k"), NewJob(3, b"", "al", "icek")], 0.0)
    found = store.job_ids_for_keys([("alice", "k"), ("bob", "k"), ("al", "icek"), ("carol", "k")])
    assert found == {("alice", "k"): 1, ("bob", "k"): 2, ("al", "icek"): 3}
    store.close()


def test_a_store_of_unscoped_keys_is_upgraded_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as old:  # as an earlier version left it: the key alone
        old.execute("DELETE FROM meta WHERE key = 'request_keys_scoped'")
        old.execute("INSERT INTO jobs (job_id, request_key, job_set, spec, state, issued_at) VALUES (7, 'k', 'wf', x'', 'queued', 0)")
    old.close()
    for _ in range(2):  # the second open must not scope the keys again
        store = Store(path)
        assert store.job_ids_for_keys([("wf", "k")]) == {("wf", "k"): 7}
        store.close()
