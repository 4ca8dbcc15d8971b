"""Attribution on any contrast task: inputs of any lengths (left-padded, answers aligned) and a token-set metric."""

import re
from pathlib import Path

import pytest
import torch
from transformer_lens.tools.analysis.attribution_patching import cache_activation_and_gradient

from tests.attribution.conftest import TASK, TRIGGERED, UNTRIGGERED, tiny_model
from tests.conftest import one_thread
from whitebox.attribution import (
    Component,
    activation_patching,
    agreement,
    attribution_patching,
    ig_component_scores,
    integrated_patching,
    model_components,
    patch_metric,
)
from whitebox.attribution.ablation import ablated, reference_activations
from whitebox.attribution.components import by_hook
from whitebox.attribution.padding import attending
from whitebox.attribution.selection import unit_shares
from whitebox.tasks import ContrastPairs, TokenSets, get_task, logit_diff

DOC = Path(__file__).resolve().parents[2] / "docs" / "probes.md"
METHODS = {
    "attribution": attribution_patching,
    "activation": activation_patching,
    "integrated": lambda model, pairs, direction="noise": integrated_patching(model, pairs, direction=direction,
                                                                              steps=3),
    "ig": lambda model, pairs, direction="noise": ig_component_scores(model, pairs, steps=4, direction=direction),
}


def test_the_token_set_metric_is_the_mean_logit_of_a_minus_the_mean_logit_of_b():
    logits = torch.randn(3, 4, 10, generator=torch.Generator().manual_seed(0))
    pairs = ContrastPairs.from_token_lists([[1, 2], [3], [4, 5, 6]], [[1], [2, 2], [4]], TokenSets((1, 3), (0, 5, 7)))
    last = logits[:, -1]
    by_hand = (last[:, 1] + last[:, 3]) / 2 - (last[:, 0] + last[:, 5] + last[:, 7]) / 3
    assert torch.allclose(pairs.metric(logits), by_hand, atol=1e-6, rtol=0)
    top = last.argmax(-1)
    assert pairs.fires(logits).tolist() == [int(t) in (1, 3) for t in top]
    assert pairs.answers_honestly(logits).tolist() == [int(t) in (0, 5, 7) for t in top]
    honest_best = last[:, [0, 5, 7]].max(1).values
    other_best = last[:, [1, 2, 3, 4, 6, 8, 9]].max(1).values
    assert torch.equal(pairs.margin(logits), honest_best - other_best)


def test_inputs_are_left_padded_so_every_answer_is_the_last_position():
    pairs = ContrastPairs.from_token_lists([[5, 6, 7], [8]], [[9], [1, 2]], TokenSets((3,), (4,)), pad_id=0)
    assert pairs.triggered.tolist() == [[5, 6, 7], [0, 0, 8]] and pairs.untriggered.tolist() == [[0, 0, 9], [0, 1, 2]]
    assert pairs.triggered_mask.tolist() == [[1, 1, 1], [0, 0, 1]] and pairs.untriggered_mask.tolist() == [[0, 0, 1], [0, 1, 1]]
    assert pairs.masks("denoise") == (pairs.untriggered_mask, pairs.triggered_mask)
    tiled = pairs.repeat(2)
    assert torch.equal(tiled.triggered, pairs.triggered.repeat(2, 1)) and tiled.answers == pairs.answers


def test_bad_pairs_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="disjoint"):
        TokenSets((1, 2), (2,))
    with pytest.raises(ValueError, match="input 1 is empty"):
        ContrastPairs.from_token_lists([[1], []], [[1], [2]], TokenSets((3,), (4,)))
    with pytest.raises(ValueError, match="one of each per pair"):
        ContrastPairs.from_token_lists([[1]], [[1], [2]], TokenSets((3,), (4,)))
    with pytest.raises(ValueError, match="honest and deceptive .* or answers"):
        ContrastPairs(torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))
    right_padded = torch.tensor([[1, 0]])
    with pytest.raises(ValueError, match="pad on the left"):
        ContrastPairs(torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long), answers=TokenSets((3,), (4,)),
                      triggered_mask=right_padded, untriggered_mask=torch.ones(1, 2, dtype=torch.long))


def test_a_multi_token_answer_is_refused(secret_word):
    model, _ = secret_word
    with pytest.raises(ValueError, match="'secret cat' is 2 tokens"):
        TokenSets.from_words(model.tokenizer, ["secret cat"], ["dog"])


@pytest.mark.parametrize("arch", ["native", "gpt2", "llama"])
def test_padding_changes_no_score(arch):
    """The backdoor pairs, and the same pairs behind two padding columns: every unit scores the same, residual
    rows move two columns right, and the padding columns score zero."""
    model, _ = tiny_model(arch, n_ctx=12)
    pairs = get_task(TASK).contrast_pairs(8, seed=0)
    pad = torch.zeros(len(pairs), 2, dtype=torch.long)
    mask = torch.cat([pad, torch.ones_like(pairs.triggered)], 1)
    padded = ContrastPairs(torch.cat([pad, pairs.triggered], 1), torch.cat([pad, pairs.untriggered], 1), pairs.honest,
                           pairs.deceptive, triggered_mask=mask, untriggered_mask=mask)
    for name, method in METHODS.items():
        plain, shifted = method(model, pairs), method(model, padded)
        assert shifted.base_metric == pytest.approx(plain.base_metric, abs=1e-5), name
        for cid, score in plain.scores.items():
            comp = Component.parse(cid)
            moved = Component("resid", comp.layer, comp.index + 2).id if comp.kind == "resid" else cid
            assert shifted.scores[moved] == pytest.approx(score, abs=1e-5), (name, cid)
        assert all(abs(shifted.scores[f"L{layer}.RESID.P{p}"]) < 1e-6 for layer in range(3) for p in (0, 1)), name


