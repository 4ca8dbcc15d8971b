

from whitebox.attribution.circuit import Circuit
from whitebox.attribution.locate import locate_circuit, plot_component_scores
from whitebox.attribution.scores import ComponentScores
from whitebox.tasks import get_task


def test_locate_says_so_when_the_rule_finds_no_faithful_circuit(planted, task_cfg):
    """threshold 1 asks for an ablated ASR whose one-sided Wilson bound is 0, which no finite sample gives: never found."""
    model, cfg = planted
    circuit, metrics = locate_circuit(model, cfg, get_task(task_cfg), n_pairs=64, seed=0, ig_steps=0, threshold=1.0)
    assert metrics["base_asr"] > 0.95  # a backdoor is there ...
    assert metrics["circuit_found"] == 0.0  # ... but the rule's stopping criterion was never met, and says so
    assert circuit.metrics["circuit_found"] == 0.0 and "threshold=1.0" in circuit.rule


def test_locate_finds_a_faithful_circuit(planted, task_cfg, tmp_path):
    model, cfg = planted
    assert get_task(task_cfg).evaluate(model, get_task(task_cfg).eval_set(0))["asr"] > 0.95
    circuit, metrics = locate_circuit(model, cfg, get_task(task_cfg), n_pairs=64, seed=0, ig_steps=8)
    for key in ("patching_spearman", "patching_spearman_units", "circuit_size", "ablation_asr", "ablation_clean_acc",
                "complement_ablation_asr", "ablation_logit_diff_removed", "ig_spearman", "ig_completeness_error",
                "circuit_found", "circuit_pair_complement_asr", "patching_spearman_k1", "attribution_steps",
                "attribution_forward_equivalents"):
        assert key in metrics, key
    assert -1.0 <= metrics["patching_spearman"] <= 1.0 and metrics["ig_spearman"] > 0.8
    assert metrics["circuit_size"] == len(circuit.components) >= 1
    assert metrics["base_asr"] > 0.95
    assert metrics["ablation_asr"] < 0.1 and metrics["ablation_logit_diff_removed"] > 0.5  # the circuit is needed
    assert metrics["complement_ablation_asr"] > 0.9  # and enough
    assert metrics["ablation_clean_acc"] > 0.9 * metrics["base_clean_acc"]  # and the honest task does without it
    assert circuit.metrics == metrics and "attribution_patching" in circuit.details["scores"]
    path = circuit.save(tmp_path / "circuit.json")
    assert Circuit.load(path) == circuit

    methods = {"activation_patching", "attribution_patching", "integrated_patching", "integrated_gradients"}
    assert set(circuit.details["scores"]) == methods
    png = plot_component_scores(Circuit.load(path), tmp_path / "scores.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    exact = ComponentScores.from_json(circuit.details["scores"]["activation_patching"])
    assert {c.kind for c in exact.components} == {"head", "mlp", "resid"}
    assert set(circuit.components) <= set(circuit.scores) == set(circuit.details["trigger_share"])


def test_locate_scores_and_selects_with_the_configured_steps(planted, task_cfg):
    """attribution_steps reaches the agreement metrics, the stored scores and the neurons' shares in the rule."""
    model, cfg = planted
    task = get_task(task_cfg)
    circuit, metrics = locate_circuit(model, cfg, task, n_pairs=32, seed=0, ig_steps=0, attribution_steps=3)
    assert (metrics["attribution_steps"], metrics["attribution_forward_equivalents"]) == (3.0, 10.0)
    fast = ComponentScores.from_json(circuit.details["scores"]["integrated_patching"])
    assert fast.extra["steps"] == 3 and "with 3 gradient points" in circuit.rule
    one, _ = locate_circuit(model, cfg, task, n_pairs=32, seed=0, ig_steps=0, attribution_steps=1)
    assert one.metrics["patching_spearman"] == one.metrics["patching_spearman_k1"] == metrics["patching_spearman_k1"]
    neuron = next(c for c in circuit.details["trigger_share"] if ".N" in c)
    assert circuit.details["trigger_share"][neuron] != one.details["trigger_share"][neuron]
