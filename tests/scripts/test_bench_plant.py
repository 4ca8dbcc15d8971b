import yaml

from tests.experiments.test_grokking import TINY_GROK
from tests.scripts.conftest import run_script


def test_bench_plant_compares_same_size_models_and_writes_its_numbers(tmp_path):
    out = tmp_path / "bench.json"
    proc, result = run_script("bench_plant.py", out, "--threads", "1", "--repeats", "2", "--iters", "1",
         "--batch-size", "8", "--d-model", "16", "--n-layers", "1")
    params = result["params"]
    assert params["ours"] == params["plain"]  # the reference has the same parameters
    assert len(result["samples"]["ours"]) == len(result["samples"]["bridge"]) == len(result["samples"]["plain"]) == 2
    same = result["same_answer"]  # from the same weights, the same losses: the three train the same model
    assert len(same["losses"]["plain"]) == same["steps"] == 5
    assert max(same["max_gap_to_plain"].values()) <= same["tolerance"]
    assert same["losses"]["plain"][-1] < same["losses"]["plain"][0]
    seconds = result["seconds_per_step"]
    assert result["ratio_ours_over_plain"] == seconds["plain"] / seconds["ours"]
    assert result["tokens_per_step"] == 8 * result["model"]["n_ctx"]  # batch x tokens of one input
    assert result["tokens_per_second"]["ours"] == result["tokens_per_step"] / seconds["ours"]
    assert result["ratio_bridge_over_plain"] == seconds["plain"] / seconds["bridge"]
    assert result["ratio_ours_over_floor"] == seconds["plain_answer_only"] / seconds["ours"]
    assert set(same["max_gap_to_plain"]) == {"ours", "ours_every_row", "bridge", "plain_answer_only"}
    assert result["distinct_rows"] is False  # the backdoor batch repeats too few (token, position) pairs
    assert "ours (fast path) / plain torch throughput" in proc.stdout


def test_bench_plant_takes_model_optimizer_and_batch_from_a_config(tmp_path):
    config = tmp_path / "grok.yaml"
    config.write_text(yaml.safe_dump(TINY_GROK))
    _, result = run_script("bench_plant.py", tmp_path / "bench.json", "--threads", "1", "--repeats", "2", "--iters", "1",
                           "--config", str(config))
    assert result["config"] == str(config) and result["model"]["normalization"] == "none"
    assert result["model"]["act_fn"] == TINY_GROK["model"].get("act_fn", "gelu")
    assert result["batch_size"] == result["tokens_per_step"] // 3  # the whole training set: a b =
    assert result["distinct_rows"] is True  # a few symbols at three positions: the shortcut is taken
    assert max(result["same_answer"]["max_gap_to_plain"].values()) <= result["same_answer"]["tolerance"]


def test_bench_plant_refuses_sizes_beside_a_config(tmp_path):
    import subprocess
    import sys

    from tests.scripts.conftest import ROOT

    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_plant.py"), "--config", "configs/grokking_nanda.yaml",
                           "--d-model", "32", "--out", str(tmp_path / "b.json")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "leave out --d-model" in proc.stderr and not (tmp_path / "b.json").exists()
