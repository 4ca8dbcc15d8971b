import argparse
import importlib.util
import math
from pathlib import Path

import pytest

from tests.attribution.conftest import TASK, tiny_model
from whitebox.runtime.artifacts import read_json, write_json
from whitebox.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("attribution_seeds", ROOT / "scripts" / "attribution_seeds.py")
seeds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seeds)


def test_top_overlap_counts_the_components_carrying_90_percent():
    exact = [-10.0, 5.0, 3.0, 1.0, 0.5, 0.0]  # 10 + 5 + 3 = 18 of 19.5 (92%): the top 3
    assert seeds.top_overlap(exact, exact) == 1.0
    assert seeds.top_overlap(exact, [9.0, 0.1, 3.0, 4.0, 0.0, 0.0]) == pytest.approx(2 / 3)  # 1 and 3 swapped in
    assert math.isnan(seeds.top_overlap([0.0, 0.0], [1.0, 2.0]))


def test_compare_reports_every_class_and_cost_on_a_tiny_model(monkeypatch):
    monkeypatch.setattr(seeds, "N_PAIRS", 16)
    model, _ = tiny_model("native")
    row = seeds.compare(model, get_task(TASK), seed=0, steps=(1, 2), repeats=1)
    assert set(row["methods"]) == {"k1", "k2"} and row["n_components"]["neuron"] == 2 * 32
    for k, cell in ((1, row["methods"]["k1"]), (2, row["methods"]["k2"])):
        assert cell["forward_equivalents"] == 1 + 3 * k and set(cell["spearman"]) == set(seeds.CLASSES)
    assert row["activation_patching"]["forward_equivalents"] == row["n_components"]["all"] + 2


def _fake(out: Path, name: str, role: str, kind: str, by_k: dict[int, float]) -> None:
    methods = {f"k{k}": {"steps": k, "forward_equivalents": 1 + 3 * k, "wall_s": 0.1, "spearman": {c: s for c in seeds.CLASSES},
                         "top90_overlap": {c: 1.0 for c in seeds.CLASSES}} for k, s in by_k.items()}
    write_json(out / f"{name}.json", {"model": name, "kind": kind, "seed": 0, "role": role,
                                      "activation_patching": {"forward_equivalents": 72, "wall_s": 1.0}, "methods": methods})


def test_choose_takes_the_best_minimum_within_budget_and_prefers_smaller_k(tmp_path):
    for i in range(6):
        _fake(tmp_path, f"t{i}", "tuning", "token", {1: 0.7, 2: 0.86 if i else 0.84, 3: 0.843, 4: 0.99})
    _fake(tmp_path, "h", "held-out", "token", {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0})  # never read by the rule
    args = argparse.Namespace(out=tmp_path, steps=[1, 2, 3, 4])
    assert seeds.choose(args) == 2  # k=4 is over budget; k=2's minimum 0.84 is within 0.005 of k=3's 0.843
    _fake(tmp_path, "t0", "tuning", "token", {1: 0.7, 2: 0.80, 3: 0.9, 4: 0.99})
    assert seeds.choose(args) == 3


def test_choose_refuses_an_incomplete_tuning_set(tmp_path):
    _fake(tmp_path, "t0", "tuning", "token", {1: 0.7})
    with pytest.raises(AssertionError, match="tuning models measured"):
        seeds.choose(argparse.Namespace(out=tmp_path, steps=[1]))


def test_table_reads_targets_off_the_held_out_models(tmp_path):
    for i, worst in enumerate((0.95, 0.92, 0.84)):
        _fake(tmp_path, f"h{i}", "held-out", "token", {1: 0.8, 2: worst, 4: 0.99})
    out = tmp_path / "table.json"
    seeds.table(argparse.Namespace(out=tmp_path, kinds=["token"], json=out))
    group = read_json(out)["groups"]["held-out/token"]["k"]
    assert group["k2"]["spearman_all_median"] == 0.92 and group["k2"]["spearman_all_min"] == 0.84
    assert not group["k2"]["targets_met"]  # one model below 0.85
    assert not group["k4"]["targets_met"]  # 13 forward-equivalents: over budget
    assert read_json(out)["models"]["h2"]["k2"] == 0.84


def test_random_model_has_the_config_architecture():
    model, task = seeds.random_model(ROOT / "configs" / "locate.yaml", "computed")
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.d_vocab) == (2, 64, len(task.vocabulary()))
