"""Activation and gradient capture: positions, aliases, chunking, on-disk output, gradients."""

import numpy as np
import pytest
import torch

from whitebox.capture import capture, load_capture, residual_hooks, resolve_hooks
from whitebox.config import ModelConfig
from whitebox.models import build_model
from whitebox.runtime.artifacts import ArtifactError
from whitebox.tasks import get_task
from whitebox.tasks.backdoor import BackdoorTaskConfig

TASK = BackdoorTaskConfig(seq_len=4, n_values=10, trigger_rate=0.5, n_train=37, n_eval=16)
HOOKS = ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_mid", "blocks.1.hook_resid_post", "blocks.0.mlp.hook_post"]
CANONICAL = ["blocks.0.hook_in", "blocks.0.ln2.hook_in", "blocks.1.hook_out", "blocks.0.mlp.out.hook_in"]


def _bridge(arch: str):
    vocab = get_task(TASK).vocabulary()
    cfg = ModelConfig(arch=arch, n_layers=2, d_model=16, n_heads=2, d_mlp=24, d_vocab=len(vocab), n_ctx=get_task(TASK).seq_len())
    torch.manual_seed(0)
    return build_model(cfg, vocab).eval(), cfg


@pytest.fixture(scope="module", params=["native", "gpt2", "llama"])
def bridge(request):
    return _bridge(request.param)


@pytest.fixture(scope="module")
def data():
    return get_task(TASK).train_set(0)


def _reference(model, tokens):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    return {canon: cache[canon] for canon in CANONICAL}  # batch pos d


def test_aliases_resolve_to_canonical_names(bridge):
    model, _ = bridge
    assert resolve_hooks(model, HOOKS + ["blocks.0.hook_in"]) == CANONICAL  # the duplicate alias is merged
    assert residual_hooks(model) == ["blocks.0.hook_in", "blocks.0.ln2.hook_in", "blocks.0.hook_out",
                                     "blocks.1.ln2.hook_in", "blocks.1.hook_out"]
    with pytest.raises(ValueError, match=r"blocks\.0\.hook_resid_psot: no such hook on this model; did you mean blocks\.0\.hook_resid_post"):
        resolve_hooks(model, ["blocks.0.hook_resid_psot"])


@pytest.mark.parametrize("positions", ["last", "all", 2, -3, "mask"])
def test_positions_select_the_right_rows(bridge, data, positions):
    model, _ = bridge
    tokens = data.with_format("torch")[:]["tokens"]  # n pos
    n, seq = tokens.shape
    mask = torch.rand(n, seq, generator=torch.Generator().manual_seed(0)) < 0.4
    rule = mask if positions == "mask" else positions
    got = capture(model, data, HOOKS, positions=rule, labels="triggered", batch_size=10)
    ref = _reference(model, tokens)
    selected = {"last": torch.zeros(n, seq, dtype=torch.bool).index_fill_(1, torch.tensor([seq - 1]), True),
                "all": torch.ones(n, seq, dtype=torch.bool), 2: None, -3: None, "mask": mask}[positions]
    if selected is None:
        selected = torch.zeros(n, seq, dtype=torch.bool)
        selected[:, positions] = True
    assert got.hooks == CANONICAL and got.positions == ("mask" if positions == "mask" else positions)
    example, position = selected.nonzero(as_tuple=True)
    assert torch.equal(got.example, example) and torch.equal(got.position, position)
    labels = data.with_format("torch")[:]["triggered"]
    assert torch.equal(got.labels, labels[example])
    for hook in CANONICAL:
        torch.testing.assert_close(got.acts[hook], ref[hook][selected], rtol=1e-5, atol=1e-6)


def test_chunked_equals_one_shot_and_disk_equals_memory(bridge, data, tmp_path):
    model, cfg = bridge
    one_shot = capture(model, data, "resid", positions="all", labels="triggered", batch_size=len(data), cfg=cfg)
    chunked = capture(model, data, "resid", positions="all", labels="triggered", batch_size=6, cfg=cfg)
    on_disk = capture(model, data, "resid", positions="all", labels="triggered", batch_size=6, cfg=cfg,
                      out_dir=tmp_path / "cap")
    for hook in one_shot.hooks:
        torch.testing.assert_close(chunked.acts[hook], one_shot.acts[hook], rtol=1e-6, atol=1e-6)
        assert torch.equal(on_disk.acts[hook], chunked.acts[hook])
    assert torch.equal(on_disk.labels, chunked.labels) and torch.equal(on_disk.example, chunked.example)
    assert on_disk.model == chunked.model and on_disk.model["fingerprint"]
    reopened = load_capture(tmp_path / "cap")
    assert reopened.hooks == one_shot.hooks and reopened.positions == "all"
    assert torch.equal(reopened.acts[one_shot.hooks[-1]], chunked.acts[one_shot.hooks[-1]])
    assert isinstance(np.load(tmp_path / "cap" / f"acts.{one_shot.hooks[0]}.npy", mmap_mode="r"), np.memmap)


def test_an_unfinished_capture_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match=r"cap/capture\.json: file not found"):
        load_capture(tmp_path / "cap")


def _answer_logprob(logits, batch):
    return torch.log_softmax(logits[:, -1].float(), -1).gather(1, batch["target"][:, None])[:, 0]  # batch


