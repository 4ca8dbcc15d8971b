"""Mahalanobis detector: fitted on clean data only, scores a shifted distribution, same artifact checks as probes."""

import json

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf
from sklearn.preprocessing import StandardScaler

from whitebox.capture import capture
from whitebox.config import ModelConfig
from whitebox.models import build_model
from whitebox.probes import ProbeError, fit_detectors, load_detector
from whitebox.runtime.artifacts import seal
from whitebox.tasks import get_task
from whitebox.tasks.backdoor import BackdoorTaskConfig


def shifted(n_clean=2000, n_test=4000, d=10, seed=0):
    """Clean: N(mu, L L') with unevenly scaled features. Anomalous: shifted 4 whitened units along a random direction."""
    gen = torch.Generator().manual_seed(seed)
    mix = (torch.randn(d, d, generator=gen, dtype=torch.float64) / d**0.5 + torch.eye(d, dtype=torch.float64))
    mix = mix * torch.linspace(0.2, 5, d, dtype=torch.float64)[:, None]
    mu = 5 * torch.randn(d, generator=gen, dtype=torch.float64)
    draw = lambda n: torch.randn(n, d, generator=gen, dtype=torch.float64) @ mix.T + mu
    u = torch.randn(d, generator=gen, dtype=torch.float64)
    y = (torch.rand(n_test, generator=gen) < 0.3).long()
    test = draw(n_test) + y[:, None] * (mix @ (4 * u / u.norm()))
    return draw(n_clean), test, y


def test_detects_a_shift_it_never_saw():
    clean, test, y = shifted()
    det = fit_detectors({"h": clean}, held_out=({"h": test}, y))["h"]
    scaler = StandardScaler().fit(clean.numpy())
    ref = LedoitWolf().fit(scaler.transform(clean.numpy()))
    np.testing.assert_allclose(det.hyperparameters["shrinkage"], ref.shrinkage_, rtol=1e-9)
    expected = ref.mahalanobis(scaler.transform(test.numpy()))  # squared distances, same shrunk correlation
    np.testing.assert_allclose(det.score(test.numpy()), expected, rtol=2e-3)
    assert det.metrics["auroc"] > 0.9 and det.metrics["flag_rate_clean"] < 0.03
    assert det.metrics["flag_rate_triggered"] > 0.3


def test_round_trip_and_bad_artifacts(tmp_path):
    clean, test, y = shifted(d=6)
    det = fit_detectors({"blocks.0.hook_out": clean}, held_out=({"blocks.0.hook_out": test}, y),
                        data_description="clean gaussian")["blocks.0.hook_out"]
    saved = det.save(tmp_path / "det")
    loaded = load_detector(saved)
    assert torch.equal(loaded.mean, det.mean) and torch.equal(loaded.precision, det.precision)
    assert loaded.metrics == det.metrics and loaded.hyperparameters == det.hyperparameters
    assert sorted(p.name for p in saved.iterdir()) == ["detector.json", "detector.safetensors"]
    meta_path = saved / "detector.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "d_model": 7}))
    with pytest.raises(ProbeError, match=r"detector\.json: content hash differs from field 'sha256'"):
        load_detector(saved)
    meta_path.write_text(json.dumps(seal({k: v for k, v in meta.items() if k != "sha256"} | {"d_model": 7})))
    with pytest.raises(ProbeError, match=r"detector\.json: field 'd_model' is 7 but detector\.safetensors tensor 'mean' has shape \[6\]"):
        load_detector(saved)
    meta_path.write_text(json.dumps({**meta, "detector_type": "knn"}))
    with pytest.raises(ProbeError, match=r"detector\.json: field 'detector_type'"):
        load_detector(saved)
    meta_path.write_text(json.dumps(meta))
    weights = saved / "detector.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ProbeError, match=r"detector\.safetensors: unreadable safetensors file"):
        load_detector(saved)


def test_on_a_bridge_clean_only_fit_and_live_scores():
    task = BackdoorTaskConfig(seq_len=4, n_values=10, trigger_rate=0.5, n_train=160, n_eval=64)
    vocab = get_task(task).vocabulary()
    cfg = ModelConfig(arch="gpt2", n_layers=1, d_model=16, n_heads=2, d_mlp=32, d_vocab=len(vocab), n_ctx=get_task(task).seq_len())
    torch.manual_seed(0)
    model = build_model(cfg, vocab).eval()
    train, test = get_task(task).train_set(0), get_task(task).eval_set(0)
    clean = train.filter(lambda row: not row["triggered"])
    dets = fit_detectors(capture(model, clean, "resid", cfg=cfg),
                         held_out=capture(model, test, "resid", labels="triggered"))
    det = dets["blocks.0.hook_out"]
    assert det.training_data["n"] == len(clean) and det.model["arch"] == "gpt2"
    assert 0.0 <= det.metrics["auroc"] <= 1.0 and det.metrics["n_eval"] == len(test)
    assert dets["blocks.0.hook_in"].metrics["auroc"] == 0.5  # the '=' position is identical in every input
    tokens = test.with_format("torch")[:]["tokens"]
    with torch.no_grad(), det.attach(model, cfg=cfg) as live:
        model(tokens)
    offline = det.score(capture(model, test, ["blocks.0.hook_out"]).acts["blocks.0.hook_out"])
    torch.testing.assert_close(live.last, offline, rtol=1e-4, atol=1e-4)
