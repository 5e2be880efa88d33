"""One list-then-watch over a kind of object, kept as a cache, as client-go's informers do.

It lists the objects that match a label selector, then watches from the list's resourceVersion;
every change updates the cache and is passed on. When the connection drops, it watches again from
the last version it saw (nothing is missed, nothing seen twice); when the server says that
version is too old (410 Gone), it lists again and passes on what changed meanwhile, including
objects that went away (as DELETED). The calls go through the official client; objects stay the
API's plain JSON dicts.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.watch.watch import iter_resp_lines
from kubernetes.client.exceptions import ApiException

from batchgate.backoff import Backoff

from .calls import cut, observed

log = logging.getLogger(__name__)

Object = dict[str, Any]
Handler = Callable[[str, Object], None]  # ("ADDED" | "MODIFIED" | "DELETED", object)
GONE = 410
WATCH_SECONDS = 300  # the server ends each watch after this; the next one resumes from the last version
LIST_PAGE = 500


class Watcher:
    def __init__(
        self, name: str, list_call: Callable[..., Any], *, backend: str, selector: str, on_event: Handler, **call_args: Any
    ) -> None:
        self.name = name
        self.backend = backend
        self._list_call = list_call
        self._call_args = {**call_args, "label_selector": selector}
        self._on_event = on_event
        self._cache: dict[str, Object] = {}
        self._lock = threading.Lock()
        self._version: str | None = None  # None: list before watching
        self._response: Any = None  # the open watch, to cut on stop
        self._stop = threading.Event()
        self.synced = threading.Event()  # set once the first list is in the cache
        self.connected = False  # the last list or watch was answered (for the health service)
        self._backoff = Backoff()  # between failed calls; reset once one is answered
        self._thread = threading.Thread(target=self._run, name=f"k8s-watch-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        cut(self._response)  # unblocks the read the watch thread waits in
        self._thread.join(timeout=10)

    def get(self, name: str) -> Object | None:
        with self._lock:
            return self._cache.get(name)

    def objects(self) -> list[Object]:
        with self._lock:
            return list(self._cache.values())

    def forget(self, name: str) -> None:
        """Drop an object nothing more will be read of (it comes back if it changes)."""
        with self._lock:
            self._cache.pop(name, None)

    def remember(self, obj: Object) -> None:
        """Put an object the service itself just created into the cache (the watch confirms it)."""
        with self._lock:
            self._cache.setdefault(obj["metadata"]["name"], obj)

    # ---- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._version is None:
                    self._relist()
                self._watch_once()
            except ApiException as error:
                if error.status == GONE:
                    log.info("%s watch expired (410 Gone at version %s): listing again", self.name, self._version)
                    self._version = None
                    continue
                self._pause(error)
            except Exception as error:  # a dropped connection, a timeout, a server restarting
                self._pause(error)

    def _answered(self) -> None:
        self.connected = True
        self._backoff.reset()

    def _pause(self, error: BaseException) -> None:
        self.connected = False
        delay = self._backoff.next()
        log.warning("%s watch failed (%s); watching again in %.1f s from version %s", self.name, error, delay, self._version)
        self._stop.wait(delay)

    def _relist(self) -> None:
        listed: dict[str, Object] = {}
        page_token: str | None = None
        while True:
            extra = {"_continue": page_token} if page_token else {}
            with observed(self.backend, f"list {self.name}"):
                response = self._list_call(**self._call_args, limit=LIST_PAGE, _preload_content=False, **extra)
            page = json.loads(response.data)
            for item in page.get("items") or []:
                listed[item["metadata"]["name"]] = item
            page_token = (page.get("metadata") or {}).get("continue")
            if not page_token:
                version = page["metadata"]["resourceVersion"]
                break
        with self._lock:
            # Gone: what the cache had and the list has not, unless it is newer than the list (an
            # object the service created while the list was taken). Versions are etcd revisions,
            # which only grow.
            newer = {name: obj for name, obj in self._cache.items() if name not in listed and _newer(obj, version)}
            gone = [obj for name, obj in self._cache.items() if name not in listed and name not in newer]
            self._cache = {**listed, **newer}
        for obj in gone:
            self._on_event("DELETED", obj)
        for obj in listed.values():
            self._on_event("MODIFIED", obj)
        self._version = version
        self._answered()
        self.synced.set()

    def _watch_once(self) -> None:
        with observed(self.backend, f"watch {self.name}", timed=False):
            response = self._list_call(
                **self._call_args,
                watch=True,
                resource_version=self._version,
                timeout_seconds=WATCH_SECONDS,
                allow_watch_bookmarks=True,
                _preload_content=False,
                _request_timeout=(10, WATCH_SECONDS + 30),  # a silent, dead connection is noticed too
            )
        self._response = response
        self._answered()
        try:
            for line in iter_resp_lines(response):
                if self._stop.is_set():
                    return
                if line.strip():
                    self._apply(json.loads(line))
        finally:
            self._response = None
            response.close()
            response.release_conn()

    def _apply(self, event: Object) -> None:
        kind, obj = event["type"], event["object"]
        if kind == "ERROR":  # the server's Status, e.g. 410 Gone for a version it no longer has
            raise ApiException(status=obj.get("code", 500), reason=f"{obj.get('reason', '')}: {obj.get('message', '')}")
        version = obj.get("metadata", {}).get("resourceVersion")
        if kind == "BOOKMARK":
            self._version = version or self._version
            return
        name = obj["metadata"]["name"]
        with self._lock:
            if kind == "DELETED":
                self._cache.pop(name, None)
            else:
                self._cache[name] = obj
        self._version = version
        self._on_event(kind, obj)


def _newer(obj: Object, version: str) -> bool:
    try:
        return int(obj["metadata"].get("resourceVersion", "0")) > int(version)
    except ValueError:
        return False
