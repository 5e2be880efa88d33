"""Every command of examples/grpcurl.md, run against a live service, prints what the page shows."""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from itertools import pairwise

from example_tools import EXAMPLES, installed_tool

WALKTHROUGH = EXAMPLES / "grpcurl.md"
PAGE_ADDRESS = "127.0.0.1:50051"
FENCED_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# What the page must walk a reader through (the issue asks for each).
REQUIRED_CALLS = ("list", "describe", "batchgate.v1.BatchSystem/IssueJob", "batchgate.v1.BatchSystem/GetUpdatedJob")


@dataclass(frozen=True)
class Step:
    command: str
    shown_output: str


def walkthrough_steps(page: str) -> list[Step]:
    """Each `sh` block and the `text` block after it, which shows its output."""
    blocks = FENCED_BLOCK.findall(page)
    steps = []
    for (language, body), (next_language, next_body) in pairwise(blocks + [("", "")]):
        if language == "sh":
            assert next_language == "text", f"no output block after the command {body.strip()!r}"
            steps.append(Step(body.strip(), next_body))
    return steps


def shows(shown_output: str, actual_output: str) -> bool:
    """Whether the output matches what the page shows, `...` standing for any text."""
    pattern = ".*?".join(re.escape(part) for part in shown_output.rstrip().split("..."))
    return re.fullmatch(pattern, actual_output.rstrip(), re.DOTALL) is not None


def test_every_command_of_the_walkthrough_prints_what_the_page_shows(service_address: str) -> None:
    grpcurl = installed_tool("grpcurl")
    steps = walkthrough_steps(WALKTHROUGH.read_text())
    arguments = [shlex.split(step.command) for step in steps]
    for required in REQUIRED_CALLS:
        assert any(required in argv for argv in arguments), f"the walk-through lost its {required} step"
    assert any("Code: ResourceExhausted" in step.shown_output for step in steps)

    for step, argv in zip(steps, arguments, strict=True):
        assert argv[0] == "grpcurl", step.command
        argv = [grpcurl] + [service_address if word == PAGE_ADDRESS else word for word in argv[1:]]
        run = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        as_shown = shows(step.shown_output, run.stdout)
        assert as_shown, f"{step.command}\n--- the page shows:\n{step.shown_output}--- it printed:\n{run.stdout}"
        failed = "ERROR:" in step.shown_output
        assert (run.returncode != 0) == failed, f"{step.command} exited {run.returncode}"
