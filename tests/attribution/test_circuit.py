import json

import pytest
import torch

from whitebox.attribution.circuit import Circuit, CircuitError
from whitebox.fingerprint import fingerprint
from whitebox.runtime.artifacts import ArtifactError
from whitebox.tasks import get_task


def _circuit(model, cfg, task_cfg, components=("L1.H0", "L0.MLP")) -> Circuit:
    return Circuit(
        components=list(components),
        scores={c: -1.0 for c in components},
        method="activation_patching",
        direction="noise",
        task=task_cfg.model_dump(mode="json"),
        model_fingerprint=fingerprint(model, cfg),
    )


def _hook_count(model) -> int:
    return sum(len(point._forward_hooks) + len(point._backward_hooks) for point in model.hook_dict.values())


@pytest.mark.parametrize(
    "arch, how", [("native", "mean"), ("native", "zero"), ("native", "resample"), ("gpt2", "mean"), ("llama", "resample")]
)
def test_ablation_hooks_are_removed_on_exit_and_on_error(make_model, task_cfg, arch, how):
    model, cfg = make_model(arch)
    circuit = _circuit(model, cfg, task_cfg)
    tokens = get_task(task_cfg).contrast_pairs(6, seed=0).triggered
    before, hooks_before = model(tokens), _hook_count(model)
    for complement in (False, True):
        with circuit.ablate(model, how, complement=complement):
            inside = model(tokens)
            assert _hook_count(model) > hooks_before
        assert not torch.allclose(inside, before)
        assert torch.equal(model(tokens), before) and _hook_count(model) == hooks_before
    with pytest.raises(RuntimeError, match="boom"):
        with circuit.ablate(model, how):
            raise RuntimeError("boom")
    assert torch.equal(model(tokens), before) and _hook_count(model) == hooks_before


def test_zero_ablating_a_head_is_zeroing_its_output_weights(make_model, task_cfg):
    model, cfg = make_model("native")
    tokens = get_task(task_cfg).contrast_pairs(6, seed=0).triggered
    with _circuit(model, cfg, task_cfg, ["L1.H0"]).ablate(model, "zero"):
        ablated = model(tokens)
    o = model.blocks[1].attn.o.original_component
    with torch.no_grad():
        saved = o.weight.clone()
        o.weight[:, : cfg.head_dim] = 0  # nn.Linear [d_model, n_heads * d_head]: head 0's columns
        expected = model(tokens)
        o.weight.copy_(saved)
    assert torch.allclose(ablated, expected, atol=1e-6)


def test_mean_and_resample_from_the_input_itself_change_nothing(make_model, task_cfg):
    model, cfg = make_model("gpt2")
    tokens = get_task(task_cfg).contrast_pairs(1, seed=0).triggered
    circuit = _circuit(model, cfg, task_cfg, ["L0.H1", "L1.MLP", "L1.MLP.N3", "L0.H0.P2", "L0.MLP.P1"])
    for how in ("mean", "resample"):
        with circuit.ablate(model, how, reference=tokens):
            ablated = model(tokens)
        assert torch.allclose(ablated, model(tokens), atol=1e-5)


def test_artifact_round_trip(make_model, task_cfg, tmp_path):
    model, cfg = make_model("native")
    circuit = _circuit(model, cfg, task_cfg, ["L1.H0", "L0.MLP.P3", "L1.MLP.N7"])
    circuit.metrics["ablation_asr"] = 0.25
    path = circuit.save(tmp_path / "circuit.json")
    loaded = Circuit.load(path)
    assert loaded == circuit
    assert json.loads(path.read_text())["model_fingerprint"]["sha256"] == fingerprint(model, cfg)["sha256"]


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d.pop("scores"), "scores"),
        (lambda d: d.update(kind="whitebox.probe"), "kind"),
        (lambda d: d.update(format_version=99), "format_version"),
        (lambda d: d.update(components=["L0.HEAD1"]), "components"),
        (lambda d: d["model_fingerprint"].pop("sha256"), "model_fingerprint"),
    ],
)
def test_bad_artifacts_name_file_and_field(make_model, task_cfg, tmp_path, edit, field):
    model, cfg = make_model("native")
    data = _circuit(model, cfg, task_cfg).to_json()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CircuitError, match=rf"bad\.json.*{field}"):
        Circuit.load(path)
    path.write_text("{not json")
    with pytest.raises(ArtifactError, match="bad.json"):
        Circuit.load(path)


def test_a_circuit_refuses_another_models_fingerprint(make_model, task_cfg):
    model, cfg = make_model("native")
    circuit = _circuit(model, cfg, task_cfg)
    wider, wider_cfg = make_model("native", d_model=32)
    with pytest.raises(CircuitError, match="model_fingerprint"):
        with circuit.ablate(wider, "zero"):
            pass
    gpt2, gpt2_cfg = make_model("gpt2")
    with pytest.raises(CircuitError, match="model_fingerprint"):
        circuit.check_model(gpt2, gpt2_cfg)
    circuit.check_model(make_model("native", seed=1)[0], cfg)  # same architecture, other weights: accepted
