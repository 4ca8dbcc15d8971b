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
    assert set(same["max_gap_to_plain"]) == {"ours", "bridge", "plain_answer_only"}
    assert "ours (fast path) / plain torch throughput" in proc.stdout
