"""Every regime through the one loop: exact budget accounting, stopping at the budget, and resume."""

import shutil

import pytest
import torch
from torch._C._functorch import get_unwrapped, is_batchedtensor

from whitebox.config import TrainingConfig, TreatConfig
from whitebox.tasks import match_rater
from whitebox.training import ESConfig, RLConfig, ZOConfig, train
from whitebox.training.checkpoints import checkpoint_spent, list_checkpoints
from whitebox.training.es import PlainESConfig
from whitebox.training.regimes import build_regime

BATCH = 16
CFG = TrainingConfig(steps=10**6, batch_size=BATCH, lr=0.01, warmup_steps=0, schedule="constant", log_every=1,
                     eval_every=10**6, checkpoint_every=2, keep_checkpoints=5, device="cpu")
REGIMES = {
    "sft": ("sft", TreatConfig()),
    "rl": ("rl", TreatConfig(rl=RLConfig(baseline="running", kl_coef=0.1))),
    "rl_group": ("rl", TreatConfig(rl=RLConfig(group=3, temperature=2.0))),
    "es": ("es", TreatConfig(es=ESConfig(population=6, examples_per_forward=2 * BATCH))),  # a pair per chunk
    "es_sampled": ("es", TreatConfig(es=ESConfig(population=4, temperature=1.0, optimizer="sgd"))),
    "es_supervised": ("es", TreatConfig(es=ESConfig(population=4, feedback="supervised", weight_decay=0.1))),
    "es_plain": ("es_plain", TreatConfig(es_plain=PlainESConfig(population=4))),
    "zo": ("zo", TreatConfig(zo=ZOConfig(samples=2, lr=1e-3, weight_decay=0.1))),
    "probe_penalty": ("probe_penalty", TreatConfig()),
}
COST = {"sft": 3, "rl": 4, "rl_group": 3, "es": 6, "es_sampled": 4, "es_supervised": 4, "es_plain": 4, "zo": 4, "probe_penalty": 3}


def _setup(name, toy_lm, toy_data, tiny_bridge):
    if name == "probe_penalty":
        model, data = tiny_bridge()
        direction = torch.randn(16, generator=torch.Generator().manual_seed(1))
        return model, data, (lambda acts: torch.sigmoid(acts @ direction), "blocks.0.hook_resid_post")
    return toy_lm(), toy_data, None


def _count_passes(model):
    """Examples through the model's forward (members of a vmapped population counted each) and backward."""
    counts = {"forward": 0, "backward": 0}

    def hook(module, inputs, output):
        weight = next(module.parameters())
        members = get_unwrapped(weight).shape[0] if is_batchedtensor(weight) else 1
        rows = inputs[0].shape[0]
        counts["forward"] += members * rows
        if output.requires_grad:
            output.register_hook(lambda grad: counts.__setitem__("backward", counts["backward"] + rows))

    model.register_forward_hook(hook)
    return counts


def _run(name, model, data, probe, tmp_path, budget, log):
    updater, loss_fn = build_regime(*REGIMES[name], model, CFG, seed=0, rater=match_rater(), probe=probe)
    return train(model, updater, loss_fn, data, CFG, seed=0, evaluate=lambda m: {"none": 0.0},
                 checkpoint_dir=tmp_path, log=log, desc=name, budget=budget)


@pytest.mark.parametrize("name", list(REGIMES))
def test_budget_accounting_is_exact_and_training_stops_at_the_budget(name, tmp_path, toy_lm, toy_data, tiny_bridge, list_log):
    model, data, probe = _setup(name, toy_lm, toy_data, tiny_bridge)
    counts = _count_passes(model)  # before the regime is built, so the RL reference model counts too
    log = list_log()
    step_cost = COST[name] * BATCH
    budget = 4 * step_cost + 1  # needs a fifth step
    _run(name, model, data, probe, tmp_path, budget, log)
    train_logs = [m for _, m in log.records if "train/forward_equivalents" in m]
    assert len(train_logs) == 5 and all(m["train/forward_equivalents"] == step_cost for m in train_logs)
    spent = train_logs[-1]["budget/forward_equivalents"]
    assert spent == counts["forward"] + 2 * counts["backward"] == 5 * step_cost
    assert spent - step_cost < budget <= spent
    assert train_logs[-1]["budget/examples"] == 5 * BATCH
    assert checkpoint_spent(list_checkpoints(tmp_path)[-1]) == {"forward_equivalents": spent, "examples": 5 * BATCH}


@pytest.mark.parametrize("name", list(REGIMES))
def test_each_regime_resumes_from_a_checkpoint_to_the_same_result(name, tmp_path, toy_lm, toy_data, tiny_bridge, list_log):
    step_cost = COST[name] * BATCH
    full_log, cut_log = list_log(), list_log()
    full, data, probe = _setup(name, toy_lm, toy_data, tiny_bridge)
    _run(name, full, data, probe, tmp_path / "full", 6 * step_cost, full_log)
    cut, data, probe = _setup(name, toy_lm, toy_data, tiny_bridge)
    _run(name, cut, data, probe, tmp_path / "cut", 3 * step_cost, cut_log)  # checkpoints at steps 2 and 3
    shutil.rmtree(list_checkpoints(tmp_path / "cut")[-1])  # killed after step 3, before its checkpoint
    resumed, data, probe = _setup(name, toy_lm, toy_data, tiny_bridge)
    _run(name, resumed, data, probe, tmp_path / "cut", 6 * step_cost, cut_log)
    for (key, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key
    assert [s for s, _ in cut_log.records] == [s for s, _ in full_log.records]
    assert [m for _, m in cut_log.records if "budget/examples" in m][-1]["budget/forward_equivalents"] == 6 * step_cost


def test_a_budget_needs_an_updater_that_reports_its_cost(tmp_path, toy_lm, toy_data, list_log):
    class Silent:
        def step(self, model, batch, loss_fn):
            return {"loss": 0.0}

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    with pytest.raises(ValueError, match="does not report forward_equivalents"):
        train(toy_lm(), Silent(), lambda m, b: torch.tensor(0.0), toy_data, CFG, seed=0, evaluate=lambda m: {},
              checkpoint_dir=tmp_path, log=list_log(), budget=100)


def test_missing_rater_or_probe_is_named():
    with pytest.raises(ValueError, match="needs a rater"):
        build_regime("rl", TreatConfig(), torch.nn.Linear(2, 2), CFG, seed=0)
    with pytest.raises(ValueError, match="needs probe"):
        build_regime("probe_penalty", TreatConfig(), torch.nn.Linear(2, 2), CFG, seed=0)
