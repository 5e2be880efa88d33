"""The Python client: Toil's batch-system method set over the BatchSystem gRPC service.

    with BatchgateClient("127.0.0.1:50051", job_set="workflow-1") as client:
        job_id = client.issue(job_spec("echo hello", cores=0.5, memory="256M"))
        update = client.get_updated_job(max_wait=60)

Every failed call raises the batchgate exception its status stands for (errors.from_rpc_error):
InsufficientSystemResources, InvalidArgument, BackendUnavailable, ...
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from batchgate import units
from batchgate.client.bearer import TOKEN_VARIABLE, with_token
from batchgate.client.updates import UpdateFeed
from batchgate.errors import DeadlockException, InvalidArgument, ServiceError, from_rpc_error
from batchgate.jobspec import BACKEND_OPTION_FIELDS
from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as rpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
ADDRESS_VARIABLE = "BATCHGATE_ADDRESS"

# A call that meets a restarting service (UNAVAILABLE) is tried again by gRPC itself; issue
# calls are safe to repeat because the client gives every job a request key.
RETRY_POLICY = {
    "methodConfig": [
        {
            "name": [{"service": "batchgate.v1.BatchSystem"}],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}
# gRPC's own reconnect backoff grows to 120 s; a service restarted behind a long-lived client
# should be found again within a couple of seconds.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", json.dumps(RETRY_POLICY)),
]

Response = TypeVar("Response", bound=Message)


class BatchgateClient:
    """A connection to one BatchSystem service (a backend or the gateway).

    `job_set` scopes listing and the update stream, and is given to every spec that names none.
    `token` is the bearer token a service with a tokens file wants (default: $BATCHGATE_TOKEN).
    `after_sequence` is where the update stream starts: the `cursor` of an earlier client, to
    carry on where it stopped.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        job_set: str = "",
        timeout: float = 30.0,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        token: str | None = None,
        after_sequence: int = 0,
    ) -> None:
        self.address = address or os.environ.get(ADDRESS_VARIABLE) or DEFAULT_ADDRESS
        self.job_set = job_set
        self.timeout = timeout
        token = token or os.environ.get(TOKEN_VARIABLE) or None
        self._channel = open_channel(self.address, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, token=token)
        self._stub = rpc.BatchSystemStub(self._channel)
        self._cursor = after_sequence
        self._feed: UpdateFeed | None = None

    @property
    def cursor(self) -> int:
        """The sequence of the last update handed to the caller."""
        return self._cursor

    def issue(self, spec: pb.JobSpec) -> int:
        response = self._call(self._stub.IssueJob, pb.IssueJobRequest(spec=self._in_job_set(spec)))
        return int(response.job_id)

    def issue_many(self, specs: Sequence[pb.JobSpec]) -> list[int]:
        """Issue all of `specs` or none; the ids come back in the order of the specs."""
        request = pb.IssueJobsRequest(specs=[self._in_job_set(spec) for spec in specs])
        return list(self._call(self._stub.IssueJobs, request).job_ids)

    def kill(self, job_ids: Iterable[int]) -> None:
        """Kill the jobs and return once they are dead; they never produce an update."""
        self._call(self._stub.KillJobs, pb.KillJobsRequest(job_ids=list(job_ids)))

    def issued_job_ids(self) -> list[int]:
        return list(self._call(self._stub.ListIssuedJobs, pb.ListIssuedJobsRequest(job_set=self.job_set)).job_ids)

    def running_job_ids(self) -> dict[int, float]:
        """Job id -> seconds it has been running."""
        response = self._call(self._stub.ListRunningJobs, pb.ListRunningJobsRequest(job_set=self.job_set))
        return dict(response.seconds_running)

    def get_updated_job(self, max_wait: float) -> pb.UpdatedJob | None:
        """The next update not yet returned, or None when none comes within `max_wait` seconds.

        Raises DeadlockException when nothing came and the service says its queued jobs can
        never start.
        """
        update = self._next_update(max_wait)
        if update is None:
            self._raise_if_deadlocked()
        return update

    def updates(self, *, after_sequence: int | None = None, timeout: float | None = None) -> Iterator[pb.UpdatedJob]:
        """Updates as they come, until `timeout` seconds pass without one (None: for ever).

        `after_sequence` moves the cursor first (backwards too, to see updates again).
        """
        if after_sequence is not None and after_sequence != self._cursor:
            self._stop_feed()
            self._cursor = after_sequence
        while (update := self._next_update(timeout)) is not None:
            yield update

    def set_env(self, name: str, value: str | None = None) -> None:
        """Set (or, without a value, unset) a variable for the jobs issued from now on: those of
        this client's job set, or, with no job set, every job of the service."""
        self._call(self._stub.SetEnv, pb.SetEnvRequest(name=name, value=value, job_set=self.job_set))

    def scheduling_status(self) -> str:
        """Why queued jobs wait, in words."""
        return self.status().message

    def status(self) -> pb.GetSchedulingStatusResponse:
        """The whole scheduling status: the message and the queued and running counts."""
        return self._call(self._stub.GetSchedulingStatus, pb.GetSchedulingStatusRequest(job_set=self.job_set))

    def capabilities(self) -> pb.GetCapabilitiesResponse:
        return self._call(self._stub.GetCapabilities, pb.GetCapabilitiesRequest())

    def check(self, spec: pb.JobSpec) -> pb.CheckJobResponse:
        """Whether the service would accept `spec`, and where it would run; nothing is issued."""
        return self._call(self._stub.CheckJob, pb.CheckJobRequest(spec=self._in_job_set(spec)))

    def node_types(self) -> list[pb.NodeType]:
        return list(self._call(self._stub.GetNodeTypes, pb.GetNodeTypesRequest()).node_types)

    def nodes(self, preemptible: bool | None = None) -> list[pb.Node]:
        return list(self._call(self._stub.GetNodes, pb.GetNodesRequest(preemptible=preemptible)).nodes)

    def ignore_node(self, name: str, *, backend: str = "", unignore: bool = False) -> None:
        """Toil's ignoreNode (unignore=True: unignoreNode): no new jobs on that node."""
        self._call(self._stub.IgnoreNode, pb.IgnoreNodeRequest(name=name, unignore=unignore, backend=backend))

    def node_in_use(self, name: str, *, backend: str = "") -> bool:
        """Toil's nodeInUse: whether any of this service's jobs runs on that node."""
        return self._call(self._stub.GetNodeInUse, pb.GetNodeInUseRequest(name=name, backend=backend)).in_use

    def output(self, job_id: int, *, stderr: bool = False, tail_bytes: int = 0, follow: bool = False) -> Iterator[bytes]:
        """A job's stdout (or stderr) as the service keeps it, chunk by chunk: all of it, or its
        last `tail_bytes`; with `follow`, what the job writes until it has ended. Raises
        NoOutput (saying why) when the service has none, JobNotFound for an unknown id."""
        request = pb.GetJobOutputRequest(
            job_id=job_id,
            stream=pb.OUTPUT_STREAM_STDERR if stderr else pb.OUTPUT_STREAM_STDOUT,
            tail_bytes=tail_bytes,
            follow=follow,
        )
        # No deadline when following: the stream lasts as long as the job runs.
        chunks = self._stub.GetJobOutput(request, timeout=None if follow else self.timeout, wait_for_ready=True)
        try:
            for response in chunks:
                yield response.data
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error
        finally:
            chunks.cancel()  # the caller stopped early: end the stream on the service too

    def close(self) -> None:
        self._stop_feed()
        self._channel.close()

    def __enter__(self) -> BatchgateClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: Callable[..., Response], request: Message) -> Response:
        # Every call waits (up to the timeout) for a service that is starting or restarting: a
        # workflow engine rides through a restart instead of failing in the middle of a run.
        try:
            response = method(request, timeout=self.timeout, wait_for_ready=True)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServiceError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no answer from {self.address} within {self.timeout:g} s; is the service running there?",
                ) from error
            raise from_rpc_error(error) from error
        return response

    def _in_job_set(self, spec: pb.JobSpec) -> pb.JobSpec:
        """The spec as sent: in the client's job set unless it names one, and with a request
        key, so that a call repeated after a lost answer issues nothing twice."""
        if spec.request_key and (spec.job_set or not self.job_set):
            return spec
        scoped = pb.JobSpec()
        scoped.CopyFrom(spec)
        scoped.job_set = spec.job_set or self.job_set
        scoped.request_key = spec.request_key or uuid.uuid4().hex
        return scoped

    def _next_update(self, max_wait: float | None) -> pb.UpdatedJob | None:
        if self._feed is None:
            self._feed = UpdateFeed(self._stub, job_set=self.job_set, after_sequence=self._cursor)
        update = self._feed.next(max_wait)
        if update is not None:
            self._cursor = update.sequence
        return update

    def _stop_feed(self) -> None:
        if self._feed is not None:
            self._feed.close()
            self._feed = None

    def _raise_if_deadlocked(self) -> None:
        try:
            status = self._stub.GetSchedulingStatus(
                pb.GetSchedulingStatusRequest(job_set=self.job_set), timeout=self.timeout
            )
        except grpc.RpcError:
            # The probe is advisory: a service that is restarting must not end the caller's wait
            # with an error, since the update stream resumes on its own once it is back.
            return
        if status.deadlocked:
            raise DeadlockException(status.message or "queued jobs can never start on this backend")


