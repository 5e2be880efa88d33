#!/usr/bin/python3 -S
"""A fake IBM Spectrum LSF for batchgate's tests: bsub, bjobs, bkill, bhist, bacct, bhosts, lshosts,
bqueues, bparams, lsid and lsadmin (symbolic links to this file), which keep their state in the directory named by
$LSF_FAKE_STATE and run every job as a real local process under a small supervisor process that
enforces the job's run limit (-W) and memory limit (-M), as LSF's sbatchd does.

Written from IBM's documentation of LSF 10.1 (no LSF can be installed here), and printing the
formats those pages give:
- bsub: https://www.ibm.com/docs/en/SSWRJV_10.1.0/lsf_command_ref/bsub.man_top.1.html and its
  option pages (-M: bsub.__m.1.html, -q: bsub.q.1.html, the command and #BSUB lines read from
  standard input: bsub.zz1argument.command.1.html). Success is "Job <N> is submitted to [default]
  queue <q>." on standard output.
- bjobs -o/-json: https://www.ibm.com/docs/en/SSWRJV_10.1.0/lsf_command_ref/bjobs.o.1.html and
  bjobs.json.1.html: {"COMMAND": "bjobs", "JOBS": n, "RECORDS": [{"JOBID": ..., "STAT": ...}]},
  field names upper-cased; without -json, columns split by `delimiter='c'` under a header.
- termination reasons (bjobs EXIT_REASON, bhist -l): lsf_admin/termination_reasons_lsf.html;
  job states PEND PSUSP RUN USUSP SSUSP DONE EXIT.
- LSF_UNIT_FOR_LIMITS (unit of -M and rusage[mem], KB by default for -M and MB for rusage):
  lsf_config_ref/lsf.conf.lsf_unit_for_limits.5.html, read from $LSF_ENVDIR/lsf.conf and printed by
  `lsadmin showconf lim`; the LSF-enforced per-job memory limit (LSB_JOB_MEMLIMIT=y): a job whose
  processes together pass -M is killed and ends EXIT with TERM_MEMLIMIT.
- lsb.params (https://www.ibm.com/docs/SSWRJV_10.1.0/lsf_config_ref/lsb.params.5.html):
  CLEAN_PERIOD, how long finished jobs stay in `bjobs -a` (then only bhist knows them);
  RESOURCE_RESERVE_PER_TASK, memory reserved per slot rather than per host.
- LSB_JOB_MEMLIMIT (lsf_config_ref/lsf.conf.lsb_job_memlimit.5.html): LSF kills a job over its
  limit with SIGINT, SIGTERM, then SIGKILL (the fake: SIGTERM, then SIGKILL after kill_grace).
- bkill: "Job <N> is being terminated"; "Job <N>: Job has already finished"; "Job <N> is not
  found" (on standard error, as LSF prints it); a pending job killed ends EXIT at once.
- classic bjobs (lsf_command_ref/bjobs.1.html; the table as printed in
  lsf_config_ref/lsf.conf.lsb_bjobs_consistent_exit_code.5.html): "JOBID USER STAT QUEUE FROM_HOST
  EXEC_HOST JOB_NAME SUBMIT_TIME", one line a job with -w (wide: nothing truncated); bjobs -l, one
  block a job ("Job <N>, Job Name <...>, User <...>, Project <...>, Status <EXIT>, ..."), its events
  ("Started 1 Task(s) on Host(s) <h>", "Exited with exit code N. The CPU time used is ...", "Done
  successfully.", "Completed <exit>; TERM_...: ...") and, for a pending job, "PENDING REASONS:";
  lines folded at 80 columns as bhist folds them. The termination reasons and their words:
  lsf_admin/termination_reasons_lsf.html ("bacct -l, bhist -l, and bjobs -l display a termination
  reason").
- bacct -l (lsf_command_ref/bacct.1.html): finished jobs from lsb.acct, each "Job <N>, ... Status
  <EXIT>, ...", its events ending "Completed <done>." or "Completed <exit>[; TERM_...: ...]." and
  "Accounting information about this job:" with CPU_T WAIT TURNAROUND STATUS HOG_FACTOR MEM SWAP;
  then a SUMMARY. bhist reads the current lsb.events only (bhist.1.html), and event files are
  switched and pruned, while lsb.acct keeps finished jobs: a test can prune a job from either
  (its state's "events_pruned" / "acct_pruned").
- lsid (lsf_command_ref/lsid.1.html): the product and version line, the cluster and master names.
  `bjobs -json` came with LSF 10.1.0.2 (lsf_release_notes/lsf_relnotes_cmdout10.1.0.2.html, which
  also calls `bjobs -o` older); config.json's "version" makes the fake such an older LSF, whose
  bjobs refuses -json, and before 9.1.1 also -o and -noheader (that version is our assumption; the
  tests rely only on an LSF 8 lacking them), as unknown options (IBM does not document those
  words: the fake prints its usage, as for any bad option).
- queue run limits (lsb.queues RUNLIMIT, lsf_config_ref/lsb.queues.runlimit.5.html, and
  lsf_admin/limits_specify_resource_usage.html): a queue's RUNLIMIT kills a job without -W after
  that many minutes (TERM_RUNLIMIT); a job whose -W exceeds it "is not allowed to run" (the fake
  refuses it at bsub). `bqueues -l` (lsf_command_ref/bqueues.1.html) shows it under the queue's
  limits as " RUNLIMIT" over " 60.0 min"; `bparams` (bparams.1.html) names the default queue.

Where it differs from LSF, on purpose, for fast tests: a client command meeting an injected
outage prints LSF's words and exits 255 at once (as with LSB_NTRIES=1) rather than retrying; the
length of a -W minute comes from the fake's config.json (`minute_seconds`); a job's report is not
appended to its -o file. A client command answers at once unless config.json models mbatchd's
round trip (`answer_delay`, seconds; the benchmark uses it).

config.json (written by tests/lsf/lsf_cluster.py): hosts, queues with their run limits in minutes,
the default queue, the LSF version, CLEAN_PERIOD, the length of a minute, the answer delay.

Faults are injected through $LSF_FAKE_STATE/faults.json: {"bsub": [{"fault": "down", "times": 2}],
"bjobs": [{"fault": "not-responding", "until": <epoch>}]}. Faults: "down" ("LSF is down. Please
wait..."), "not-responding" ("batch system daemon not responding"), and, for bsub, "lost" (the
job is submitted, but the client sees "LSF is down" instead of its id).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

STATE_ENV = "LSF_FAKE_STATE"
LSF_DOWN = "LSF is down. Please wait..."
NOT_RESPONDING = "batch system daemon not responding"
UNITS = {"KB": 1, "K": 1, "MB": 1024, "M": 1024, "GB": 1024**2, "G": 1024**2, "TB": 1024**3, "T": 1024**3}  # in KB
TERMINATION = {
    "TERM_OWNER": "job killed by owner",
    "TERM_FORCE_OWNER": "job killed by owner without time for cleanup",
    "TERM_RUNLIMIT": "job killed after reaching LSF run time limit",
    "TERM_MEMLIMIT": "job killed after reaching LSF memory usage limit",
    "TERM_CWD_NOTEXIST": "current working directory is not accessible or does not exist on the execution host",
}
FINISHED = ("DONE", "EXIT")
POLL = 0.05
MEMORY_CHECK = 0.5  # seconds between samples of a job's memory


class Usage(Exception):
    """A command-line error: printed on standard error, exit 255."""


# ---- state ------------------------------------------------------------------------------------


def state_dir() -> Path:
    path = os.environ.get(STATE_ENV)
    if not path:
        raise Usage(f"${STATE_ENV} is not set: the fake LSF does not know where its cluster is")
    return Path(path)


def config() -> dict:
    return json.loads((state_dir() / "config.json").read_text())


@contextlib.contextmanager
def locked() -> Iterator[None]:
    with open(state_dir() / "lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_json(path: Path, value: object) -> None:
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value))
    os.replace(temporary, path)


def job_dir(job_id: int) -> Path:
    return state_dir() / "jobs" / str(job_id)


def load(job_id: int) -> tuple[dict, dict] | None:
    try:
        return (json.loads((job_dir(job_id) / "job.json").read_text()), json.loads((job_dir(job_id) / "state.json").read_text()))
    except FileNotFoundError:
        return None


def all_job_ids() -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir(state_dir() / "jobs") if name.isdigit())
    except FileNotFoundError:
        return []


def save_state(job_id: int, state: dict) -> None:
    write_json(job_dir(job_id) / "state.json", state)


def visible(state: dict, clean_period: float, now: float) -> bool:
    """Whether bjobs still shows the job: finished jobs stay for CLEAN_PERIOD (lsb.params)."""
    return state["stat"] not in FINISHED or now - (state.get("finish_time") or now) <= clean_period


def inject_fault(command: str) -> str:
    """The fault to act out for this invocation of `command`, if any (consumed as it is used)."""
    path = state_dir() / "faults.json"
    if not path.exists():
        return ""
    with locked():
        faults = json.loads(path.read_text() or "{}")
        queue = faults.get(command, [])
        fault = ""
        while queue:
            entry = queue[0]
            if "until" in entry:
                if time.time() < entry["until"]:
                    fault = entry["fault"]
                    break
                queue.pop(0)
                continue
            fault = entry["fault"]
            entry["times"] = entry.get("times", 1) - 1
            if entry["times"] <= 0:
                queue.pop(0)
            break
        write_json(path, faults)
    return fault


def outage(fault: str) -> None:
    if fault == "not-responding":
        raise Usage(NOT_RESPONDING)
    raise Usage(LSF_DOWN)


# ---- units ------------------------------------------------------------------------------------


def conf_value(name: str) -> str:
    path = Path(os.environ.get("LSF_ENVDIR", "/etc")) / "lsf.conf"
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == name and not line.lstrip().startswith("#"):
                return value.strip().strip('"')
    return ""


def to_kb(text: str, default_unit: str) -> int:
    """KB in a limit like "100" (in LSF_UNIT_FOR_LIMITS, or `default_unit`) or "100MB"."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]B?)?", text.strip().upper())
    if not match:
        raise Usage(f"{text}: Bad memory limit specification. Job not submitted.")
    unit = match.group(2) or conf_value("LSF_UNIT_FOR_LIMITS").upper() or default_unit
    return int(float(match.group(1)) * UNITS[unit])