def test_gradients_match_autograd(bridge, data):
    model, _ = bridge
    got = capture(model, data, HOOKS, positions="all", batch_size=8, grad_fn=_answer_logprob)
    rows = data.with_format("torch")[:]
    seen = {}

    def keep(act, hook):
        seen[hook.name] = act
        return act

    with model.hooks(fwd_hooks=[(h, keep) for h in HOOKS]):
        logits = model(rows["tokens"])
    grads = torch.autograd.grad(_answer_logprob(logits, rows).sum(), [seen[h] for h in CANONICAL])
    for hook, ref in zip(CANONICAL, grads):
        torch.testing.assert_close(got.grads[hook], ref.reshape(-1, ref.shape[-1]), rtol=1e-4, atol=1e-6)
    assert float(got.grads["blocks.0.hook_in"].abs().sum()) > 0
    assert all(p.grad is None for p in model.parameters())  # capture never accumulates parameter grads


def test_gradients_on_disk_and_tensor_input(data, tmp_path):
    model, _ = _bridge("native")
    tokens = data.with_format("torch")[:]["tokens"]
    labels = torch.arange(len(tokens)) % 2

    def top_logit(logits, batch):
        return logits[:, -1].max(-1).values

    mem = capture(model, tokens, ["blocks.1.hook_out"], labels=labels, grad_fn=top_logit, batch_size=5)
    disk = capture(model, tokens, ["blocks.1.hook_out"], labels=labels, grad_fn=top_logit, batch_size=5,
                   out_dir=tmp_path / "g")
    assert torch.equal(disk.grads["blocks.1.hook_out"], mem.grads["blocks.1.hook_out"])
    assert torch.equal(mem.labels, labels) and mem.grads["blocks.1.hook_out"].shape == (len(tokens), 16)


def test_bad_arguments(data):
    model, _ = _bridge("native")
    with pytest.raises(ValueError, match=r"position 99 lies outside some input \(lengths 8-8\)"):
        capture(model, data, ["blocks.0.hook_in"], positions=99)
    with pytest.raises(ValueError, match=r"positions must be 'last', 'all', 'mean', an index, \{'match': text\} or a bool mask"):
        capture(model, data, ["blocks.0.hook_in"], positions="first")
    with pytest.raises(ValueError, match="labels='nope': not a column"):
        capture(model, data, ["blocks.0.hook_in"], labels="nope")
    with pytest.raises(ValueError, match=r"bool of shape \[37, 8\]"):
        capture(model, data, ["blocks.0.hook_in"], positions=torch.ones(3, 3, dtype=torch.bool))
    model.train()
    capture(model, data, ["blocks.0.hook_in"])
    assert model.training  # the caller's mode comes back


TEXTS = ["1 2 3 4 5 =", "7 =", "9 8 7 6 5 4 =", "3 3 ="]  # the tokenizer prepends <bos>; n_ctx is 8


def test_strings_of_different_lengths_read_each_input_as_if_alone(bridge):
    """Right padding: the last real token, every real token and their mean equal the input run on its own."""
    model, _ = bridge
    hooks = ["blocks.1.hook_out"]
    last, every, mean = (capture(model, TEXTS, hooks, positions=rule, labels=[0, 1, 0, 1]) for rule in ("last", "all", "mean"))
    lengths = [len(t.split()) + 1 for t in TEXTS]
    assert every.acts["blocks.1.hook_out"].shape[0] == sum(lengths) and mean.positions == "mean"
    assert torch.equal(last.position, torch.tensor(lengths) - 1) and torch.equal(mean.position, torch.full((4,), -1))
    for i, text in enumerate(TEXTS):
        alone = capture(model, model.tokenizer([text], return_tensors="pt")["input_ids"], hooks, positions="all")
        solo = alone.acts["blocks.1.hook_out"]  # lengths[i] d
        assert torch.allclose(last.acts["blocks.1.hook_out"][i], solo[-1], atol=1e-5)
        assert torch.allclose(every.acts["blocks.1.hook_out"][every.example == i], solo, atol=1e-5)
        assert torch.allclose(mean.acts["blocks.1.hook_out"][i], solo.mean(0), atol=1e-5)
    assert last.labels.tolist() == [0, 1, 0, 1]


def test_token_lists_and_an_attention_mask_are_the_same_inputs_as_strings(bridge):
    model, _ = bridge
    ids = [model.tokenizer(t)["input_ids"] for t in TEXTS]
    from_lists = capture(model, ids, ["blocks.0.hook_out"], positions=-2)
    padded = torch.nn.utils.rnn.pad_sequence([torch.tensor(x) for x in ids], batch_first=True)
    real = torch.arange(padded.shape[1])[None] < torch.tensor([len(x) for x in ids])[:, None]
    from_mask = capture(model, padded, ["blocks.0.hook_out"], positions=-2, attention_mask=real)
    assert torch.equal(from_lists.acts["blocks.0.hook_out"], from_mask.acts["blocks.0.hook_out"])
    assert torch.equal(from_lists.position, torch.tensor([len(x) - 2 for x in ids]))
    with pytest.raises(ValueError, match="padding on the right"):
        capture(model, padded, ["blocks.0.hook_out"], attention_mask=real.flip(1))
    with pytest.raises(ValueError, match="non-empty list of strings"):
        capture(model, [], ["blocks.0.hook_out"])
