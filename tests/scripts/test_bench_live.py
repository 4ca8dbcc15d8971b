from tests.scripts.conftest import run_script


def test_bench_live_times_probes_and_capture_against_their_floors_and_checks_the_outputs(tmp_path):
    out = tmp_path / "bench.json"
    proc, result = run_script("bench_live.py", out, "--threads", "1", "--repeats", "1", "--iters", "1",
         "--n", "24", "--batch-size", "8", "--batch-sizes", "1", "3", "--fit", "32")
    assert result["seq_len"] == 20  # today's backdoor task: 16 values and 4 more tokens
    live = result["live"]
    assert len(live["hooks"]) == 5 and live["prompt_len"] + live["new_tokens"] == 20
    assert set(live["batches"]) == {"1", "3"}
    for batch, row in live["batches"].items():
        assert row["same_tokens"] and row["score_entries_per_probe"] == live["new_tokens"]  # probes leave the output alone
        cpu = row["cpu_s"]
        assert row["overhead"]["all_hooks"] == cpu["all_hooks"][0] / cpu["none"][0]
        assert row["tokens_per_s"]["none"] == int(batch) * live["new_tokens"] / cpu["none"][0]
    capture = result["capture"]
    assert capture["n"] == 24 and capture["raw_cpu_s"]["floor"] == [min(capture["raw_cpu_s"]["floor_bridge"][0],
                                                                          capture["raw_cpu_s"]["floor_fast_path"][0])]
    variants = capture["variants"]
    assert set(variants) == {"last_memory", "last_disk", "all_memory", "all_disk"}
    for name, v in variants.items():
        assert v["max_abs_diff_to_run_with_cache"] <= capture["tolerance"]  # the captured rows are the reference's
        assert v["over_floor"] == capture["raw_cpu_s"][name][0] / capture["raw_cpu_s"]["floor"][0]
        assert v["peak_bytes"] > 0
    for positions, rows in {"last": 24, "all": 24 * 20}.items():  # 5 hooks x rows x 64 float32, plus the indices
        assert variants[f"{positions}_disk"]["disk_bytes"] > 5 * rows * 64 * 4
        assert variants[f"{positions}_memory"]["disk_bytes"] == 0
    assert "live scoring during generation" in proc.stdout and "capture of 24 inputs" in proc.stdout