def shown(kb: float) -> str:
    """A size as lshosts prints it: 15.6G, 512M."""
    for suffix, size in (("T", 1024**3), ("G", 1024**2), ("M", 1024)):
        if kb >= size:
            return f"{kb / size:.1f}{suffix}"
    return f"{kb:.0f}K"


# ---- bsub -------------------------------------------------------------------------------------

WITH_VALUE = {"-n", "-M", "-R", "-W", "-J", "-Jd", "-o", "-oo", "-e", "-eo", "-cwd", "-q", "-P", "-gpu", "-m", "-G", "-g", "-app", "-sla", "-b", "-w", "-u"}
FLAGS = {"-H", "-x", "-B", "-N", "-r", "-rn", "-K"}


def parse_options(words: list[str], options: dict[str, object]) -> list[str]:
    """bsub's options into `options` (-R may repeat); returns what follows them (the command)."""
    index = 0
    while index < len(words) and words[index].startswith("-"):
        word = words[index]
        if word in FLAGS:
            options[word] = True
            index += 1
        elif word in WITH_VALUE:
            if index + 1 >= len(words):
                raise Usage(f"{word}: option requires an argument. Job not submitted.")
            value = words[index + 1]
            if word == "-R":
                options.setdefault("-R", []).append(value)  # type: ignore[union-attr]
            else:
                options[word] = value
            index += 2
        else:
            raise Usage(f"{word}: Illegal option. Job not submitted.")
    return words[index:]


