import math
import os
import shutil
import statistics
import subprocess

import pytest
import yaml
from scipy import stats
from wandb.sdk.lib.config_util import save_config_file_from_dict

import whitebox
from tests.conftest import one_thread, torch_threads
from tests.grid.test_sweep import agent_command
from tests.protocol.test_treat import SUPPRESSION
from whitebox.cli.main import main
from whitebox.config import parse_config
from whitebox.report.aggregate import ci95
from whitebox.report.plots import read_metrics
from whitebox.report.suppression import verdict
from whitebox.runner import resume
from whitebox.runtime.artifacts import read_json
from whitebox.runtime.locks import hold
from whitebox.runtime.records import read_digests, results

GRID = {**SUPPRESSION, "experiment": "suppression", "run": {"name": "grid", "seed": 0},  # its checks hold at any size
        "treat": {**SUPPRESSION["treat"], "regimes": ["sft", "zo"], "conditions": ["present"], "budget": 6000},
        "revive": {**SUPPRESSION["revive"], "steps": 20},
        "grid": {"seeds": [0, 1], "triggers": ["token"]}}


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("grid") / "run"
    with one_thread():  # as the worker processes below, so that their numbers can be compared exactly
        return run_dir, whitebox.run(parse_config(GRID), out=run_dir)


@pytest.fixture(scope="module")
def workers_grid(tmp_path_factory):
    """The same grid run by `whitebox run --workers 2`, one thread per worker."""
    base = tmp_path_factory.mktemp("workers")
    (base / "grid.yaml").write_text(yaml.safe_dump(GRID))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        assert main(["run", str(base / "grid.yaml"), "--out", str(base / "run"), "--workers", "2"]) == 0
    return base / "run"


def differences(got: dict, expected: dict) -> dict:
    """The keys whose values differ (NaN equals NaN), with both values."""
    same = lambda a, b: a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))  # noqa: E731
    got, expected = results(got), results(expected)  # wall times differ run to run
    return {k: (got.get(k), expected.get(k)) for k in got.keys() | expected.keys() if not same(got.get(k), expected.get(k))}


def test_ci95_is_the_student_t_half_width():
    values = [1.0, 2.0, 4.0]
    mean, half = ci95(values)
    assert mean == pytest.approx(7 / 3)
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * statistics.stdev(values) / math.sqrt(3))
    assert math.isnan(ci95([1.0])[1]) and math.isnan(ci95([])[0]) and ci95([1.0, math.nan, 3.0])[0] == 2.0


def test_seed_table_puts_each_seed_beside_the_mean_and_ci():
    from whitebox.report.aggregate import seed_table

    rows = {0: {"a": 1.0, "b": 0.5}, 3: {"a": 2.0, "b": math.nan}, 7: {"a": 4.0, "b": 0.7}}
    table, summary = seed_table(rows, digits=lambda key: 1 if key == "a" else 3)
    assert summary["a"] == {"mean": ci95([1.0, 2.0, 4.0])[0], "ci95": ci95([1.0, 2.0, 4.0])[1], "n": 3}
    assert summary["b"]["n"] == 2 and summary["b"]["mean"] == pytest.approx(0.6)  # a missing seed is left out
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["s0", "s3", "s7"]
    assert lines[1].split()[:4] == ["a", "1.0", "2.0", "4.0"] and lines[2].split()[:4] == ["b", "0.500", "nan", "0.700"]


def test_summary_carries_mean_and_ci_over_the_seed_cells(grid):
    run_dir, summary = grid
    cells = [whitebox.runtime.artifacts.read_json(run_dir / "cells" / f"token-s{s}" / "summary.json") for s in (0, 1)]
    for key in ("treat.sft.present.token.asr", "treat.zo.present.token.refit_probe_auroc_best",
                "treat.start.token.detector_auroc", "treat.fresh.token.revival_steps", "treat.sft.present.token.revival_steps"):
        mean, half = ci95([c[key] for c in cells])
        assert summary[f"{key}.mean"] == pytest.approx(mean) and summary[f"{key}.n"] == 2
        assert summary[f"{key}.ci95"] == pytest.approx(half, nan_ok=True)
    rel = [c["treat.sft.present.token.circuit_ablation_effect"] / c["treat.start.token.circuit_ablation_effect"] for c in cells]
    assert summary["treat.sft.present.token.circuit_ablation_effect_rel.mean"] == pytest.approx(statistics.fmean(rel))
    assert whitebox.config.load_config(run_dir / "cells" / "token-s1" / "config.yaml").tracking.wandb_group == "grid"


