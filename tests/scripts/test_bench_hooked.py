"""bench_hooked: the hooked steps timed through the fast path and the bridge, on a saved model, answers compared."""

from __future__ import annotations

import yaml

from tests.attribution.conftest import TASK, VOCAB, tiny_model
from tests.scripts.conftest import run_script
from whitebox.models import save_model


def test_bench_hooked_times_both_paths_and_they_reach_the_same_answer(tmp_path):
    run = tmp_path / "run"
    model, cfg = tiny_model()
    save_model(model, cfg, run / "models" / "planted", extra={"vocab": VOCAB})
    config = {"experiment": "locate", "run": {"name": "tiny", "seed": 0},
              "model": {"arch": "native", "n_layers": 2, "d_model": 16, "n_heads": 2, "d_mlp": 32},
              "task": {"name": "backdoor", **TASK.model_dump(exclude={"name"}), "n_train": 64, "n_eval": 32}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    proc, result = run_script("bench_hooked.py", tmp_path / "bench.json", "--run", str(run), "--repeats", "1",
                              "--pairs", "8")
    rows = {r["step"]: r for r in result["rows"]}
    assert set(rows) == {"capture resid (eval set)", "select_circuit", "task_reference"}
    # a random model's unit scores are near ties, so which components the walk takes can differ between paths;
    # the scores themselves agree to rounding
    for row in rows.values():
        assert row["max_abs_difference"] < 1e-4 and row["fast_wall_s"] > 0 and row["bridge_wall_s"] > 0
        assert row["speedup"] == row["bridge_wall_s"] / row["fast_wall_s"]
    assert "select_circuit" in proc.stdout


def test_bench_hooked_names_a_missing_run_in_one_line(tmp_path):
    import subprocess
    import sys

    from tests.scripts.conftest import ROOT

    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_hooked.py"), "--run", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
