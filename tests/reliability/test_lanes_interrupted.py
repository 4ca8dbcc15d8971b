"""A two-lane treat run stopped mid-way (Ctrl-C: every lane checkpoints; SIGKILL: nothing warned) resumes to the
uninterrupted run's numbers, step for step."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml

from tests.reliability.interrupted import fault_script, treat_config
from whitebox.runtime.records import results

LANES = 2
KILL_AT = 60  # a training step after both plants (24 + 24 steps), with the treatment cells running in both lanes


def _config(tmp_path: Path) -> Path:
    cfg = treat_config()
    cfg["run"] = {**cfg.get("run", {}), "lanes": LANES}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _by_stage(run_dir: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = {k: v for k, v in json.loads(line).items() if k != "time"}
        out.setdefault(record["stage"], []).append(record)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    work = tmp_path_factory.mktemp("lanes_reference")
    fi = fault_script()
    assert fi.attempt(["run", str(_config(work)), "--out", str(work / "run")], None, work / "ledger", work / "log") == 0
    return work / "run"


@pytest.mark.slow  # a fault trial against real runs, like test_faults' (python -m pytest -m slow)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_a_two_lane_run_stopped_mid_way_resumes_to_the_uninterrupted_numbers(tmp_path, reference, signum):
    fi = fault_script()
    run_dir, ledger, log = tmp_path / "run", tmp_path / "ledger", tmp_path / "log"
    code = fi.attempt(["run", str(_config(tmp_path)), "--out", str(run_dir)], KILL_AT, ledger, log, signum=signum,
                      points=("step",))
    assert code == (130 if signum == signal.SIGINT else -signal.SIGKILL), log.read_text()[-2000:]
    if signum == signal.SIGINT:
        assert f"interrupted; continue with `whitebox run --resume {run_dir}`" in log.read_text()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "running"  # stopped with work left
    assert fi.attempt(["run", "--resume", str(run_dir)], None, ledger, log) == 0, log.read_text()[-2000:]
    resumed = json.loads((run_dir / "summary.json").read_text())
    expected = json.loads((reference / "summary.json").read_text())
    assert json.dumps(results(resumed)) == json.dumps(results(expected))  # NaN equals NaN
    assert _by_stage(run_dir) == _by_stage(reference)
