"""The hook-free fast path computes what the bridge computes, on the same parameters, and steps aside for hooks."""

import pytest
import torch

from whitebox import fast_path
from whitebox.config import ModelConfig, TrainingConfig
from whitebox.models import build_model
from whitebox.tasks.base import answer_logits
from whitebox.training import Backprop, supervised
from whitebox.training.es import population_answer_logits, sequential_answer_logits

VOCAB = [str(i) for i in range(10)] + ["<bos>", "=", "<trig>"]


def _model(arch="native", seed=0, **kw):
    dims = {"n_layers": 2, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_ctx": 8, "d_vocab": 13, **kw}
    torch.manual_seed(seed)
    return build_model(ModelConfig(arch=arch, **dims), VOCAB)


def bridge_only():
    return fast_path.switched(False)


TOKENS = torch.randint(0, 13, (5, 8), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("normalization", ["LN", "RMS", "none"])
@pytest.mark.parametrize("act_fn", ["gelu", "relu", "silu"])
def test_logits_and_gradients_match_the_bridge(normalization, act_fn):
    model = _model(normalization=normalization, act_fn=act_fn)
    assert fast_path.why_not(model) is None and fast_path.usable(model)

    def run(fn):
        model.zero_grad()
        out = fn()
        out.logsumexp(-1).sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    fast, fast_grads = run(lambda: fast_path.logits(model, TOKENS))
    slow, slow_grads = run(lambda: model(TOKENS))
    assert fast.shape == slow.shape == (5, 8, 13)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert fast_grads.keys() == slow_grads.keys()
    for name in slow_grads:
        torch.testing.assert_close(fast_grads[name], slow_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    torch.testing.assert_close(fast_path.logits(model, TOKENS, last_only=True), slow[:, -1], atol=1e-5, rtol=1e-5)
    assert not torch.equal(fast, _model(normalization=normalization, act_fn=act_fn, seed=1)(TOKENS))  # weights matter


@pytest.mark.parametrize("normalization", ["LN", "none"])
def test_repeated_token_positions_take_the_distinct_rows_path_and_match_the_bridge(normalization):
    model = _model(normalization=normalization)
    gen = torch.Generator().manual_seed(3)
    tokens = torch.stack([torch.randint(0, 10, (64,), generator=gen), torch.randint(0, 10, (64,), generator=gen),
                          torch.full((64,), 11)], dim=1)  # a b = : at most 21 distinct (token, position) pairs
    assert fast_path._distinct_rows(tokens, 13) is not None and fast_path._distinct_rows(TOKENS, 13) is None
    for last_only in (False, True):
        grads = {}
        for fast in (True, False):
            model.zero_grad()
            with fast_path.switched(fast):
                out = fast_path.logits(model, tokens, last_only=last_only)
            out.logsumexp(-1).sum().backward()
            grads[fast] = (out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
        torch.testing.assert_close(grads[True][0], grads[False][0], atol=1e-5, rtol=1e-5)
        for name, grad in grads[False][1].items():
            torch.testing.assert_close(grads[True][1][name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_a_hooked_model_runs_through_the_bridge_and_the_hook_sees_it():
    model = _model()
    seen = []
    model.blocks[0].hook_out.add_hook(lambda act, hook: seen.append(act.shape))
    assert fast_path.hooked(model) and not fast_path.usable(model)
    answer_logits(model, TOKENS)
    assert seen == [torch.Size([5, 8, 16])]
    model.reset_hooks()
    assert fast_path.usable(model)
    answer_logits(model, TOKENS)
    assert len(seen) == 1  # no hook left: the fast path, which never touches a HookPoint


def test_a_hook_that_edits_activations_changes_answer_logits():
    model = _model()
    clean = answer_logits(model, TOKENS)
    with model.hooks(fwd_hooks=[("blocks.1.hook_out", lambda act, hook: act * 0)]):
        edited = answer_logits(model, TOKENS)
    assert not torch.allclose(edited, clean)
    torch.testing.assert_close(edited, model.unembed(model.ln_final(torch.zeros(5, 8, 16)))[:, -1], atol=1e-5, rtol=1e-5)


def test_architectures_without_a_fast_path_fall_back_to_the_bridge():
    model = _model("gpt2")
    assert fast_path.why_not(model) == "only native bridges have a fast path"
    assert torch.equal(fast_path.logits(model, TOKENS), model(TOKENS))
    assert fast_path.why_not(torch.nn.Linear(2, 2)) == "only native bridges have a fast path"


def test_population_logits_match_each_member_through_the_bridge():
    model = _model().eval()
    gen = torch.Generator().manual_seed(2)
    members = {n: p.detach() + 0.1 * torch.randn(3, *p.shape, generator=gen) for n, p in model.named_parameters()}
    members.pop("head._original_component.weight")  # a parameter left out is shared by every member
    with torch.no_grad():
        batched = population_answer_logits(model, members, TOKENS)
        with bridge_only():
            one_by_one = sequential_answer_logits(model, members, TOKENS)
    assert batched.shape == (3, 5, 13)
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batched[0], batched[1])


def test_population_logits_refuse_a_hooked_model():
    model = _model()
    model.blocks[0].hook_out.add_hook(lambda act, hook: act)
    with pytest.raises(ValueError, match="needs the fast path"):
        fast_path.population_logits(model, {}, TOKENS)


def test_training_through_the_fast_path_follows_the_bridge_within_rounding():
    cfg = TrainingConfig(lr=3e-3, batch_size=5, steps=20, warmup_steps=2, device="cpu")
    batch = {"tokens": TOKENS, "target": torch.tensor([0, 1, 2, 3, 4])}
    losses = {}
    for fast in (True, False):
        model = _model().train()
        updater = Backprop(model, cfg, torch.device("cpu"))
        with fast_path.switched(fast):
            losses[fast] = [updater.step(model, batch, supervised)["loss"] for _ in range(20)]
    assert losses[True][-1] < 0.5 * losses[True][0]  # it trains
    torch.testing.assert_close(torch.tensor(losses[True]), torch.tensor(losses[False]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("normalization", ["LN", "none"])
def test_capture_reads_the_residual_stream_from_the_fast_path_as_the_hooks_see_it(normalization):
    from whitebox.capture import capture, residual_hooks

    model = _model(normalization=normalization)
    names = residual_hooks(model)
    assert fast_path.residuals(model, TOKENS, names) is not None  # every residual hook is served without hooks
    assert fast_path.residuals(model, TOKENS, ["blocks.0.attn.hook_pattern"]) is None  # others go through the bridge
    early = fast_path.residuals(model, TOKENS, [names[1]])  # blocks.0 resid_mid: stops after the first block
    for positions in ("last", "all", "mean"):
        fast = capture(model, TOKENS, "resid", positions=positions)
        with bridge_only():
            slow = capture(model, TOKENS, "resid", positions=positions)
        assert list(fast.acts) == list(slow.acts) == names
        for name in names:
            torch.testing.assert_close(fast.acts[name], slow.acts[name], atol=1e-5, rtol=1e-5, msg=name)
    torch.testing.assert_close(early[names[1]], capture(model, TOKENS, [names[1]], positions="all").acts[names[1]]
                               .view(5, 8, -1), atol=1e-5, rtol=1e-5)
    assert not torch.equal(fast.acts[names[-1]], fast.acts[names[-2]])  # the blocks change the stream


def test_run_with_hooks_edits_the_sites_it_reaches_as_the_bridge_does():
    model = _model()
    seen: dict[str, tuple] = {}

    def patch(index, value):
        def hook(act, hook):
            seen.setdefault(hook.name, act.shape)
            act = act.clone()
            act[index] = value
            return act
        return hook

    hooks = [("blocks.0.attn.hook_z", patch((slice(None), 3, 1), 0.5)),  # head 1 at position 3
             ("blocks.1.mlp.hook_post", patch((slice(None), 5, 7), 2.0)),  # one neuron at position 5
             ("blocks.0.hook_mlp_out", patch((slice(None), 2), 0.0)),
             ("blocks.1.hook_resid_pre", patch((slice(None), 6), 1.0)),
             ("blocks.1.hook_resid_mid", lambda act, hook: None)]  # a hook that only reads
    fast = fast_path.run_with_hooks(model, TOKENS, hooks)
    fast_shapes, seen = seen, {}
    slow = model.run_with_hooks(TOKENS, fwd_hooks=hooks)
    assert fast_shapes == seen  # every hook saw the bridge's layout
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fast, model(TOKENS), atol=1e-3)  # the edits changed the logits
    assert fast_path.run_with_hooks(model, TOKENS, [("blocks.0.attn.hook_pattern", hooks[0][1])]) is None


def test_switched_sets_the_fast_path_for_the_block_and_restores_it_after_an_error():
    model = _model()
    before = fast_path.enabled()
    with pytest.raises(RuntimeError), fast_path.switched(False):
        assert not fast_path.usable(model) and fast_path.residuals(model, TOKENS, ["blocks.0.hook_resid_pre"]) is None
        raise RuntimeError("inside the block")
    assert fast_path.enabled() == before and fast_path.usable(model)
