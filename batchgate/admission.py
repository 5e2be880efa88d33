"""What every BatchSystem call passes before a handler sees it, in one place:

1. authentication: the bearer token, when the service has a tokens file (batchgate/auth.py);
2. the tenant's request rate (RESOURCE_EXHAUSTED with a google.rpc.RetryInfo);
3. decoding: handlers get the request's bytes and decode them here, so bytes that are no such
   message get INVALID_ARGUMENT naming the request type (grpc's own deserializer would answer
   INTERNAL);
4. authorization: every job set the request names (its `job_set`, its specs' job sets, and the
   job sets of the job ids it names) must be one the tenant may use (for IssueJob(s), CheckJob,
   KillJobs and SetEnv) or see (for the rest). A refusal names the request's field, and says
   nothing of the job set or jobs it does not grant;
5. the audit log: every KillJobs and SetEnv, with the tenant that asked and how it ended
   (never a token, never a variable's value).

The rule reads request fields by name, so a method added later is covered as its fields say.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor, message

from batchgate.auth import ANYONE, Tenant, Tokens
from batchgate.errors import BatchgateError, InvalidArgument, PermissionDenied, RateLimited, abort_async

audit_log = logging.getLogger("batchgate.audit")

# Calls that change something in the job sets they name; the others only read them.
WRITES = frozenset({"IssueJob", "IssueJobs", "CheckJob", "KillJobs", "SetEnv"})
AUDITED = frozenset({"KillJobs", "SetEnv"})
AUDITED_IDS = 100  # job ids written out per KillJobs line; the rest are counted

UnaryBehaviour = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamBehaviour = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


class RateLimit:
    """A token bucket per tenant: `per_second` calls on average, bursts of up to `burst`.
    Used from the event loop only."""

    def __init__(self, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (calls left, when counted)

    def take(self, tenant: str) -> None:
        """Count one call of `tenant`; raises RateLimited if it has none left."""
        now = self._clock()
        left, counted = self._buckets.get(tenant, (float(self.burst), now))
        left = min(float(self.burst), left + (now - counted) * self.per_second)
        if left < 1.0:
            self._buckets[tenant] = (left, now)
            wait = (1.0 - left) / self.per_second
            raise RateLimited(
                "--rate-limit",
                int(self.per_second),
                f"tenant {tenant!r} sends more than {self.per_second:g} calls a second (--rate-limit); "
                f"retry in {wait:.2f} s",
                retry_after=wait,
            )
        self._buckets[tenant] = (left - 1.0, now)


@dataclass(frozen=True)
class _Claim:
    field: str  # where the request names it, e.g. specs[2].job_set
    job_set: str
    write: bool


class Gate:
    def __init__(
        self,
        tokens: Tokens,
        *,
        job_sets_of: Callable[[Sequence[int]], dict[int, str]],
        calls: Executor,
        observe: Callable[[str, str, float], None],
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.tokens = tokens
        self._job_sets_of = job_sets_of  # blocking (may read the store): run in `calls`
        self._calls = calls
        self._observe = observe  # (method, code name, seconds): the call counted in metrics
        self._rate_limit = rate_limit

    def unary(self, method: descriptor.MethodDescriptor, request_class: type[message.Message], behaviour: UnaryBehaviour) -> UnaryBehaviour:
        name = method.name

        async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            admitted = await self._admit(name, request_class, raw, context)
            if name not in AUDITED:
                return await behaviour(admitted[1], context)
            tenant, request = admitted
            outcome = "failed"
            try:
                response = await behaviour(request, context)
                outcome = "OK"
                return response
            finally:
                _audit(name, tenant, request, context, _outcome_of(context, outcome))

        return handle

    def stream(self, method: descriptor.MethodDescriptor, request_class: type[message.Message], behaviour: StreamBehaviour) -> StreamBehaviour:
        name = method.name

        async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            _, request = await self._admit(name, request_class, raw, context)
            async for response in behaviour(request, context):
                yield response

        return handle

    async def _admit(
        self, name: str, request_class: type[message.Message], raw: bytes, context: grpc.aio.ServicerContext
    ) -> tuple[Tenant, Any]:
        """The caller's tenant and its decoded request; ends the call with the status of the
        first check it fails."""
        started = time.perf_counter()
        tenant: Tenant | None = None
        request: Any = None
        try:
            # Who asks comes first: a caller without a valid token learns nothing, not even
            # whether its bytes would decode.
            tenant = self.tokens.authenticate(context.invocation_metadata())
            if self._rate_limit is not None:
                self._rate_limit.take(tenant.name)
            request = decode(request_class, raw)
            if tenant is not ANYONE:
                await self._authorize(tenant, name, request)
        except BatchgateError as refusal:
            self._observe(name, refusal.code.name, time.perf_counter() - started)
            if name in AUDITED:
                _audit(name, tenant, request, context, f"refused {refusal.code.name}")
            await abort_async(context, refusal)
        assert tenant is not None
        return tenant, request

    async def _authorize(self, tenant: Tenant, name: str, request: Any) -> None:
        write = name in WRITES
        for claim in _job_set_claims(name, request, write):
            _check(tenant, name, claim)
        job_ids = _job_ids(request)
        if not job_ids:
            return
        known = await asyncio.get_running_loop().run_in_executor(self._calls, self._job_sets_of, [job_id for _, job_id in job_ids])
        for field, job_id in job_ids:
            job_set = known.get(job_id)
            if job_set is None:
                continue  # no such job: nothing to guard (KillJobs of an unknown id is not an error)
            allowed = tenant.may_use(job_set) if write else tenant.may_see(job_set)
            if not allowed:
                raise PermissionDenied(field, f"job {job_id} is not in a job set tenant {tenant.name!r} may use")


def decode(request_class: type[message.Message], raw: bytes) -> Any:
    try:
        return request_class.FromString(raw)
    except message.DecodeError as error:
        type_name = request_class.DESCRIPTOR.name
        raise InvalidArgument(type_name, f"the request is not a valid {request_class.DESCRIPTOR.full_name}: {error}") from None


def _job_set_claims(name: str, request: Any, write: bool) -> list[_Claim]:
    fields = request.DESCRIPTOR.fields_by_name
    claims: list[_Claim] = []
    if "spec" in fields:
        claims.append(_Claim("spec.job_set", request.spec.job_set, True))
    if "specs" in fields:
        claims.extend(_Claim(f"specs[{index}].job_set", spec.job_set, True) for index, spec in enumerate(request.specs))
    if "job_set" in fields:
        claims.append(_Claim("job_set", request.job_set, write))
    return claims


def _check(tenant: Tenant, name: str, claim: _Claim) -> None:
    if name == "SetEnv" and claim.field == "job_set":
        if not tenant.may_set_env(claim.job_set):
            what = "every job set at once (env-all)" if not claim.job_set else f"job set {claim.job_set!r}"
            raise PermissionDenied(claim.field, f"tenant {tenant.name!r} may not set variables for {what}")
        return
    allowed = tenant.may_use(claim.job_set) if claim.write else tenant.may_see(claim.job_set)
    if allowed:
        return
    if not claim.job_set:
        raise PermissionDenied(
            claim.field,
            f"tenant {tenant.name!r} may not use every job set; name one of its own ({tenant.describe_grants()})",
        )
    raise PermissionDenied(
        claim.field, f"tenant {tenant.name!r} may not use job set {claim.job_set!r} (it may use: {tenant.describe_grants()})"
    )


def _job_ids(request: Any) -> list[tuple[str, int]]:
    fields = request.DESCRIPTOR.fields_by_name
    found: list[tuple[str, int]] = []
    if "job_ids" in fields:
        found.extend((f"job_ids[{index}]", int(job_id)) for index, job_id in enumerate(request.job_ids))
    if "job_id" in fields:
        found.append(("job_id", int(request.job_id)))
    return found


def _outcome_of(context: grpc.aio.ServicerContext, fallback: str) -> str:
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - older grpc: no code() on the context
        return fallback
    return fallback if code is None else getattr(code, "name", str(code))


def _audit(name: str, tenant: Tenant | None, request: Any, context: grpc.aio.ServicerContext, outcome: str) -> None:
    """One line per KillJobs and SetEnv: who, from where, what, and how it ended. A SetEnv's
    value is never logged (it may be a secret), only whether it set or unset the variable."""
    who = tenant.name if tenant is not None else "(unauthenticated)"
    if request is None:
        what = "(request not read)"
    elif name == "KillJobs":
        shown = ",".join(str(job_id) for job_id in request.job_ids[:AUDITED_IDS]) or "(none)"
        more = len(request.job_ids) - AUDITED_IDS
        what = f"job_ids={shown}" + (f" and {more} more" if more > 0 else "")
    else:
        action = "set" if request.HasField("value") else "unset"
        what = f"{action} name={request.name!r} job_set={request.job_set!r}"
    audit_log.info("%s tenant=%s peer=%s %s outcome=%s", name, who, context.peer(), what, outcome)
