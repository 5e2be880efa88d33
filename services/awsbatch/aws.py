"""The boto3 client the driver talks through, and what its errors mean.

Throttling and transient failures are retried by botocore's own retry modes (standard or
adaptive), never by a loop of ours. One exception: a SubmitJob whose request may have reached AWS
(the connection broke after sending, the answer timed out, a 5xx) is NOT retried by botocore,
since AWS Batch has no idempotency token and a retry could run the job twice; the driver then
looks for the job's tag before it submits again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import boto3
import botocore.exceptions as aws_errors
from botocore.config import Config

from batchgate import metrics


SENT_NOTHING = (aws_errors.EndpointConnectionError, aws_errors.ConnectTimeoutError, aws_errors.ProxyConnectionError)
THROTTLED_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "Throttling", "RequestLimitExceeded"})
CREDENTIAL_CODES = frozenset(
    {"UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch"}
)


class Unreachable(Exception):
    """AWS Batch could not be asked: the endpoint is down, or kept failing or throttling after
    botocore's retries. Nothing was done; try again later."""


class AnswerLost(Unreachable):
    """The request may have been carried out, but no answer came back."""


class Refused(Exception):
    """AWS Batch answered no, and asking again will not change that (no such queue, access
    denied, bad credentials...). The message says what, in AWS's words; `code` is AWS's error
    code, where it gave one (e.g. ResourceNotFoundException)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def make_client(
    *, region: str, endpoint_url: str, retry_mode: str, max_attempts: int, pool_size: int, service: str = "batch"
) -> Any:
    """A boto3 client of AWS Batch (or, with `service="logs"`, of CloudWatch Logs, where AWS
    Batch's jobs write their output) at the service's region and endpoint."""
    config = Config(
        region_name=region or None,
        retries={"mode": retry_mode, "max_attempts": max_attempts},
        max_pool_connections=pool_size,
        connect_timeout=5,
        read_timeout=30,
    )
    client = boto3.session.Session().client(service, endpoint_url=endpoint_url or None, config=config)
    if service == "batch":
        client.meta.events.register_first("needs-retry.batch.SubmitJob", _no_retry_once_sent)
    return client


def _no_retry_once_sent(response: Any = None, caught_exception: BaseException | None = None, **_: Any) -> bool | None:
    """botocore's needs-retry hook for SubmitJob: False (do not retry) where the request may
    have been carried out; None leaves the decision (throttling, refused connections) to the
    retry mode."""
    if caught_exception is not None:
        return None if isinstance(caught_exception, SENT_NOTHING) else False
    if response is not None and response[0].status_code >= 500:
        return False
    return None


def classify(error: BaseException, operation: str) -> Exception:
    """The driver's view of a failed call: Unreachable, AnswerLost or Refused."""
    if isinstance(error, aws_errors.NoCredentialsError | aws_errors.PartialCredentialsError):
        return Refused(f"no usable AWS credentials ({error}): set them as for any AWS tool (environment, ~/.aws, instance role)")
    if isinstance(error, aws_errors.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        said = error.response.get("Error", {}).get("Message", "") or str(error)
        if code in THROTTLED_CODES:
            return Unreachable(f"{operation}: AWS Batch still throttles after botocore's retries: {said}")
        if status >= 500:
            lost = operation == "submit_job"
            return (AnswerLost if lost else Unreachable)(f"{operation}: AWS Batch failed ({code or status}): {said}")
        if code in CREDENTIAL_CODES:
            return Refused(f"the AWS credentials were refused ({code}): {said}")
        if code in ("AccessDeniedException", "AccessDenied"):
            return Refused(f"access denied to {operation} ({code}): {said}")
        return Refused(f"{operation} refused ({code or status}): {said}", code)
    if isinstance(error, aws_errors.ParamValidationError):
        return Refused(f"{operation}: AWS Batch would not take this request: {error}")
    if isinstance(error, SENT_NOTHING):
        return Unreachable(f"{operation}: cannot reach AWS Batch: {error}")
    if isinstance(error, aws_errors.BotoCoreError):
        lost = operation == "submit_job"
        return (AnswerLost if lost else Unreachable)(f"{operation}: no answer from AWS Batch: {error}")
    raise error


class Calls:
    """Every AWS call the driver makes, counted by operation and measured like every scheduler
    command (batchgate_scheduler_commands_total and friends); errors come out classified."""

    def __init__(self, client: Any, backend: str) -> None:
        self.client = client
        self.backend = backend
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, operation: str, **arguments: Any) -> Any:
        with self._lock:
            self.counts[operation] += 1
        started = time.monotonic()
        result = "error"
        try:
            answer = getattr(self.client, operation)(**arguments)
            result = "ok"
            return answer
        except (aws_errors.BotoCoreError, aws_errors.ClientError) as error:
            raise classify(error, operation) from error
        finally:
            metrics.SCHEDULER_COMMANDS.labels(self.backend, operation, result).inc()
            metrics.SCHEDULER_LATENCY.labels(self.backend, operation).observe(time.monotonic() - started)

    def pages(self, operation: str, key: str, **arguments: Any) -> list[Any]:
        """Every item of a paginated answer (nextToken), one call per page."""
        items: list[Any] = []
        while True:
            answer = self(operation, **arguments)
            items.extend(answer.get(key, []))
            token = answer.get("nextToken")
            if not token:
                return items
            arguments = {**arguments, "nextToken": token}