def open_channel(
    address: str,
    *,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    token: str | None = None,
    options: Sequence[tuple[str, Any]] = CHANNEL_OPTIONS,
) -> grpc.Channel:
    """A channel to `address`: TLS when a CA or a client certificate is given, else plaintext;
    sending `token` as a bearer token with every call when given."""
    if bool(tls_cert) != bool(tls_key):
        field = "tls_key" if tls_cert else "tls_cert"
        raise InvalidArgument(field, "a client certificate and its key go together; give both or neither")
    if not (tls_ca or tls_cert):
        return with_token(grpc.insecure_channel(address, options=options), token)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read_file("tls_ca", tls_ca),
        private_key=_read_file("tls_key", tls_key),
        certificate_chain=_read_file("tls_cert", tls_cert),
    )
    return with_token(grpc.secure_channel(address, credentials, options=options), token)


def _read_file(field: str, path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InvalidArgument(field, f"cannot read {path}: {error.strerror}") from error


def job_spec(
    command: str,
    *,
    name: str = "",
    cores: float | None = None,
    memory: int | str | None = None,
    disk: int | str | None = None,
    accelerators: Iterable[pb.Accelerator | str] = (),
    preemptible: bool = False,
    wall_time: float | str | None = None,
    environment: Mapping[str, str] | None = None,
    working_directory: str = "",
    stdout_path: str = "",
    stderr_path: str = "",
    job_set: str = "",
    request_key: str = "",
    backend: str = "",
    **backend_options: Message | Mapping[str, Any],
) -> pb.JobSpec:
    """A JobSpec. Memory and disk are bytes or sizes like "2G"; wall_time is seconds or "1h";
    an accelerator is a pb.Accelerator or "N[:kind[:model]]"; one backend's options may be given
    by name, e.g. slurm=pb.SlurmOptions(partition="short") or slurm={"partition": "short"}.

    Raises InvalidArgument naming the field that cannot be read.
    """
    unknown = sorted(set(backend_options) - set(BACKEND_OPTION_FIELDS))
    if unknown:
        raise InvalidArgument(unknown[0], f"not a JobSpec field (backend options are {', '.join(BACKEND_OPTION_FIELDS)})")
    if len(backend_options) > 1:
        raise InvalidArgument("backend_options", f"give one backend's options, not {len(backend_options)}")
    return pb.JobSpec(
        command=command,
        name=name,
        cores=cores,
        memory=_amount("memory", memory, units.parse_bytes),
        disk=_amount("disk", disk, units.parse_bytes),
        accelerators=[_accelerator(f"accelerators[{index}]", item) for index, item in enumerate(accelerators)],
        preemptible=preemptible,
        wall_time_seconds=_amount("wall_time", wall_time, units.parse_duration),
        environment=dict(environment or {}),
        working_directory=working_directory,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        job_set=job_set,
        request_key=request_key,
        backend=backend,
        **backend_options,
    )


Amount = TypeVar("Amount", int, float)


def _amount(field: str, value: Amount | str | None, parse: Callable[[str], Amount]) -> Amount | None:
    if not isinstance(value, str):
        return value
    try:
        return parse(value)
    except argparse.ArgumentTypeError as error:
        raise InvalidArgument(field, str(error)) from None


def _accelerator(field: str, value: pb.Accelerator | str) -> pb.Accelerator:
    return value if isinstance(value, pb.Accelerator) else parse_accelerator(value, field=field)


def parse_accelerator(text: str, *, field: str = "accelerators") -> pb.Accelerator:
    """An accelerator request from "N[:kind[:model]]", e.g. "2", "1:gpu:nvidia-tesla-k80"."""
    count, _, rest = text.partition(":")
    kind, _, model = rest.partition(":")
    if not count.isdigit() or int(count) < 1:
        raise InvalidArgument(field, f"expected COUNT[:KIND[:MODEL]] with a positive count, got {text!r}")
    return pb.Accelerator(count=int(count), kind=kind or "gpu", model=model)