def embedded_options(script: str) -> dict[str, object]:
    """Options on "#BSUB" lines of the script: bsub reads them anywhere in standard input."""
    options: dict[str, object] = {}
    for line in script.splitlines():
        if line.startswith("#BSUB"):
            import shlex

            parse_options(shlex.split(line[len("#BSUB") :]), options)
    return options


def rusage_memory_kb(requirements: list[str]) -> int:
    reserved = 0
    for requirement in requirements:
        if not re.fullmatch(r"\s*((select|rusage|span|order|same)\[[^\[\]]*\]\s*)+", requirement):
            raise Usage("Bad resource requirement syntax. Job not submitted.")
        for amount in re.findall(r"rusage\[[^\]]*\bmem=([0-9.]+[KMGT]?B?)", requirement, flags=re.IGNORECASE):
            reserved = max(reserved, to_kb(amount, "MB"))
    return reserved


def bsub(args: list[str]) -> None:
    fault = inject_fault("bsub")
    if fault in ("down", "not-responding"):
        outage(fault)
    options: dict[str, object] = {}
    command = parse_options(args, options)
    script = " ".join(command) + "\n" if command else sys.stdin.read()
    options = {**embedded_options(script), **options}  # the command line wins
    settings = config()
    queue = str(options.get("-q", settings["default_queue"]))
    if queue not in settings["queues"]:
        raise Usage(f"{queue}: No such queue. Job not submitted.")
    gpus = 0
    if "-gpu" in options:
        match = re.match(r"num=(\d+)", str(options["-gpu"]))
        if not match:
            raise Usage(f"{options['-gpu']}: Bad GPU requirement syntax. Job not submitted.")
        gpus = int(match.group(1))
    run_limit = str(options.get("-W", ""))
    if run_limit and not re.fullmatch(r"(\d+:)?\d+", run_limit):
        raise Usage(f"{run_limit}: Bad RUNLIMIT specification. Job not submitted.")
    minutes = sum(int(part) * 60**power for power, part in enumerate(reversed(run_limit.split(":")))) if run_limit else 0
    queue_limit = settings["queues"][queue]  # the queue's RUNLIMIT in minutes, or None
    if queue_limit and minutes > queue_limit:  # "not allowed to run": refused here
        raise Usage(f"{run_limit}: Run limit is greater than the queue's RUNLIMIT ({queue_limit} min). Job not submitted.")
    minutes = minutes or queue_limit or 0  # a job without -W is killed at its queue's RUNLIMIT
    lines = script.strip().splitlines()
    job = {
        "name": str(options.get("-J", lines[-1][:60] if lines else "")),  # LSF names a job after its command
        "description": str(options.get("-Jd", "")),
        "queue": queue,
        "project": str(options.get("-P", "default")),
        "user": os.environ.get("USER") or os.environ.get("LOGNAME") or "root",
        "slots": int(str(options.get("-n", "1"))),
        "memory_limit_kb": to_kb(str(options["-M"]), "KB") if "-M" in options else 0,
        "reserved_kb": rusage_memory_kb(list(options.get("-R", []))),  # type: ignore[arg-type]
        "run_limit_minutes": minutes,
        "gpus": gpus,
        "cwd": str(options.get("-cwd", os.getcwd())),
        "stdout": str(options.get("-oo", options.get("-o", ""))),
        "stdout_append": "-oo" not in options,
        "stderr": str(options.get("-eo", options.get("-e", ""))),
        "stderr_append": "-eo" not in options,
        "environment": dict(os.environ),  # LSF copies the submission environment to the job
        "submit_time": time.time(),
        "submit_cwd": os.getcwd(),
    }
    held = bool(options.get("-H"))
    (state_dir() / "jobs").mkdir(exist_ok=True)
    with locked():
        counter = state_dir() / "next_id"
        job_id = int(counter.read_text()) if counter.exists() else 1
        counter.write_text(str(job_id + 1))
        job_dir(job_id).mkdir()
        (job_dir(job_id) / "script").write_text(script)
        write_json(job_dir(job_id) / "job.json", job)
        reason = "The job was suspended by user while pending" if held else "New job is waiting for scheduling"
        save_state(job_id, {"stat": "PSUSP" if held else "PEND", "pend_reason": reason})
    if not held:  # a held job waits for bresume, which this fake does not have
        import subprocess

        supervisor = [sys.executable, "-S", os.path.realpath(__file__), "supervise", str(job_id)]
        subprocess.Popen(supervisor, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    if fault == "lost":
        raise Usage(LSF_DOWN)
    default = "" if "-q" in options else "default "
    print(f"Job <{job_id}> is submitted to {default}queue <{queue}>.")


# ---- the per-job supervisor (sbatchd's part) --------------------------------------------------


def session_processes(session: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == session:  # field 6 of stat: the session id
                    found.append(int(name))
    return found


def resident_kb(pids: list[int]) -> int:
    total = 0
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page_kb
    return total


def signal_session(session: int, number: int) -> None:
    """Send `number` to every process of the job's session."""
    for pid in session_processes(session):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, number)


def place(job: dict, job_id: int, settings: dict) -> tuple[str, list[int]] | str:
    """A host (and GPU indices) the job fits on now, or why it waits."""
    used: dict[str, list[int]] = {}  # host -> [slots, KB, gpus...]
    taken_gpus: dict[str, set[int]] = {}
    for other in all_job_ids():
        if other == job_id:
            continue
        loaded = load(other)
        if loaded and loaded[1]["stat"] == "RUN":
            other_job, other_state = loaded
            usage = used.setdefault(other_state["host"], [0, 0])
            usage[0] += other_job["slots"]
            usage[1] += other_job["reserved_kb"]
            taken_gpus.setdefault(other_state["host"], set()).update(other_state.get("gpu_ids", []))
    reasons = []
    for host in settings["hosts"]:
        slots, reserved = used.get(host["name"], [0, 0])
        free_gpus = [index for index in range(host.get("gpus", 0)) if index not in taken_gpus.get(host["name"], set())]
        if job["slots"] > host["cores"] - slots:
            reasons.append("Not enough job slot(s)")
        elif job["reserved_kb"] > host["memory_mb"] * 1024 - reserved:
            reasons.append("Job requirements for reserving resource (mem) not satisfied")
        elif job["gpus"] > len(free_gpus):
            reasons.append("Job requirements for reserving resource (ngpus_physical) not satisfied")
        else:
            return host["name"], free_gpus[: job["gpus"]]
    return reasons[0] if reasons else "No enough hosts"


def kill_request(job_id: int) -> str:
    with contextlib.suppress(FileNotFoundError):
        return (job_dir(job_id) / "kill").read_text().strip()
    return ""


def supervise(args: list[str]) -> None:
    import signal
    import subprocess

    job_id = int(args[0])
    settings = config()
    with locked():
        job, state = load(job_id)  # type: ignore[misc]
        state["supervisor"] = os.getpid()  # for the tests' clean-up
        save_state(job_id, state)
    while True:  # wait for room
        with locked():
            job, state = load(job_id)  # type: ignore[misc]
            reason = kill_request(job_id)
            if reason:
                finish(job_id, state, exit_code=None, reason=reason)
                return
            placed = place(job, job_id, settings)
            if isinstance(placed, tuple):
                host, gpu_ids = placed
                state.update(stat="RUN", pend_reason="", host=host, gpu_ids=gpu_ids, start_time=time.time())
                save_state(job_id, state)
                break
            if state.get("pend_reason") != placed:
                state["pend_reason"] = placed
                save_state(job_id, state)
        time.sleep(POLL * 2)
    if not os.path.isdir(job["cwd"]):
        with locked():
            finish(job_id, state, exit_code=None, reason="TERM_CWD_NOTEXIST")
        return
    environment = {
        **job["environment"],
        "LSB_JOBID": str(job_id),
        "LSB_JOBNAME": job["name"],
        "LSB_QUEUE": job["queue"],
        "LSB_HOSTS": " ".join([state["host"]] * job["slots"]),
        "LSB_DJOB_NUMPROC": str(job["slots"]),
    }
    if job["gpus"]:
        environment["CUDA_VISIBLE_DEVICES"] = ",".join(str(index) for index in state["gpu_ids"])

    def output(path: str, append: bool) -> int:
        if not path:
            return subprocess.DEVNULL  # LSF would mail it
        try:
            return os.open(path.replace("%J", str(job_id)), os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o644)
        except OSError:
            # bsub -o/-oo: "If the specified output_file path is not accessible, the output will
            # not be stored" (it is mailed); the job runs all the same.
            return subprocess.DEVNULL

    stdout = output(job["stdout"], job["stdout_append"])
    stderr = output(job["stderr"], job["stderr_append"]) if job["stderr"] else subprocess.STDOUT
    process = subprocess.Popen(
        ["/bin/sh", str(job_dir(job_id) / "script")],
        cwd=job["cwd"],
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    with locked():
        state = load(job_id)[1]  # type: ignore[index]
        state["pid"] = process.pid
        save_state(job_id, state)
    run_limit = job["run_limit_minutes"] * settings["minute_seconds"]
    reason = ""
    killing_since = memory_checked = 0.0
    while process.poll() is None:
        if not reason:
            reason = kill_request(job_id)
            if not reason and run_limit and time.time() - state["start_time"] > run_limit:
                reason = "TERM_RUNLIMIT"
            if not reason and job["memory_limit_kb"] and time.time() - memory_checked > MEMORY_CHECK:
                memory_checked = time.time()  # sampled, as sbatchd samples its jobs' usage
                if resident_kb(session_processes(process.pid)) > job["memory_limit_kb"]:
                    reason = "TERM_MEMLIMIT"
            if reason:  # LSF sends SIGINT, SIGTERM, then SIGKILL (JOB_TERMINATE_INTERVAL apart)
                killing_since = time.time()
                signal_session(process.pid, signal.SIGKILL if reason == "TERM_FORCE_OWNER" else signal.SIGTERM)
        elif time.time() - killing_since > settings["kill_grace"]:
            signal_session(process.pid, signal.SIGKILL)
        time.sleep(POLL)
    signal_session(process.pid, signal.SIGKILL)  # what the job left behind
    code = process.returncode
    with locked():
        state = load(job_id)[1]  # type: ignore[index]
        finish(job_id, state, exit_code=128 - code if code < 0 else code, reason=reason, signal_number=-code if code < 0 else 0)


def finish(job_id: int, state: dict, *, exit_code: int | None, reason: str, signal_number: int = 0) -> None:
    """Record how the job ended (call with the lock held)."""
    state.update(
        stat="DONE" if exit_code == 0 and not reason else "EXIT",
        pend_reason="",
        exit_code=exit_code,
        signal=signal_number,
        exit_reason=reason,
        finish_time=time.time(),
    )
    save_state(job_id, state)


# ---- bjobs ------------------------------------------------------------------------------------

FIELD_ALIASES = {"id": "jobid", "name": "job_name", "description": "job_description", "proj": "proj_name"}


def clock(moment: float | None) -> str:
    return time.strftime("%b %d %H:%M", time.localtime(moment)) if moment else ""


def field_value(job_id: int, job: dict, state: dict, field: str, now: float) -> str:
    start, finish = state.get("start_time"), state.get("finish_time")
    run_time = int((finish or now) - start) if start else 0
    exit_reason = state.get("exit_reason", "")
    values = {
        "jobid": str(job_id),
        "stat": state["stat"],
        "user": job["user"],
        "queue": job["queue"],
        "job_name": job["name"],
        "job_description": job["description"],
        "proj_name": job["project"],
        "slots": str(job["slots"]),
        "exec_host": state.get("host", ""),
        "from_host": config()["hosts"][0]["name"],
        "exit_code": "" if state.get("exit_code") is None else str(state["exit_code"]),
        "exit_reason": f"{exit_reason}: {TERMINATION[exit_reason]}" if exit_reason else "",
        "pend_reason": state.get("pend_reason", "") if state["stat"] in ("PEND", "PSUSP") else "",
        "run_time": f"{run_time} second(s)",
        "submit_time": clock(job["submit_time"]),
        "start_time": clock(start),
        "finish_time": clock(finish),
    }
    if field not in values:
        raise Usage(f"{field}: Illegal field in the -o option.")
    return values[field]


def version() -> tuple[int, ...]:
    return tuple(int(part) for part in config().get("version", "10.1.0.13").split("."))


BJOBS_USAGE = "Usage: bjobs [-h] [-V] [-w | -l] [-a] [-J name] [job_ID ...]"
CLASSIC_FIELDS = ["jobid", "user", "stat", "queue", "from_host", "exec_host", "job_name", "submit_time"]


def bjobs(args: list[str]) -> None:
    from fnmatch import fnmatchcase

    fault = inject_fault("bjobs")
    if fault:
        outage(fault)
    show_all = json_output = no_header = long_output = False
    name_pattern = ""
    fields = CLASSIC_FIELDS
    delimiter = ""
    ids: list[int] = []
    words = list(args)
    while words:
        word = words.pop(0)
        if word in ("-json", "-o", "-noheader") and version() < ((10, 1, 0, 2) if word == "-json" else (9, 1, 1)):
            raise Usage(f"{word}: Illegal option.\n{BJOBS_USAGE}")  # an LSF from before the option
        if word == "-a":
            show_all = True
        elif word == "-json":
            json_output = True
        elif word == "-noheader":
            no_header = True
        elif word == "-l":
            long_output = True
        elif word in ("-w", "-W"):
            pass
        elif word == "-J":
            name_pattern = words.pop(0)
        elif word == "-u":
            words.pop(0)  # one user here
        elif word == "-o":
            spec = words.pop(0)
            found = re.search(r"delimiter='(.)'", spec)
            if found:
                delimiter = found.group(1)
                spec = spec[: found.start()] + spec[found.end() :]
            fields = [FIELD_ALIASES.get(f.split(":")[0].lower(), f.split(":")[0].lower()) for f in spec.split()]
        elif word.isdigit():
            ids.append(int(word))
        else:
            raise Usage(f"{word}: Illegal option.\n{BJOBS_USAGE}")
    if json_output and no_header:
        raise Usage("-json and -noheader cannot be used together.")
    now = time.time()
    clean_period = config()["clean_period"]
    shown_jobs: list[tuple[int, dict, dict]] = []
    errors = []
    for job_id in ids or all_job_ids():
        loaded = load(job_id)
        if loaded is None or not visible(loaded[1], clean_period, now):
            if ids:
                errors.append(f"Job <{job_id}> is not found")
            continue
        job, state = loaded
        if not ids and not show_all and state["stat"] in FINISHED:
            continue
        if name_pattern and not fnmatchcase(job["name"], name_pattern):
            continue
        shown_jobs.append((job_id, job, state))
    if json_output:
        records: list[dict[str, str]] = [{f.upper(): field_value(i, j, s, f, now) for f in fields} for i, j, s in shown_jobs]
        records += [{"JOBID": re.sub(r"\D", "", error), "ERROR": error} for error in errors]
        print(json.dumps({"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}, indent=2))
        return
    if not shown_jobs:
        if errors:
            raise Usage("\n".join(errors))
        raise Usage("No job found" if show_all or name_pattern else "No unfinished job found")
    if long_output:
        print(("\n" + "-" * 78 + "\n\n").join(long_block(i, j, s, "bjobs") for i, j, s in shown_jobs))
    elif delimiter or fields is not CLASSIC_FIELDS:  # -o: the columns asked for, "-" for an empty one
        if not no_header:
            print((delimiter or " ").join(field.upper() for field in fields))
        for job_id, job, state in shown_jobs:
            print((delimiter or " ").join(field_value(job_id, job, state, f, now) or "-" for f in fields))
    else:  # the classic table; -w only widens its columns, and the fake never truncates them
        rows = [[field_value(i, j, s, f, now) for f in CLASSIC_FIELDS] for i, j, s in shown_jobs]
        widths = [7, 7, 5, 10, 11, 11, 10, 12]
        print(" ".join(f"{name.upper():<{width}}" for name, width in zip(CLASSIC_FIELDS, widths)).rstrip())
        for row in rows:
            print(" ".join(f"{value:<{width}}" for value, width in zip(row, widths)).rstrip())
    if errors:
        print("\n".join(errors), file=sys.stderr)


# ---- bkill ------------------------------------------------------------------------------------


def bkill(args: list[str]) -> None:
    fault = inject_fault("bkill")
    if fault:
        outage(fault)
    force = "-r" in args
    ids = [int(word) for word in args if word.isdigit()]
    if ids == [0]:
        ids = all_job_ids()
    problems = []
    clean_period = config()["clean_period"]
    for job_id in ids:
        with locked():
            loaded = load(job_id)
            if loaded is None or not visible(loaded[1], clean_period, time.time()):
                problems.append(f"Job <{job_id}> is not found")
                continue
            _, state = loaded
            if state["stat"] in FINISHED:
                problems.append(f"Job <{job_id}>: Job has already finished")
                continue
            reason = "TERM_FORCE_OWNER" if force else "TERM_OWNER"
            if state["stat"] == "PSUSP":  # no supervisor yet: a held job ends here
                finish(job_id, state, exit_code=None, reason=reason)
            else:
                (job_dir(job_id) / "kill").write_text(reason)
        print(f"Job <{job_id}> is being {'forced to terminate' if force else 'terminated'}")
    if problems:
        raise Usage("\n".join(problems))


# ---- bhist ------------------------------------------------------------------------------------


def long_clock(moment: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S", time.localtime(moment))


def wrapped(line: str) -> str:
    """bhist -l folds lines at 80 columns, indenting what follows by 21 spaces."""
    pieces = [line[:79]]
    rest = line[79:]
    while rest:
        pieces.append(" " * 21 + rest[:58])
        rest = rest[58:]
    return "\n".join(pieces)


def long_block(job_id: int, job: dict, state: dict, command: str) -> str:
    """One job as `bjobs -l`, `bhist -l` or `bacct -l` describe it."""
    head = f"Job <{job_id}>, Job Name <{job['name']}>, User <{job['user']}>, Project <{job['project']}>"
    if command != "bhist":
        head += f", Status <{state['stat']}>, Queue <{job['queue']}>"
    host = config()["hosts"][0]["name"]
    lines = [
        f"{head}, Command <{job['name']}>",
        f"{long_clock(job['submit_time'])}: Submitted from host <{host}>, to Queue <{job['queue']}>, CWD <{job['submit_cwd']}>;",
    ]
    start, finish = state.get("start_time"), state.get("finish_time")
    if start and command == "bjobs":
        lines.append(
            f"{long_clock(start)}: Started {job['slots']} Task(s) on Host(s) <{state['host']}>, Allocated {job['slots']} Slot(s) on "
            f"Host(s) <{state['host']}>, Execution Home <{os.environ.get('HOME', '/')}>, Execution CWD <{job['cwd']}>;"
        )
    elif start:
        lines.append(f"{long_clock(start)}: Dispatched {job['slots']} Task(s) on Host(s) <{state['host']}>;")
        if state.get("pid") and command == "bhist":
            lines.append(f"{long_clock(start)}: Starting (Pid {state['pid']});")
    reason = state.get("exit_reason", "")
    if command == "bacct":
        if state["stat"] in FINISHED:
            detail = f"; {reason}: {TERMINATION[reason]}" if reason else ""
            lines.append(f"{long_clock(finish)}: Completed <{state['stat'].lower()}>{detail}.")
    elif state["stat"] == "DONE":
        lines.append(f"{long_clock(finish)}: Done successfully. The CPU time used is 0.0 seconds;")
    elif state["stat"] == "EXIT":
        if state.get("signal"):
            lines.append(f"{long_clock(finish)}: Exited by signal {state['signal']}. The CPU time used is 0.0 seconds;")
        elif state.get("exit_code") is not None:
            lines.append(f"{long_clock(finish)}: Exited with exit code {state['exit_code']}. The CPU time used is 0.0 seconds;")
        if reason:
            lines.append(f"{long_clock(finish)}: Completed <exit>; {reason}: {TERMINATION[reason]}.")
    end = finish or time.time()
    pending, running = int((start or end) - job["submit_time"]), int(end - start) if start else 0
    if command == "bjobs" and state["stat"] in ("PEND", "PSUSP"):
        lines += ["", " PENDING REASONS:", f" {state.get('pend_reason', '')};"]
    elif command == "bhist":
        lines += [
            "",
            f"Summary of time in seconds spent in various states by  {long_clock(end)}",
            "  PEND     PSUSP    RUN      USUSP    SSUSP    UNKWN    TOTAL",
            f"  {pending:<9}0        {running:<9}0        0        0        {pending + running}",
        ]
    elif command == "bacct":
        lines += [
            "",
            "Accounting information about this job:",
            "     CPU_T     WAIT     TURNAROUND   STATUS     HOG_FACTOR    MEM    SWAP",
            f"      0.00 {pending:>8} {pending + running:>14} {state['stat'].lower():>8}         0.0000     0M      0M",
        ]
    return "\n".join(wrapped(line) for line in lines)


def bhist(args: list[str]) -> None:
    fault = inject_fault("bhist")
    if fault:
        outage(fault)
    ids = [int(word) for word in args if word.isdigit() and word != "0"]  # "-n 0": every event file
    blocks = []
    for job_id in ids or all_job_ids():
        loaded = load(job_id)
        if loaded is None or loaded[1].get("events_pruned"):
            continue
        blocks.append(long_block(job_id, *loaded, "bhist"))
    if not blocks:
        raise Usage("No matching job found")
    print(("\n" + "-" * 78 + "\n\n").join(blocks))


def bacct(args: list[str]) -> None:
    fault = inject_fault("bacct")
    if fault:
        outage(fault)
    ids = [int(word) for word in args if word.isdigit()]
    found = []
    for job_id in ids or all_job_ids():
        loaded = load(job_id)
        if loaded is not None and loaded[1]["stat"] in FINISHED and not loaded[1].get("acct_pruned"):
            found.append((job_id, *loaded))
    if not found:
        raise Usage("No matching job found")
    rule = "-" * 78
    print("Accounting information about jobs that are: ")
    print("  - submitted by all users.\n  - accounted on all projects.\n  - completed normally or exited\n"
          "  - executed on all hosts.\n  - submitted to all queues.\n  - accounted on all service classes.")
    print(rule)
    for job_id, job, state in found:
        print("\n" + long_block(job_id, job, state, "bacct"))
        print(rule)
    done = sum(state["stat"] == "DONE" for _, _, state in found)
    print("\nSUMMARY:      ( time unit: second ) ")
    print(f" Total number of done jobs: {done:>7}      Total number of exited jobs: {len(found) - done:>5}")


# ---- hosts and configuration ----------------------------------------------------------------


def host_usage() -> dict[str, int]:
    used: dict[str, int] = {}
    for job_id in all_job_ids():
        loaded = load(job_id)
        if loaded and loaded[1]["stat"] == "RUN":
            used[loaded[1]["host"]] = used.get(loaded[1]["host"], 0) + loaded[0]["slots"]
    return used


def bhosts(args: list[str]) -> None:
    fault = inject_fault("bhosts")
    if fault:
        outage(fault)
    used = host_usage()
    print("HOST_NAME          STATUS       JL/U    MAX  NJOBS    RUN  SSUSP  USUSP    RSV")
    for host in config()["hosts"]:
        slots = used.get(host["name"], 0)
        status = "closed" if slots >= host["cores"] else "ok"
        print(f"{host['name']:<18} {status:<12} {'-':<7} {host['cores']:<4} {slots:<8} {slots:<6} {0:<6} {0:<8} 0")


def lshosts(args: list[str]) -> None:
    fault = inject_fault("lshosts")
    if fault:
        outage(fault)
    hosts = config()["hosts"]
    if "-gpu" in args:
        print("HOST_NAME              gpu_id       gpu_model   gpu_driver   gpu_factor      numa_id")
        for host in hosts:
            for index in range(host.get("gpus", 0)):
                name = host["name"] if index == 0 else ""
                print(f"{name:<22} {index:>6} {host['gpu_model']:>15} {'535.54':>12} {'7.0':>12} {0:>12}")
        return
    if "-l" in args:  # the long format, one block a host
        for host in hosts:
            memory, tmp = shown(host["memory_mb"] * 1024), shown(host.get("tmp_mb", 0) * 1024)
            print(f"\nHOST_NAME:  {host['name']}")
            print("type             model  cpuf ncpus ndisks maxmem maxswp maxtmp rexpri server nprocs ncores nthreads")
            print(f"X86_64    Intel_EM64T  60.0 {host['cores']:>5}      1 {memory:>6}   2.0G {tmp:>6}      0    Yes      1 {host['cores']:>6}        1")
            print(f"\nRESOURCES: {'(mg gpu)' if host.get('gpus') else '(mg)'}")
            print("RUN_WINDOWS:  (always open)\n")
        return
    print("HOST_NAME      type    model  cpuf ncpus maxmem maxswp server RESOURCES")
    for host in hosts:
        resources = "(mg gpu)" if host.get("gpus") else "(mg)"
        print(f"{host['name']:<14} X86_64  Intel_EM64T 60.0 {host['cores']:>5} {shown(host['memory_mb'] * 1024):>6} {'2G':>6} Yes    {resources}")


def lsadmin(args: list[str]) -> None:
    if args[:2] != ["showconf", "lim"]:
        raise Usage("Usage: lsadmin showconf lim")
    print(f"LSF Configuration Settings on host {config()['hosts'][0]['name']} at {long_clock(time.time())}")
    for key in ("LSF_UNIT_FOR_LIMITS",):
        value = conf_value(key)
        if value:
            print(f"    {key} = {value}")


def lsid(args: list[str]) -> None:
    release = config().get("version", "10.1.0.13")
    product = "IBM Spectrum LSF Standard" if version() >= (10,) else "IBM Platform LSF Standard" if version() >= (9,) else "Platform LSF Standard"
    print(f"{product} {release}, Jan 01 2020")
    print("Copyright International Business Machines Corp. 1992, 2016.")
    print("\nMy cluster name is cluster1")
    print(f"My master name is {config()['hosts'][0]['name']}")


def bparams(args: list[str]) -> None:
    print(f"Default Queues:  {config()['default_queue']}")
    print("MBD_SLEEP_TIME used for calculations:  10 seconds")
    print("Job Checking Interval:  7 seconds")
    print("Job Accepting Interval:  0 seconds")


def bqueues(args: list[str]) -> None:
    fault = inject_fault("bqueues")
    if fault:
        outage(fault)
    queues = config()["queues"]
    names = [word for word in args if not word.startswith("-")] or list(queues)
    blocks = []
    for name in names:
        if name not in queues:
            raise Usage(f"{name}: No such queue")
        block = [
            f"QUEUE: {name}",
            f"  -- {'For normal low priority jobs.' if name == config()['default_queue'] else 'Jobs of the fake LSF.'}",
            "",
            "PARAMETERS/STATISTICS",
            "PRIO NICE STATUS          MAX JL/U JL/P JL/H NJOBS  PEND   RUN SSUSP USUSP  RSV PJOBS",
            " 30   20  Open:Active       -    -    -    -     0     0     0     0     0    0     0",
            "Interval for a host to accept two jobs is 0 seconds",
        ]
        if queues[name]:
            block += ["", " RUNLIMIT", f" {float(queues[name]):.1f} min"]
        block += ["", "SCHEDULING PARAMETERS", "           r15s   r1m  r15m   ut      pg    io   ls    it    tmp    swp    mem",
                  " loadSched   -     -     -     -       -     -    -     -     -      -      -",
                  " loadStop    -     -     -     -       -     -    -     -     -      -      -",
                  "", "USERS: all", "HOSTS:  all"]
        blocks.append("\n".join(block))
    print("\n\n".join(blocks))


COMMANDS = {
    "bsub": bsub,
    "bjobs": bjobs,
    "bkill": bkill,
    "bhist": bhist,
    "bacct": bacct,
    "bqueues": bqueues,
    "bparams": bparams,
    "lsid": lsid,
    "bhosts": bhosts,
    "lshosts": lshosts,
    "lsadmin": lsadmin,
    "supervise": supervise,
}


def main() -> None:
    name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
    if name not in COMMANDS:  # run as lsf_fake.py COMMAND ...
        name, args = args[0], args[1:]
    try:
        if name != "supervise":
            time.sleep(config().get("answer_delay", 0.0))  # mbatchd's round trip, where a bench models one
        COMMANDS[name](args)
    except Usage as error:
        print(error, file=sys.stderr)
        sys.exit(255)


if __name__ == "__main__":
    main()