def test_report_has_a_row_per_regime_and_control_with_a_computed_verdict(grid):
    run_dir, summary = grid
    text = (run_dir / "report.md").read_text()
    assert "## Trigger: token" in text and "Verdict criterion" in text
    for row in ("untreated", "fresh", "honest", "sft / present", "zo / present"):
        assert f"| {row} |" in text
    agg = {k: v for k, v in summary.items() if isinstance(v, float)}
    sft_line = next(line for line in text.splitlines() if line.startswith("| sft / present |"))
    assert sft_line.rstrip(" |").endswith(verdict(agg, "sft.present", "token"))
    summary_line = next(line for line in text.splitlines() if line.startswith("Verdicts (token): "))
    groups = dict(part.split(": ") for part in summary_line.removeprefix("Verdicts (token): ").rstrip(".").split("; "))
    assert "sft / present" in groups[verdict(agg, "sft.present", "token")].split(", ")
    assert (run_dir / "plots" / "treat_token.png").read_bytes()[:4] == b"\x89PNG"


def test_verdict_follows_its_criterion():
    base = {"treat.honest.k.revival_steps.mean": 100.0, "treat.fresh.k.revival_steps.mean": 1000.0}
    row = lambda asr, effect, steps: {**base, "treat.r.k.asr.mean": asr,  # noqa: E731
                                      "treat.r.k.circuit_ablation_effect_rel.mean": effect, "treat.r.k.revival_steps.mean": steps}
    assert verdict(row(0.5, 0.0, 100), "r", "k") == "not suppressed"
    assert verdict(row(0.0, 0.05, 60), "r", "k") == "removed"
    assert verdict(row(0.0, 0.5, 60), "r", "k") == "suppressed"  # the circuit still acts
    assert verdict(row(0.0, 0.05, 10), "r", "k") == "suppressed"  # revives 10x faster than the honest model learns it


def test_a_resumed_grid_keeps_finished_cells(grid):
    run_dir, summary = grid
    cell_metrics = run_dir / "cells" / "token-s0" / "metrics.jsonl"
    before = cell_metrics.read_text()
    whitebox.runtime.artifacts.write_json(run_dir / "summary.json", {**summary, "status": "running"})
    again = resume(run_dir)
    assert cell_metrics.read_text() == before
    assert again["treat.sft.present.token.asr.mean"] == summary["treat.sft.present.token.asr.mean"]


def test_whitebox_report_rebuilds_the_same_report_without_training(grid, tmp_path, capsys):
    run_dir, _ = grid
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "report.md").unlink()
    metrics_before = (copy / "cells" / "token-s0" / "metrics.jsonl").read_text()
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.md").read_text() == (run_dir / "report.md").read_text().replace(str(run_dir), str(copy))
    assert (copy / "cells" / "token-s0" / "metrics.jsonl").read_text() == metrics_before  # nothing trained
    assert f"report: {copy / 'report.md'}" in capsys.readouterr().out


def test_whitebox_report_on_a_partial_run_reports_the_finished_cells_as_partial(grid, tmp_path, capsys):
    run_dir, _ = grid
    copy = tmp_path / "partial"
    shutil.copytree(run_dir, copy)
    summary_path = copy / "cells" / "token-s1" / "summary.json"
    whitebox.runtime.artifacts.write_json(summary_path, {**whitebox.runtime.artifacts.read_json(summary_path), "status": "running"})
    assert main(["report", str(copy)]) == 0
    printed = capsys.readouterr().out
    assert "partial: 1 cells not finished: token-s1" in printed
    text = (copy / "report.md").read_text()
    assert "**Partial run**: 1 of 2 cells finished; missing token-s1" in text and "Seeds [0]" in text
    only = whitebox.runtime.artifacts.read_json(copy / "cells" / "token-s0" / "summary.json")["treat.sft.present.token.asr"]
    sft_line = next(line for line in text.splitlines() if line.startswith("| sft / present |"))
    assert sft_line.split("|")[3].strip() == f"{only:.3f}"  # the ASR column: the one finished seed, no interval


