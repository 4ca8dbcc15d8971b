import json

import pytest
import torch

from whitebox.artifacts import ArtifactError
from whitebox.attribution.circuit import Circuit, CircuitError, select_circuit
from whitebox.attribution.components import Component
from whitebox.attribution.pairs import contrast_pairs
from whitebox.attribution.patching import activation_patching, patch_metric
from whitebox.attribution.scores import ComponentScores
from whitebox.models import fingerprint


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
    tokens = contrast_pairs(task_cfg, 6, seed=0).triggered
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
    tokens = contrast_pairs(task_cfg, 6, seed=0).triggered
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
    tokens = contrast_pairs(task_cfg, 1, seed=0).triggered
    circuit = _circuit(model, cfg, task_cfg, ["L0.H1", "L1.MLP", "L1.MLP.N3"])
    for how in ("mean", "resample"):
        with circuit.ablate(model, how, reference=tokens):
            ablated = model(tokens)
        assert torch.allclose(ablated, model(tokens), atol=1e-5)


def test_complement_covers_every_other_unit(make_model, task_cfg):
    model, cfg = make_model("native")
    circuit = _circuit(model, cfg, task_cfg, ["L0.H1", "L1.MLP.N3", "L1.MLP.N4"])
    rest = circuit.complement(model)
    assert set(rest).isdisjoint(circuit.units)
    assert Component("head", 0, 0) in rest and Component("mlp", 0) in rest and Component("mlp", 1) not in rest
    assert len([c for c in rest if c.kind == "neuron"]) == cfg.mlp_dim - 2
    assert len([c for c in rest if c.kind == "head"]) == cfg.n_layers * cfg.n_heads - 1


def test_artifact_round_trip(make_model, task_cfg, tmp_path):
    model, cfg = make_model("native")
    circuit = _circuit(model, cfg, task_cfg)
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


def test_selection_rule(make_model, task_cfg):
    """Heads: shortest prefix whose joint patch reaches the threshold; MLP layers: additive share; neurons narrow MLPs."""
    model, cfg = make_model("native", n_heads=4, d_head=4)
    pairs = contrast_pairs(task_cfg, 32, seed=0)
    comps = [Component("head", layer, h) for layer in range(2) for h in range(4)] + [Component("mlp", 0), Component("mlp", 1)]
    scores = activation_patching(model, pairs, comps)
    scores.scores["L0.MLP"], scores.scores["L1.MLP"] = 9.0, -1.0  # L0.MLP alone carries 90%
    neurons = ComponentScores("attribution_patching", "noise", {"L0.MLP.N1": 3.0, "L0.MLP.N2": -2.5, "L0.MLP.N7": 1.0}, 0.0, 1.0)
    circuit = select_circuit(scores, model, cfg, task_cfg, pairs, threshold=0.9, neuron_scores=neurons, neuron_threshold=0.5)
    heads = [c for c in circuit.units if c.kind == "head"]
    ranked = sorted((c for c in comps if c.kind == "head"), key=lambda c: -abs(scores.scores[c.id]))
    assert heads == ranked[: len(heads)]
    base, whole = scores.base_metric, patch_metric(model, pairs, ranked) - scores.base_metric
    share = lambda k: (patch_metric(model, pairs, ranked[:k]) - base) / whole  # noqa: E731
    assert share(len(heads)) >= 0.9 and (len(heads) == 1 or share(len(heads) - 1) < 0.9)
    assert [c.id for c in circuit.units if c.kind != "head"] == ["L0.MLP.N1", "L0.MLP.N2"]  # 3/6.5 < 0.5 <= 5.5/6.5
    assert circuit.hooks["L0.MLP.N1"] == "blocks.0.mlp.out.hook_in" and "threshold=0.9" in circuit.rule
