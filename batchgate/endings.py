"""How a job ended: what a driver saw, and the one rule that turns it into Toil's exit reason.

A driver never picks an exit reason. It reports an `Ending`: the scheduler's verdict (or, for a
process of its own, just that it exited) with the exit code and signal where it knows them; the
kit applies `outcome_of`, so every backend, today's and the next, answers the same:

    verdict        exit code / signal         exit reason   exit status
    EXITED         0, no signal               FINISHED      0
    EXITED         N != 0, or signal S        FAILED        N, or 128+S
    FAILED         N, signal S, or neither    FAILED        N, 128+S, or 255 (unknown)
    OUT_OF_MEMORY  (any)                      MEMLIMIT      as FAILED
    OUT_OF_TIME    (any)                      TIMELIMIT     as FAILED
    CANCELLED      (any)                      KILLED        as FAILED
    UNKNOWABLE     (any)                      LOST          as FAILED
    VANISHED       (any)                      MISSING       as FAILED
    NOT_STARTED    (any)                      ERROR         as FAILED

A job killed through KillJobs is never reported at all: that is the kit's bookkeeping, not a rule.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from batchgate.v1 import batchgate_pb2 as pb


class ExitReason(enum.IntEnum):
    """Toil's BatchJobExitReason, with Toil's numbers (and the proto's)."""

    FINISHED = pb.EXIT_REASON_FINISHED
    FAILED = pb.EXIT_REASON_FAILED
    LOST = pb.EXIT_REASON_LOST
    KILLED = pb.EXIT_REASON_KILLED
    ERROR = pb.EXIT_REASON_ERROR
    MEMLIMIT = pb.EXIT_REASON_MEMLIMIT
    MISSING = pb.EXIT_REASON_MISSING
    # No backend reports this: it is for a client that enforces its own maximum (Toil's leader
    # with --maxJobDuration). A limit the backend enforces is TIMELIMIT.
    MAXJOBDURATION = pb.EXIT_REASON_MAXJOBDURATION
    PARTITION = pb.EXIT_REASON_PARTITION
    TIMELIMIT = pb.EXIT_REASON_TIMELIMIT


UNKNOWN_EXIT_STATUS = 255


def signal_exit_status(signal_number: int) -> int:
    """How a death by signal N is reported: 128+N, as shells do."""
    return 128 + signal_number


class Verdict(enum.Enum):
    """What a driver saw become of a job."""

    EXITED = "exited"  # it ended by itself; its exit code (or a signal batchgate did not send) says how
    FAILED = "failed"  # the scheduler calls it failed, whatever code it gives
    OUT_OF_MEMORY = "out of memory"  # the scheduler killed it for memory
    OUT_OF_TIME = "out of time"  # the scheduler killed it for its wall time
    CANCELLED = "cancelled"  # killed by someone other than our KillJobs: an admin, preemption
    UNKNOWABLE = "unknowable"  # its fate cannot be known: node lost, a process that is not our child
    VANISHED = "vanished"  # the scheduler has no record of it any more
    NOT_STARTED = "not started"  # it could not be started at all (the message says why)


_REASONS: Mapping[Verdict, ExitReason] = {
    Verdict.FAILED: ExitReason.FAILED,
    Verdict.OUT_OF_MEMORY: ExitReason.MEMLIMIT,
    Verdict.OUT_OF_TIME: ExitReason.TIMELIMIT,
    Verdict.CANCELLED: ExitReason.KILLED,
    Verdict.UNKNOWABLE: ExitReason.LOST,
    Verdict.VANISHED: ExitReason.MISSING,
    Verdict.NOT_STARTED: ExitReason.ERROR,
}

# What a batchgate backend's reason says it saw (a gateway passes its backends' updates on).
# MAXJOBDURATION is what backends before TIMELIMIT said of their own wall-time kills.
_VERDICTS: Mapping[ExitReason, Verdict] = {
    **{reason: verdict for verdict, reason in _REASONS.items()},
    ExitReason.FINISHED: Verdict.EXITED,
    ExitReason.MAXJOBDURATION: Verdict.OUT_OF_TIME,
    ExitReason.PARTITION: Verdict.UNKNOWABLE,
}


@dataclass(frozen=True)
class Ending:
    """What a driver reports when a job has ended."""

    verdict: Verdict
    exit_code: int | None = None  # the job's own exit code, where known
    signal: int = 0  # the signal that ended it, where known (0: none)
    wall_time: float | None = None  # seconds the job ran, where known
    message: str = ""
    # The scheduler's own id, when the driver learns it only now (a gateway passes on its
    # backend's); empty keeps the backing id the job was submitted or started with.
    backing_id: str = ""


@dataclass(frozen=True)
class Outcome:
    """What the kit publishes of an ending: Toil's reason and one exit status."""

    exit_reason: ExitReason
    exit_status: int
    wall_time: float | None = None
    message: str = ""
    backing_id: str = ""


def outcome_of(ending: Ending) -> Outcome:
    """The rule (see the module's table)."""
    if ending.signal:
        status = signal_exit_status(ending.signal)
    elif ending.exit_code is not None:
        status = ending.exit_code
    else:
        status = UNKNOWN_EXIT_STATUS
    if ending.verdict is Verdict.EXITED:
        reason = ExitReason.FINISHED if status == 0 else ExitReason.FAILED
    else:
        reason = _REASONS[ending.verdict]
        if status == 0:
            status = UNKNOWN_EXIT_STATUS  # it did not succeed, whatever its code says
    return Outcome(reason, status, ending.wall_time, ending.message, ending.backing_id)


def ending_of(reason: int, exit_status: int, wall_time: float | None, message: str, backing_id: str) -> Ending:
    """An update from another batchgate service, as an ending that the rule turns back into the
    same reason and status (how a gateway passes its backends' updates on)."""
    try:
        verdict = _VERDICTS[ExitReason(reason)]
    except ValueError:  # a backend breaking the contract: the job still ends, saying why
        return Ending(Verdict.NOT_STARTED, wall_time=wall_time, message=f"backend sent exit reason {reason}: {message}", backing_id=backing_id)
    return Ending(verdict, exit_code=exit_status, wall_time=wall_time, message=message, backing_id=backing_id)
