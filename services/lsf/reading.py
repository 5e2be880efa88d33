"""What LSF's commands print, read: the job states, bjobs' outputs (-json, -o columns, the
classic -w table), the job blocks of bjobs -l, bhist -l and bacct -l, bqueues -l's run limits and
lshosts' sizes. Formats as IBM documents them for LSF 10.1 (see tests/lsf/fake for the pages).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime

from batchgate.driver import Verdict
from batchgate.hpc import CommandFailed, NativeStatus, Phase, StateTable

# A job that ended EXIT is known by its termination reason (TERM_*) where batchgate has a meaning
# for it, else as EXIT: IBM's "Termination reasons displayed by bacct, bhist, and bjobs".
STATES: StateTable = {
    "PEND": Phase.PENDING,
    "PSUSP": Phase.PENDING,  # suspended (held) before it ever ran
    "WAIT": Phase.PENDING,  # a chunk job's member waiting its turn
    "PROV": Phase.PENDING,  # its host is being woken up
    "RUN": Phase.RUNNING,
    "USUSP": Phase.RUNNING,  # suspended while running: it has started, and may resume
    "SSUSP": Phase.RUNNING,
    "UNKWN": Phase.RUNNING,  # mbatchd lost contact with its host: it may still run
    "DONE": Verdict.EXITED,
    "EXIT": Verdict.FAILED,
    "TERM_MEMLIMIT": Verdict.OUT_OF_MEMORY,
    "TERM_SWAP": Verdict.OUT_OF_MEMORY,
    "TERM_RUNLIMIT": Verdict.OUT_OF_TIME,
    "TERM_DEADLINE": Verdict.OUT_OF_TIME,
    # Killed by us never gets here: a killed job is not watched any more.
    **dict.fromkeys(("TERM_OWNER", "TERM_ADMIN", "TERM_FORCE_OWNER", "TERM_FORCE_ADMIN", "TERM_PREEMPT"), Verdict.CANCELLED),
    **dict.fromkeys(("TERM_WINDOW", "TERM_LOAD", "TERM_BUCKET_KILL", "TERM_RC", "TERM_ORPHAN_SYSTEM"), Verdict.CANCELLED),
    **dict.fromkeys(("TERM_ZOMBIE", "TERM_REMOVE_HUNG_JOB"), Verdict.UNKNOWABLE),
    **dict.fromkeys(("TERM_CWD_NOTEXIST", "TERM_PRE_EXEC_FAIL", "TERM_DATA"), Verdict.NOT_STARTED),
}

QUEUE_FIELDS = "jobid stat exit_code exit_reason pend_reason run_time job_name"  # the name last: it may hold the delimiter
DELIMITER = "|"
ENDED = ("DONE", "EXIT")
EXITED = re.compile(r"Exited (with exit code|by signal) (\d+)")
SUBMIT_TIME = re.compile(r"\s+\w{3} +\d+ +\d\d:\d\d(?: +\d{4})?\s*$")  # the end of a bjobs -w line
STAMP = r"^\w{3} (\w{3} +\d+ \d\d:\d\d:\d\d)(?: \d{4})?: "  # "Mon Oct 23 11:03:10: " in bjobs -l


def seconds(text: str) -> float:
    """bjobs' run_time: "35 second(s)", or HH:MM:SS with -hms."""
    if ":" in text:
        return float(sum(int(part) * 60**power for power, part in enumerate(reversed(text.split(":")))))
    number = text.split(" ")[0]
    return float(number) if number.replace(".", "", 1).isdigit() else 0.0


def size_bytes(text: str) -> int:
    """lshosts' maxmem: 15.6G, 512M, 1024K (a bare number is in MB); 0 for "-"."""
    match = re.fullmatch(r"([\d.]+)([KMGTP]?)B?", text.strip())
    return int(float(match.group(1)) * 1024 ** ("KMGTP".index(match.group(2) or "M") + 1)) if match else 0


def ended_jobs(text: str) -> Iterator[NativeStatus]:
    """The ended jobs in `bjobs -l`, `bhist -l` or `bacct -l`: one block a job, lines folded at 80
    columns under a 21-space indent; "Done successfully" or "Completed <done>", "Exited with exit
    code N" or "Exited by signal N", "Completed <exit>; TERM_...". bacct gives no exit code."""
    for block in re.split(r"\n-{20,}\n", text.replace("\n" + " " * 21, "")):
        job_id = re.match(r"Job <(\d+)>", block.strip())
        exited = EXITED.search(block)
        failed = bool(exited) or "Completed <exit>" in block
        if not job_id or not (failed or "Done successfully" in block or "Completed <done>" in block):
            continue  # not ended: bjobs will know it again, or it goes missing
        keyword = re.search(r"Completed <exit>; (TERM_\w+)", block)
        yield NativeStatus(
            backing_id=job_id.group(1),
            state="DONE" if not failed else keyword.group(1) if keyword and keyword.group(1) in STATES else "EXIT",
            reason=keyword.group(1) if keyword else "",
            exit_code=int(exited.group(2)) if exited and exited.group(1) == "with exit code" else 0,
            signal=int(exited.group(2)) if exited and exited.group(1) == "by signal" else 0,
            run_time=run_time(block),
        )


