"""The probe artifact: exact round trip, scoring on torch and numpy, and a clear error for each defect."""

import json

import numpy as np
import pytest
import torch

from whitebox.probes import Probe, ProbeError, fit_probes, load_probe
from whitebox.runtime.artifacts import ArtifactError, seal


@pytest.fixture
def probe(gaussian) -> Probe:
    hook = "blocks.1.hook_out"
    return fit_probes({hook: gaussian.train[hook]}, gaussian.y_train, C=0.5, data_description="planted gaussian")[hook]


@pytest.fixture
def saved(probe, tmp_path):
    return probe.save(tmp_path / "probe")


def _edit(directory, reseal=True, **fields):
    """Edit probe.json's fields; with reseal, recompute its content hash so the checks behind the hash are reached."""
    path = directory / "probe.json"
    meta = json.loads(path.read_text())
    for key, value in fields.items():
        if value is ...:
            del meta[key]
        else:
            meta[key] = value
    path.write_text(json.dumps(seal({k: v for k, v in meta.items() if k != "sha256"}) if reseal else meta))


def test_round_trip_is_exact(probe, saved):
    loaded = load_probe(saved)
    for name in ("weight", "bias", "mean", "std"):
        assert torch.equal(getattr(loaded, name), getattr(probe, name)), name
    for name in ("kind", "hook", "position", "model", "training_data", "hyperparameters", "metrics", "created",
                 "whitebox_version"):
        assert getattr(loaded, name) == getattr(probe, name), name
    meta = json.loads((saved / "probe.json").read_text())
    assert {"format_version", "probe_type", "hook", "position", "d_model", "model", "training_data", "metrics",
            "whitebox_version", "created", "weights_sha256", "sha256"} <= set(meta)
    assert meta["training_data"]["description"] == "planted gaussian" and len(meta["training_data"]["sha256"]) == 64
    assert sorted(p.name for p in saved.iterdir()) == ["probe.json", "probe.safetensors"]


def test_scores_torch_and_numpy_alike(probe, gaussian):
    x = gaussian.test["blocks.1.hook_out"][:50]
    torch_scores = probe.score(x.float())
    numpy_scores = probe.score(x.numpy())
    assert isinstance(numpy_scores, np.ndarray) and numpy_scores.shape == (50,)
    np.testing.assert_allclose(torch_scores.numpy(), numpy_scores, rtol=1e-4, atol=1e-4)
    expected = ((x.float() - probe.mean) / probe.std) @ probe.weight + probe.bias
    torch.testing.assert_close(torch_scores, expected)
    assert probe.score(x.float()[None]).shape == (1, 50)
    with pytest.raises(ProbeError, match=r"expects activations \[\.\.\., 12\]"):
        probe.score(torch.zeros(3, 5))


def test_score_is_differentiable(probe, gaussian):
    x = gaussian.test["blocks.1.hook_out"][:4].float().requires_grad_(True)
    probe.probability(x).sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)


def test_truncated_safetensors(saved):
    path = saved / "probe.safetensors"
    path.write_bytes(path.read_bytes()[:-9])
    with pytest.raises(ProbeError, match=r"probe\.safetensors: unreadable safetensors file .*truncated or corrupt"):
        load_probe(saved)


def test_replaced_weights_fail_the_hash(saved, probe, tmp_path):
    other = Probe(**{**probe.__dict__, "weight": probe.weight + 1}).save(tmp_path / "other")
    (saved / "probe.safetensors").write_bytes((other / "probe.safetensors").read_bytes())
    with pytest.raises(ProbeError, match=r"probe\.safetensors: content hash differs from field 'weights_sha256'"):
        load_probe(saved)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"probe_type": "svm"}, r"probe\.json: field 'probe_type': unknown probe kind 'svm'; registered: logistic, mean_diff, lda, ccs, readout \(got 'svm'\)"),
        ({"d_model": "12"}, r"probe\.json: field 'd_model': Input should be a valid integer"),
        ({"position": "first"}, r"probe\.json: field 'position'"),
        ({"hook": ""}, r"probe\.json: field 'hook': String should have at least 1 character"),
        ({"weights_sha256": "abc"}, r"probe\.json: field 'weights_sha256'"),
        ({"hook": ...}, r"probe\.json: field 'hook': missing"),
        ({"training_data": {"description": "x"}}, r"probe\.json: field 'training_data\.sha256': missing"),
        ({"surprise": 1}, r"probe\.json: field 'surprise': Extra inputs are not permitted"),
    ],
)
def test_tampered_or_missing_field(saved, fields, message):
    _edit(saved, **fields)
    with pytest.raises(ProbeError, match=message):
        load_probe(saved)


@pytest.mark.parametrize("fields", [{"probe_type": "lda"}, {"position": 3}, {"hook": "blocks.0.hook_out"},
                                    {"metrics": {}}, {"sha256": ...}])
def test_an_edit_without_the_hash_is_refused(saved, fields):
    _edit(saved, reseal=False, **fields)
    with pytest.raises(ProbeError, match=r"probe\.json: (content hash differs from field 'sha256'|missing field 'sha256')"):
        load_probe(saved)


def test_shape_that_does_not_match_d_model(saved):
    _edit(saved, d_model=64)
    with pytest.raises(ProbeError, match=r"probe\.json: field 'd_model' is 64 but probe\.safetensors tensor 'weight' has shape \[12\]"):
        load_probe(saved)


@pytest.mark.parametrize("version", [2, 0, "1"])
def test_wrong_format_version(saved, version):
    _edit(saved, format_version=version)
    with pytest.raises(ProbeError, match=rf"probe\.json: field 'format_version' is {version!r}; this whitebox reads format 1"):
        load_probe(saved)


def test_missing_files_and_garbage_json(saved, tmp_path):
    with pytest.raises(ProbeError, match=r"nowhere/probe\.json: file not found"):
        load_probe(tmp_path / "nowhere")
    (saved / "probe.json").write_text('{"format_version": 1,')
    with pytest.raises(ProbeError, match=r"probe\.json: not valid JSON"):
        load_probe(saved)
    _edit_json = saved / "probe.json"
    _edit_json.write_text("[1, 2]")
    with pytest.raises(ProbeError, match=r"probe\.json: expected a JSON object"):
        load_probe(saved)


def test_missing_safetensors_and_probe_error_is_an_artifact_error(saved):
    (saved / "probe.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"probe\.safetensors: file not found"):
        load_probe(saved)