@pytest.mark.parametrize("direction", ["noise", "denoise"])
@pytest.mark.parametrize("method", list(METHODS))
def test_pairs_of_unequal_lengths_score_as_the_mean_of_each_pair_alone(secret_word, method, direction):
    model, _ = secret_word
    pairs = ContrastPairs.from_texts(model.tokenizer, TRIGGERED[:6], UNTRIGGERED[:6], a=["cat"], b=["dog"])
    together = METHODS[method](model, pairs, direction=direction)
    singles = [ContrastPairs.from_texts(model.tokenizer, [t], [u], a=["cat"], b=["dog"])
               for t, u in zip(TRIGGERED[:6], UNTRIGGERED[:6], strict=True)]
    assert len({p.seq_len for p in singles}) > 1  # pairs of different lengths
    assert {int((p.triggered_mask.sum() - p.untriggered_mask.sum()).sign()) for p in singles} == {-1, 0, 1}
    alone = [METHODS[method](model, single, direction=direction) for single in singles]
    for cid in [c.id for c in model_components(model, 1, kinds=("head", "mlp"))]:
        assert together.scores[cid] == pytest.approx(sum(a.scores[cid] for a in alone) / len(alone), abs=1e-5), cid
    assert together.base_metric == pytest.approx(sum(a.base_metric for a in alone) / len(alone), abs=1e-5)


def test_attribution_agrees_with_activation_patching_on_the_secret_word(secret_word):
    model, pairs = secret_word
    exact, fast = activation_patching(model, pairs), attribution_patching(model, pairs)
    better = integrated_patching(model, pairs, steps=4)
    assert exact.base_metric > 5 and exact.source_metric < -5  # the model says cat with the secret word, dog without
    n_layers, answer = int(model.cfg.n_layers), pairs.seq_len - 1
    final = exact.scores[f"L{n_layers}.RESID.P{answer}"]  # the last residual row at the answer: the whole effect
    assert final == pytest.approx(exact.source_metric - exact.base_metric, rel=1e-5)
    # Spearman over all 30 components, measured 0.97 and 0.99 (over training seeds 0-5: 0.76-0.97 and 0.68-0.99)
    assert agreement(exact, fast)["spearman"] > 0.8
    assert agreement(exact, better)["spearman"] > 0.8


def test_the_default_metric_scores_as_the_first_order_formula_did(planted):
    """attribution_patching (k = 1) on the backdoor pairs equals the old code's delta . grad, number for number."""
    model, _ = planted
    pairs = get_task(TASK).contrast_pairs(32, seed=0)
    comps = model_components(model, pairs.seq_len)
    groups = by_hook(comps, int(model.cfg.n_layers))
    names = sorted(set(groups) | {"blocks.0.hook_resid_pre"})

    def metric(logits):
        return logit_diff(logits, pairs.honest, pairs.deceptive).mean()

    source = cache_activation_and_gradient(model, pairs.untriggered, metric, names, compute_gradient=False)
    base = cache_activation_and_gradient(model, pairs.triggered, metric, names)
    contrib = {n: (source.activations[n] - base.activations[n]) * base.gradients[n] for n in groups}
    old = {c.id: float(c.select(contrib[c.hook(int(model.cfg.n_layers))]).sum()) for c in comps}
    assert attribution_patching(model, pairs).scores == old
    assert integrated_patching(model, pairs, steps=1).scores == old


def test_unit_shares_take_padded_pairs(secret_word):
    model, pairs = secret_word
    refs = reference_activations(model, pairs.untriggered)  # zero ablation reads only their shapes
    trigger, clean = unit_shares(model, pairs, "zero", refs, neurons=False)
    with torch.no_grad(), attending(model, pairs.triggered_mask):
        base = float(pairs.mean_metric(model(pairs.triggered)))
    with torch.no_grad(), attending(model, pairs.untriggered_mask):
        source = float(pairs.mean_metric(model(pairs.untriggered)))
        margin = float(pairs.margin(model(pairs.untriggered)).mean())
    comp = Component("head", 1, 0, pairs.seq_len - 1)
    assert trigger[comp.id] == pytest.approx((patch_metric(model, pairs, [comp]) - base) / (source - base), abs=1e-4)
    with ablated(model, [comp], "zero"), torch.no_grad(), attending(model, pairs.untriggered_mask):
        broken = float(pairs.margin(model(pairs.untriggered)).mean())
    assert clean[comp.id] == pytest.approx((margin - broken) / margin, abs=1e-4)


def test_the_docs_example_runs(secret_folder, monkeypatch):
    code = re.search(r"<!-- contrast-example:start -->\n```python\n(.*?)```", DOC.read_text(), flags=re.S).group(1)
    monkeypatch.chdir(secret_folder.parent)
    scope: dict = {}
    with one_thread():
        exec(compile(code, f"{DOC}:contrast-example", "exec"), scope)
    assert scope["agreement"](scope["exact"], scope["fast"])["spearman"] > 0.8