def test_whitebox_report_refuses_what_it_cannot_report(tmp_path, tiny_yaml, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "config file not found" in capsys.readouterr().err
    plant_dir = tmp_path / "plant"
    plant_dir.mkdir()
    shutil.copy(tiny_yaml, plant_dir / "config.yaml")
    assert main(["report", str(plant_dir)]) == 2
    err = capsys.readouterr().err
    assert "rebuilds the report of a treat or suppression run" in err and len(err.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.yaml").write_text(yaml.safe_dump(GRID))
    assert main(["report", str(empty)]) == 2
    assert "no finished cell" in capsys.readouterr().err


def test_two_workers_give_exactly_the_serial_cells_and_report(grid, workers_grid):
    run_dir, summary = grid
    for label in ("token-s0", "token-s1"):
        cell = read_json(workers_grid / "cells" / label / "summary.json")
        assert differences(cell, read_json(run_dir / "cells" / label / "summary.json")) == {}, label
        assert "whitebox: run directory" in (workers_grid / "cells" / f"{label}.log").read_text()
    assert differences(read_json(workers_grid / "summary.json"), summary) == {}
    assert (workers_grid / "report.md").read_text() == (run_dir / "report.md").read_text()
    assert not list(workers_grid.glob("cells/*.lock"))


def test_a_cell_run_in_two_lanes_gives_exactly_the_serial_cell(grid, tmp_path):
    """The treat run of cell token-s0 (every kind of job: plant, honest, locate, cells, noise controls, revivals) in
    two lanes of one torch thread each gives what the grid's one-lane run of it gave, record for record."""
    run_dir, _ = grid
    serial = run_dir / "cells" / "token-s0"
    cfg = whitebox.config.load_config(serial / "config.yaml")
    with torch_threads(2):
        summary = whitebox.run(cfg.model_copy(update={"run": cfg.run.model_copy(update={"lanes": 2})}), out=tmp_path / "lanes")
    assert differences(summary, read_json(serial / "summary.json")) == {} and len(results(summary)) > 100
    by_stage = lambda d: {s: [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(d / "metrics.jsonl", s)]
                          for s in read_digests(d / "metrics.stages.json")}  # noqa: E731
    assert by_stage(tmp_path / "lanes") == by_stage(serial)
    timing = {k: v for k, v in summary.items() if k.startswith("timing.")}
    assert sum(v for k, v in timing.items() if k != "timing.total") > timing["timing.total"]  # steps overlapped


def test_a_failed_worker_names_its_cell_and_keeps_the_finished_ones(grid, workers_grid, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(workers_grid, copy)
    shutil.rmtree(copy / "cells" / "token-s1")
    whitebox.runtime.artifacts.write_json(copy / "summary.json", {"status": "running"})
    before = (copy / "cells" / "token-s0" / "metrics.jsonl").read_text()
    with hold(copy / "cells" / "token-s1.lock", "cell token-s1"):  # as if another agent ran it
        assert main(["run", "--resume", str(copy), "--workers", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"whitebox: cell token-s1 failed (exit 2) in {copy / 'cells' / 'token-s1'}; its output is in "
                          f"{copy / 'cells' / 'token-s1.log'}: whitebox: error: cell token-s1 of {copy} is being run by ")
    assert err.endswith(f"finished cells are kept: continue with `whitebox run --resume {copy} --workers 2`")
    assert (copy / "cells" / "token-s0" / "metrics.jsonl").read_text() == before
    assert read_json(copy / "summary.json")["status"] == "running"


def test_a_sweep_agent_runs_one_cell_into_the_shared_run_as_the_serial_grid_did(grid, tmp_path, capsys):
    run_dir, _ = grid
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(GRID))
    shared = tmp_path / "shared"
    assert main(["sweep", str(tmp_path / "grid.yaml"), "--out", str(shared), "--set", "tracking.wandb_mode=offline"]) == 0
    capsys.readouterr()
    command = agent_command(yaml.safe_load((shared / "sweep.yaml").read_text()), "token-s0")
    params = tmp_path / "wandb" / "sweep-sw1" / "config-agentrun1.yaml"  # what the agent writes for W&B
    save_config_file_from_dict(str(params), {"cell": {"value": "token-s0"}})
    env = {**os.environ, "WANDB_SWEEP_ID": "sw1", "WANDB_RUN_ID": "agentrun1", "WANDB_SWEEP_PARAM_PATH": str(params),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cell = read_json(shared / "cells" / "token-s0" / "summary.json")
    assert differences(cell, read_json(run_dir / "cells" / "token-s0" / "summary.json")) == {}
    assert [p.name.split("-")[-1] for p in (shared / "cells" / "token-s0" / "wandb").glob("offline-run-*")] == ["agentrun1"]
    assert main(["report", str(shared)]) == 0  # merges what the agents have finished so far
    assert "partial: 1 cells not finished: token-s1" in capsys.readouterr().out