def run_time(block: str) -> float | None:
    """Seconds a job ran: bhist's summary (RUN), bacct's TURNAROUND less WAIT, or bjobs -l's
    stamps from "Started" to its end (they name no year: a year's turn is one day off at most)."""
    if summary := re.search(r"PEND +PSUSP +RUN.*\n\s*(\d+)\s+(\d+)\s+(\d+)", block):
        return float(summary.group(3))
    if accounting := re.search(r"CPU_T +WAIT +TURNAROUND.*\n\s*[\d.]+\s+(\d+)\s+(\d+)", block):
        return float(int(accounting.group(2)) - int(accounting.group(1)))
    started = re.search(STAMP + r"(?:\[\d+\] )?Started", block, flags=re.MULTILINE)
    ended = re.search(STAMP + r"(?:Done successfully|Exited|Completed)", block, flags=re.MULTILINE)
    if not (started and ended):
        return None
    start, end = (datetime.strptime(f"2000 {m.group(1)}", "%Y %b %d %H:%M:%S") for m in (started, ended))
    return (end - start).total_seconds() % (366 * 86400)


def run_limit(bqueues: str) -> float | None:
    """A queue's hard RUNLIMIT in seconds from `bqueues -l`: its " RUNLIMIT" heading over "60.0 min"
    (under MAXIMUM LIMITS where a default is shown too; limits may stand side by side)."""
    if "MAXIMUM LIMITS:" in bqueues:
        bqueues = bqueues.split("MAXIMUM LIMITS:", 1)[1]
    elif "DEFAULT LIMITS:" in bqueues:
        bqueues = bqueues.split("DEFAULT LIMITS:", 1)[0]
    lines = bqueues.splitlines()
    for heading, values in zip(lines, lines[1:]):
        names = heading.split()
        if "RUNLIMIT" in names:
            amounts = re.findall(r"([\d.]+) min(?: of \S+)?", values)
            if len(amounts) == len(names):
                return float(amounts[names.index("RUNLIMIT")]) * 60
    return None


def json_records(stdout: str) -> list[dict[str, str]]:
    """bjobs -json: {"COMMAND": "bjobs", "JOBS": n, "RECORDS": [{"JOBID": ..., "STAT": ...}]}."""
    try:
        return json.loads(stdout[stdout.index("{") : stdout.rindex("}") + 1])["RECORDS"]
    except (ValueError, KeyError) as error:
        raise CommandFailed(["bjobs"], 0, f"bjobs answered what is not its JSON ({error}): {stdout[:200]!r}", transient=True) from None


def column_records(stdout: str) -> list[dict[str, str]]:
    """bjobs -noheader -o "... delimiter='|'": "-" stands for an empty column."""
    names = QUEUE_FIELDS.upper().split()
    rows = (line.split(DELIMITER, len(names) - 1) for line in stdout.splitlines())
    return [{name: "" if value == "-" else value for name, value in zip(names, row)} for row in rows if len(row) == len(names)]


def record_status(record: dict[str, str], now: float) -> NativeStatus:
    state, exit_reason = record["STAT"], record.get("EXIT_REASON", "")
    keyword, _, words = exit_reason.partition(":")  # "TERM_RUNLIMIT: job killed after ..."
    if state == "EXIT" and keyword in STATES:
        state, exit_reason = keyword, words.strip()
    run_time = seconds(record.get("RUN_TIME", ""))
    return NativeStatus(
        backing_id=record["JOBID"],
        state=state,
        reason=record.get("PEND_REASON", "") or exit_reason,
        exit_code=int(record.get("EXIT_CODE") or 0),
        started_at=now - run_time if STATES.get(state) is Phase.RUNNING else None,
        run_time=run_time,
        tag=record.get("JOB_NAME", ""),
    )


def classic_status(line: str) -> NativeStatus | None:
    """A line of `bjobs -w`: JOBID USER STAT QUEUE FROM_HOST [EXEC_HOST] JOB_NAME SUBMIT_TIME
    (an empty EXEC_HOST is only spaces; SUBMIT_TIME is "Oct 22 09:22", with the year after it
    where LSB_DISPLAY_YEAR=Y); our job names hold no space. Ended jobs carry no exit code here:
    `bjobs -l` tells it (see LsfDriver._with_endings)."""
    words = SUBMIT_TIME.sub("", line).split()
    if len(words) < 6 or not words[0].isdigit():
        return None  # the header, or a job's further hosts on a line of their own
    return NativeStatus(backing_id=words[0], state=words[2], tag=words[-1])
