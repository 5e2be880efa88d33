"""The plugin's options, read the way Toil reads them: flags over TOIL_BATCHGATE_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from toil.common import Config
from toil.job import Job, Requirer

from toil_batch_system_batchgate.options import OPTIONS, Settings
from toil_batch_system_batchgate.translate import spec_for


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


@pytest.mark.parametrize(("walltime", "round_up", "sent"), [(3, None, 60.0), (61, "60", 120.0), (3, "0", 3.0), (0, None, None)])
def test_walltime_is_rounded_up_to_whole_minutes_unless_told(tmp_path: Path, walltime: int, round_up: str | None, sent: float | None) -> None:
    flags = ["--batchgateWallTimeRoundUp", round_up] if round_up is not None else []
    config = config_from([str(tmp_path / "jobstore"), *flags])
    config.workflowID = "workflow-1"
    settings = Settings.from_config(config)
    requirer = Requirer({"cores": 1, "memory": 1024, "disk": 1024, "accelerators": [], "walltime": walltime})
    spec = spec_for("true", requirer, name="j", environment={}, backend="", wall_time_round_up=settings.wall_time_round_up)
    assert (spec.wall_time_seconds if spec.HasField("wall_time_seconds") else None) == sent


def test_a_bad_round_up_names_the_flag(tmp_path: Path) -> None:
    config = config_from([str(tmp_path / "jobstore"), "--batchgateWallTimeRoundUp", "-5"])
    config.workflowID = "workflow-1"
    with pytest.raises(ValueError, match="--batchgateWallTimeRoundUp takes a whole number of seconds"):
        Settings.from_config(config)
