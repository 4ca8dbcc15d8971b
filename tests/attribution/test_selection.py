import pytest
import torch

from whitebox.attribution.ablation import ablated, reference_activations
from whitebox.attribution.circuit import reference_tokens
from whitebox.attribution.components import Component
from whitebox.attribution.patching import patch_metric
from whitebox.attribution.selection import _wilson, select_circuit, unit_shares
from whitebox.tasks import get_task, honest_margin


@pytest.fixture(scope="module")
def shares(planted):
    from tests.attribution.conftest import TASK

    model, _ = planted
    pairs = get_task(TASK).contrast_pairs(32, seed=0)
    refs = reference_activations(model, reference_tokens(get_task(TASK)))
    return pairs, refs, unit_shares(model, pairs, "mean", refs)


def test_wilson_bounds_bracket_the_rate_and_tighten_with_more_trials():
    assert _wilson(0.9, 64, upper=False) < _wilson(0.9, 256, upper=False) < 0.9 < _wilson(0.9, 256, upper=True)
    assert _wilson(1.0, 256, upper=True) == pytest.approx(1.0) and _wilson(0.0, 256, upper=False) == pytest.approx(0.0)
    assert 0.86 < _wilson(0.9, 256, upper=False) < 0.87  # 1.645 sigma, Wilson score interval


def test_unit_shares_are_exact_patching_and_ablation_effects(planted, shares):
    model, cfg = planted
    pairs, refs, (trigger, clean) = shares
    n_units = 2 * cfg.n_heads * pairs.seq_len + 2 * pairs.seq_len + 2 * cfg.d_mlp
    assert len(trigger) == len(clean) == n_units
    with torch.no_grad():
        base, source = (float(pairs.mean_metric(model(t))) for t in (pairs.triggered, pairs.untriggered))
        margin = float(honest_margin(model(pairs.untriggered), pairs.honest).mean())
    for cid in ("L0.H1.P4", "L1.MLP.P7"):  # the MLP is patched at hook_mlp_out here, at hook_post in unit_shares
        comp = Component.parse(cid)
        assert trigger[cid] == pytest.approx((patch_metric(model, pairs, [comp]) - base) / (source - base), abs=1e-4)
        with ablated(model, [comp], "mean", refs), torch.no_grad():
            broken = float(honest_margin(model(pairs.untriggered), pairs.honest).mean())
        assert clean[cid] == pytest.approx((margin - broken) / margin, abs=1e-4)
    early = [v for c, v in trigger.items() if c.startswith("L1.H") and not c.endswith(f".P{pairs.seq_len - 1}")]
    assert max(abs(v) for v in early) < 1e-6  # the last layer's heads act on the answer only at its position


def test_selection_walks_the_ranking_until_the_circuit_is_necessary_and_sufficient(planted, task_cfg):
    model, cfg = planted
    pairs = get_task(task_cfg).contrast_pairs(64, seed=0)
    circuit = select_circuit(model, cfg, get_task(task_cfg), pairs, threshold=0.9)
    m, n = circuit.metrics, len(pairs)
    assert m["found"] == 1.0
    assert _wilson(m["pair_asr"], n, upper=True) <= 0.1 * m["pair_base_asr"]
    assert _wilson(m["pair_complement_asr"], n, upper=False) >= 0.9 * m["pair_base_asr"]
    assert m["pair_clean_acc"] >= 0.9 * m["pair_base_clean_acc"]
    ranked = sorted(circuit.scores, key=lambda c: -circuit.scores[c])
    positions = [ranked.index(c) for c in circuit.components]
    assert positions == sorted(positions) and positions[0] == 0  # a walk down the ranking, from the top
    assert set(circuit.details) == {"trigger_share", "clean_share"} and "threshold=0.9" in circuit.rule
    assert all(circuit.scores[c] == pytest.approx(
        circuit.details["trigger_share"][c] - circuit.details["clean_share"][c]) for c in circuit.components)
    assert circuit.hooks[circuit.components[0]].startswith("blocks.")
    whole = select_circuit(model, cfg, get_task(task_cfg), pairs, threshold=0.9, neurons=False)
    assert not any(".N" in c for c in whole.components) and "neurons" not in whole.rule
