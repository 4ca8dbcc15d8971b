import json

import pytest

import whitebox
from whitebox.config import ConfigError, parse_config

TINY_GROK = {
    "experiment": "grokking",
    "run": {"name": "grok", "seed": 0},
    "model": {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_mlp": 32, "act_fn": "relu", "normalization": "none"},
    "task": {"name": "modular", "p": 7, "train_fraction": 0.5},
    "training": {"steps": 40, "batch_size": 1000, "lr": 3e-2, "weight_decay": 1.0, "warmup_steps": 0,
                 "schedule": "constant", "eval_every": 10, "checkpoint_every": 20, "device": "cpu"},
    "tracking": {"wandb_mode": "disabled"},
}


@pytest.fixture(scope="module")
def grokked(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("grok")
    return tmp_path, whitebox.run(parse_config(TINY_GROK), out=tmp_path / "g")


def test_grokking_pipeline_logs_every_progress_measure(grokked):
    tmp_path, summary = grokked
    for key in ("train_acc", "test_acc", "test_logprob", "restricted_loss", "restricted_loss_train", "excluded_loss", "fourier_gini",
                "fourier_key_share", "key_freq_1", "weight_norm"):
        assert f"grok.{key}" in summary
    assert summary["grok.train_acc"] == 1.0  # 24 pairs are memorised in 40 full-batch steps
    step = summary["grok.step_train_acc_0.9"]
    assert step is not None and 0 < step <= 40
    records = [json.loads(line) for line in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "eval/test_acc" in r] == [0, 10, 20, 30, 40]
    assert (tmp_path / "g" / "plots" / "grokking.png").stat().st_size > 10_000


def test_grokking_pipeline_reports_early_warning_signals_and_lead_times(grokked):
    tmp_path, summary = grokked
    assert -1.0 < summary["grok.fourier_probe_r2"] <= 1.0
    assert summary["grok.test_anomaly"] > 0 and 0 <= summary["grok.test_anomaly_auroc"] <= 1
    for name in ("fourier_probe", "test_anomaly", "test_logprob"):
        for prefix in ("grok.step_", "grok.lead.", "grok.threshold."):
            assert f"{prefix}{name}" in summary
        step, lead = summary[f"grok.step_{name}"], summary[f"grok.lead.{name}"]
        assert step is None or summary["grok.step_train_acc_0.9"] <= step <= 40  # searched from memorisation on
        target = summary["grok.step_test_acc_0.9"]
        assert lead == (None if step is None or target is None else target - step)
    records = [json.loads(line) for line in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()]
    assert all("eval/fourier_probe_r2" in r and "eval/test_anomaly" in r for r in records if "eval/test_acc" in r)
    assert (tmp_path / "g" / "plots" / "early_warning.png").stat().st_size > 10_000


def test_grokking_needs_the_modular_task(tmp_path):
    with pytest.raises(ConfigError, match="needs 'modular'"):
        whitebox.run(parse_config({**TINY_GROK, "task": {"name": "backdoor"}}), out=tmp_path / "g")
