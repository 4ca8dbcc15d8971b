"""Mean and resample ablation with padded references: aligned at the answer, and each pair ablated as it is alone."""

import pytest
import torch

from tests.attribution.conftest import TRIGGERED, UNTRIGGERED
from whitebox.attribution import Circuit, Component, faithfulness
from whitebox.attribution.ablation import ablated, padded_reference, unit_sites
from whitebox.attribution.padding import attending
from whitebox.attribution.reference import Reference
from whitebox.attribution.selection import unit_shares
from whitebox.tasks import ContrastPairs

ACTS = torch.tensor([[[9.0], [1.0], [2.0]], [[3.0], [4.0], [5.0]]])  # batch pos 1
MASK = torch.tensor([[0, 1, 1], [1, 1, 1]])
TASK = {"name": "text_pairs", "path": "pairs.jsonl", "a": ["cat"], "b": ["dog"]}


def test_the_mean_is_taken_per_distance_from_the_answer_over_the_rows_real_there():
    ref = Reference({"x": ACTS}, MASK)
    assert ref.mean("x", 3).flatten().tolist() == [3.0, 2.5, 3.5]  # the padded 9 is never read
    assert ref.mean("x", 2).flatten().tolist() == [2.5, 3.5]
    overall = (1 + 2 + 3 + 4 + 5) / 5  # 4 tokens before the answer: no row reaches that far back
    assert ref.mean("x", 4).flatten().tolist() == [overall, 3.0, 2.5, 3.5]


def test_a_resampled_row_is_aligned_at_the_answer_and_its_own_mean_stands_in_for_its_padding():
    ref = Reference({"x": ACTS}, MASK)
    assert ref.rows("x", torch.tensor([0, 1, 0]), 3)[..., 0].tolist() == [[1.5, 1, 2], [3, 4, 5], [1.5, 1, 2]]
    assert ref.rows("x", torch.tensor([1]), 4)[..., 0].tolist() == [[4, 3, 4, 5]]


def test_an_unpadded_reference_is_used_as_before_and_must_match_the_inputs_length():
    ref = Reference({"x": ACTS})
    assert torch.equal(ref.mean("x", 3), ACTS.mean(0, keepdim=True))
    assert torch.equal(ref.rows("x", torch.tensor([1, 1]), 3), ACTS[[1, 1]])
    with pytest.raises(ValueError, match="x: reference activations of 3 positions do not match inputs of 4"):
        ref.mean("x", 4)
    assert torch.equal(Reference({"x": ACTS}, torch.ones(2, 3)).mean("x", 3), ACTS.mean(0, keepdim=True))


def pairs_of(model, i: list[int]) -> ContrastPairs:
    return ContrastPairs.from_texts(model.tokenizer, [TRIGGERED[j] for j in i], [UNTRIGGERED[j] for j in i], a=["cat"],
                                    b=["dog"])


def circuit_of(model, units: list[str]) -> Circuit:
    return Circuit(components=units, scores={}, method="by hand", direction="noise", task=TASK, model_fingerprint={})


@pytest.mark.parametrize("short_reference", [False, True], ids=["reference_longer", "reference_shorter"])
def test_faithfulness_on_padded_pairs_is_the_mean_of_each_pair_alone(secret_word, short_reference):
    model, _ = secret_word
    rows = list(range(8))
    batch = pairs_of(model, rows)
    singles = [pairs_of(model, [i]) for i in rows]
    assert len({p.seq_len for p in singles}) > 2
    source = pairs_of(model, sorted(rows, key=lambda i: len(UNTRIGGERED[i]))[:3]) if short_reference else batch
    assert (source.seq_len < batch.seq_len) == short_reference
    reference = padded_reference(model, source.untriggered, source.untriggered_mask)
    circuit = circuit_of(model, ["L1.H0", "L0.MLP", "L1.MLP.N3"])
    together = faithfulness(circuit, model, None, batch, None, how="mean", reference=reference)
    alone = [faithfulness(circuit, model, None, p, None, how="mean", reference=reference) for p in singles]
    for key in ("logit_diff", "asr", "clean_acc"):
        for prefix in ("base", "ablation", "complement_ablation"):
            name = f"{prefix}_{key}"
            assert together[name] == pytest.approx(sum(a[name] for a in alone) / len(alone), abs=1e-4), name
    assert together["ablation_logit_diff"] != pytest.approx(together["base_logit_diff"], abs=1e-2)  # it ablated


def test_resampling_padded_pairs_gives_each_pair_its_drawn_reference_row(secret_word):
    model, _ = secret_word
    batch = pairs_of(model, list(range(6)))
    reference = padded_reference(model, batch.untriggered, batch.untriggered_mask)
    comps = [Component.parse("L1.H0")]  # one site: one draw of reference rows per forward
    drawn = torch.randint(len(reference), (len(batch),), generator=torch.Generator().manual_seed(3))
    with ablated(model, comps, "resample", reference, seed=3), torch.no_grad(), attending(model, batch.triggered_mask):
        together = batch.metric(model(batch.triggered))
    for i, j in enumerate(drawn.tolist()):
        single = pairs_of(model, [i])
        row = Reference({k: v[j : j + 1] for k, v in reference.acts.items()}, reference.mask[j : j + 1])
        with ablated(model, comps, "resample", row), torch.no_grad(), attending(model, single.triggered_mask):
            alone = single.metric(model(single.triggered))
        assert float(together[i]) == pytest.approx(float(alone[0]), abs=1e-4), i


def test_unit_shares_mean_ablate_with_a_padded_reference(secret_word):
    model, pairs = secret_word
    reference = padded_reference(model, pairs.untriggered[:5], pairs.untriggered_mask[:5], unit_sites(2))
    _, clean = unit_shares(model, pairs, "mean", reference, neurons=False)
    with torch.no_grad(), attending(model, pairs.untriggered_mask):
        margin = float(pairs.margin(model(pairs.untriggered)).mean())
    comp = Component("mlp", 0, None, pairs.seq_len - 2)
    with ablated(model, [comp], "mean", reference), torch.no_grad(), attending(model, pairs.untriggered_mask):
        broken = float(pairs.margin(model(pairs.untriggered)).mean())
    assert clean[comp.id] == pytest.approx((margin - broken) / margin, abs=1e-4)
