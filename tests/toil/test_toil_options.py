"""The plugin's options, read the way Toil reads them: flags over TOIL_BATCHGATE_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from toil.common import Config
from toil.job import Job

from toil_batch_system_batchgate.options import OPTIONS, Settings


def config_from(arguments: list[str]) -> Config:
    options = Job.Runner.getDefaultArgumentParser().parse_args(arguments)
    config = Config()
    config.setOptions(options)
    return config


def test_each_option_falls_back_to_its_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for option in OPTIONS:
        monkeypatch.setenv(option.env_var, f"from {option.env_var}")
    config = config_from([str(tmp_path / "jobstore")])
    for option in OPTIONS:
        assert getattr(config, option.dest) == f"from {option.env_var}"


def test_a_flag_wins_over_its_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    flags: list[str] = []
    for option in OPTIONS:
        monkeypatch.setenv(option.env_var, "from the environment")
        flags += [option.flag, f"from {option.flag}"]
    config = config_from([str(tmp_path / "jobstore"), *flags])
    for option in OPTIONS:
        assert getattr(config, option.dest) == f"from {option.flag}"


def test_the_job_set_is_the_workflow_id_unless_given(tmp_path: Path) -> None:
    config = config_from([str(tmp_path / "jobstore")])
    config.workflowID = "workflow-1"
    assert Settings.from_config(config).job_set == "workflow-1"
    config = config_from([str(tmp_path / "jobstore"), "--batchgateJobSet", "shared-set"])
    config.workflowID = "workflow-1"
    assert Settings.from_config(config).job_set == "shared-set"
