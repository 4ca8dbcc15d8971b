from tests.scripts.conftest import run_script


def test_bench_probes_compares_both_sides_at_equal_cores_checks_convergence_and_records_skips(tmp_path):
    out = tmp_path / "bench.json"
    proc, result = run_script("bench_probes.py", out, "--widths", "16", "2048", "--hooks", "3",
         "--rows", "1024", "--n-test", "512", "--repeats", "2", "--threads", "2", "1", "--max-gb", "0.52",
         "--capture-n", "0", "--full")
    fitted, skipped = result["probes"]
    assert skipped["width"] == 2048 and "over --max-gb 0.52" in skipped["skipped"] and "runs" not in skipped
    assert fitted["skipped"] is None and fitted["solver"] == "newton" and len(fitted["bayes_auroc"]) == 3
    assert [run["threads"] for run in fitted["runs"]] == [2, 1]  # equal cores, and both on one
    for run in fitted["runs"]:
        for side in ("whitebox", "sklearn"):
            assert len(run[side]["wall_s"]) == len(run[side]["cpu_s"]) == 2  # the warm-up is not among them
        assert run["wall_ratio"] == run["whitebox"]["wall_median_s"] / run["sklearn"]["wall_median_s"]
        assert run["cpu_ratio"] == run["whitebox"]["cpu_median_s"] / run["sklearn"]["cpu_median_s"]
        assert run["whitebox"]["converged"] and len(run["sklearn"]["n_iter"]) == 3
        check = run["convergence"]
        for key in ("objective", "grad_max", "auroc"):
            assert len(check[f"{key}_whitebox"]) == len(check[f"{key}_sklearn"]) == 3
        assert check["agree"] and check["max_objective_rel_gap"] <= check["objective_rtol"]
        assert check["max_auroc_diff"] <= check["auroc_tol"]
        assert max(check["grad_max_whitebox"]) < 1e-5
    assert len(fitted["fit_probes_with_control"]["wall_s"]) == 2 and "fit_probes_with_control" not in skipped
    assert result["all_agree"] and "capture" not in result
    assert "agree" in proc.stdout and "skipped: needs about" in proc.stdout
