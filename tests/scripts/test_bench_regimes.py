from tests.scripts.conftest import run_script


def test_bench_regimes_holds_es_against_a_plain_torch_floor_and_writes_its_numbers(tmp_path):
    out = tmp_path / "bench.json"
    proc, result = run_script("bench_regimes.py", out, "--threads", "1", "--repeats", "1", "--iters", "1",
         "--batch", "4", "--population", "4", "--device", "cpu")
    assert result["es_population_max_abs_diff_to_member_loop"] <= 1e-4  # the batched members are the members
    assert result["seq_len"] == 20  # today's backdoor task: 16 values and 4 more tokens
    es, floor = result["raw_times_s"]["es"], result["raw_times_s"]["population_floor"]
    assert result["es_step_over_floor"] == es[0] / floor[0]
    assert result["flop_floor_s"] == result["population_flops"] / result["gemm_flops_per_s"] > 0
    assert result["es_memory_over_sft"] == result["regimes"]["es"]["peak_bytes"] / result["regimes"]["sft"]["peak_bytes"]
    assert set(result["regimes"]) == {"sft", "rl", "es", "zo", "probe_penalty", "es_one_chunk"}
    assert "ES step / plain-torch floor" in proc.stdout
