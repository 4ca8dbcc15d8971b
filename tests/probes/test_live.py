"""Probes attached to live bridges: same scores as capture-then-score, and clear refusals."""

import contextlib

import pytest
import torch

from whitebox.capture import capture
from whitebox.probes import ProbeError, fit_probes, load_probe, model_identity


def _fitted(model, cfg, data, hook, tmp_path):
    train, _ = data
    captured = capture(model, train, [hook], labels="triggered", cfg=cfg)
    return load_probe(fit_probes(captured)[captured.hooks[0]].save(tmp_path / "probe"))


@pytest.mark.parametrize("arch", ["native", "gpt2"])
def test_live_scores_equal_offline_scores(arch, request, backdoor_data, tmp_path):
    model, cfg = request.getfixturevalue(arch)
    hook = "blocks.1.hook_resid_mid"  # an alias: the probe stores the canonical name
    probe = _fitted(model, cfg, backdoor_data, hook, tmp_path)
    assert probe.hook == "blocks.1.ln2.hook_in" and probe.model["arch"] == arch
    _, test = backdoor_data
    offline = probe.score(capture(model, test, [hook], batch_size=40).acts[probe.hook])
    tokens = test.with_format("torch")[:]["tokens"]
    with torch.no_grad(), probe.attach(model, cfg=cfg) as live:
        model(tokens[:50])
        model(tokens[50:])
    assert [s.shape for s in live.scores] == [(50,), (len(tokens) - 50,)]
    torch.testing.assert_close(torch.cat(live.scores), offline, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        model(tokens[:3])
    assert len(live.scores) == 2  # detached on exit


@pytest.mark.parametrize("arch", ["native", "gpt2"])
def test_scores_every_step_of_generation(arch, request, backdoor_data, tmp_path):
    model, cfg = request.getfixturevalue(arch)
    probe = _fitted(model, cfg, backdoor_data, "blocks.1.hook_resid_post", tmp_path)
    prompt = backdoor_data[1].with_format("torch")[:4]["tokens"]
    with probe.attach(model) as live:
        model.generate(prompt, max_new_tokens=3, do_sample=False, verbose=False)
    assert len(live.scores) == 3 and all(s.shape == (4,) for s in live.scores)
    with torch.no_grad():
        offline = probe.score(capture(model, prompt, [probe.hook]).acts[probe.hook])
    torch.testing.assert_close(live.scores[0], offline, rtol=1e-5, atol=1e-5)


def test_positions_all_and_gradients_through_live_scores(native, backdoor_data, tmp_path):
    model, cfg = native
    probe = _fitted(model, cfg, backdoor_data, "blocks.0.hook_resid_post", tmp_path)
    tokens = backdoor_data[1].with_format("torch")[:6]["tokens"]
    with probe.attach(model, positions="all", detach=False) as live:
        model(tokens)
    assert live.last.shape == tokens.shape and live.last.requires_grad
    live.last.sum().backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())
    model.zero_grad(set_to_none=True)


def test_missing_hook_and_wrong_width_are_clear_errors(native, backdoor_data, make_bridge, tmp_path):
    model, cfg = native
    probe = _fitted(model, cfg, backdoor_data, "blocks.1.hook_resid_post", tmp_path)
    deep = probe.__class__(**{**probe.__dict__, "hook": "blocks.5.hook_out"})
    with pytest.raises(ProbeError, match=r"probe at blocks\.5\.hook_out: hook blocks\.5\.hook_out: no such hook on this model"):
        with deep.attach(model):
            pass
    wide, _ = make_bridge("native", d_model=32)
    with pytest.warns(UserWarning, match="different model"), pytest.raises(
        ProbeError, match=r"field 'd_model' is 16 but the model's residual width at blocks\.1\.hook_out is 32"
    ):
        with probe.attach(wide, allow_fingerprint_mismatch=True):
            pass
    mlp = probe.__class__(**{**probe.__dict__, "hook": "blocks.0.mlp.hook_post"})  # 32 wide, not residual
    with pytest.raises(ProbeError, match=r"field 'd_model' is 16 but blocks\.0\.mlp\.out\.hook_in has width 32"):
        with torch.no_grad(), mlp.attach(model):
            model(backdoor_data[1].with_format("torch")[:2]["tokens"])


def test_refuses_a_model_with_another_fingerprint_unless_allowed(native, gpt2, backdoor_data, make_bridge, tmp_path):
    model, cfg = native
    probe = _fitted(model, cfg, backdoor_data, "blocks.1.hook_resid_post", tmp_path)
    with probe.attach(model, cfg=cfg), probe.attach(model):  # its own model, with or without the config
        pass
    same_shape, same_cfg = make_bridge("native", seed=7)  # other weights, same architecture: refused, both named
    for kwargs in ({"cfg": same_cfg}, {}):
        with pytest.raises(ProbeError, match=r"other weights \(fitted on weights [0-9a-f]{12}, applied to weights "
                                             r"[0-9a-f]{12}\).*allow_fingerprint_mismatch=True"):
            with probe.attach(same_shape, **kwargs):
                pass
    with pytest.warns(UserWarning, match="other weights"):
        with probe.attach(same_shape, allow_fingerprint_mismatch=True):
            pass
    other, _ = gpt2
    with pytest.raises(ProbeError, match=r"fitted on a different model: arch 'native' vs this model's 'gpt2'.*allow_fingerprint_mismatch=True"):
        with probe.attach(other):
            pass
    deeper, deeper_cfg = make_bridge("native", n_layers=3)
    with pytest.raises(ProbeError, match=r"model fingerprint differs"):
        with probe.attach(deeper, cfg=deeper_cfg):
            pass
    with pytest.raises(ProbeError, match=r"parameter names or shapes differ"):
        with probe.attach(deeper):
            pass
    with pytest.warns(UserWarning, match="fitted on a different model"):
        with torch.no_grad(), probe.attach(deeper, allow_fingerprint_mismatch=True) as live:
            deeper(backdoor_data[1].with_format("torch")[:2]["tokens"])
    assert live.last.shape == (2,)


def test_model_identity_without_cfg_matches_the_module(native):
    model, cfg = native
    with_cfg, without = model_identity(model, cfg), model_identity(model)
    assert with_cfg["params_sha256"] == without["params_sha256"] and without["fingerprint"] is None
    assert with_cfg["arch"] == without["arch"] == "native"


def test_a_probe_fitted_on_raw_arrays_attaches_with_a_width_check_only(native, gaussian):
    model, _ = native
    acts = {"blocks.0.hook_out": torch.randn(200, 16)}
    probe = fit_probes(acts, torch.arange(200) % 2)["blocks.0.hook_out"]
    assert probe.model is None
    with torch.no_grad(), probe.attach(model) as live:
        model(torch.zeros(2, 5, dtype=torch.long))
    assert live.last.shape == (2,)


def test_one_artifact_scores_raw_arrays_a_native_and_an_hf_bridge(native, gpt2, backdoor_data, tmp_path):
    model, cfg = native
    saved = _fitted(model, cfg, backdoor_data, "blocks.1.hook_resid_post", tmp_path).save(tmp_path / "shared")
    probe = load_probe(saved)
    test = backdoor_data[1]
    tokens = test.with_format("torch")[:8]["tokens"]
    for bridge, allow in ((model, False), (gpt2[0], True)):  # same hook names and width; gpt2 must be allowed
        acts = capture(bridge, tokens, [probe.hook]).acts[probe.hook]
        with pytest.warns(UserWarning) if allow else contextlib.nullcontext(), torch.no_grad():
            with probe.attach(bridge, allow_fingerprint_mismatch=allow) as live:
                bridge(tokens)
        torch.testing.assert_close(live.last, probe.score(acts), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.as_tensor(probe.score(acts.numpy())).float(), live.last, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_last_and_mean_read_real_tokens_of_a_padded_batch_on_the_bridge_and_the_hf_model(arch, tmp_path):
    from transformers import AutoModelForCausalLM

    from tests.test_own_model import save_tiny
    from whitebox.models import load_model

    folder = save_tiny(tmp_path / "m", arch, seed=0)
    bridge, _ = load_model(folder)
    texts = ["the secret is a cat", "a dog", "secret word", "is the dog a cat ? yes", "no"] * 8
    hook = "blocks.1.hook_out"
    probe = fit_probes(capture(bridge, texts, [hook], labels=["secret" in t for t in texts]), seed=0)[hook]
    assert float(probe.weight.norm()) > 0.1  # a probe that reads something, so a wrong position shows
    hf_model = AutoModelForCausalLM.from_pretrained(folder).eval()
    batch, tokenizer = texts[:5], bridge.tokenizer
    for model in (bridge, hf_model):
        for position in ("last", "mean"):
            with torch.no_grad(), probe.attach(model, positions=position) as live:
                for text in batch:
                    model(tokenizer(text, return_tensors="pt")["input_ids"])
            alone = torch.cat(live.scores)  # 5
            for side in ("right", "left"):
                tokenizer.padding_side = side
                enc = tokenizer(batch, return_tensors="pt", padding=True)
                positions = (enc["attention_mask"].cumsum(1) - 1).clamp(min=0)  # HF counts from the first real token
                with torch.no_grad(), probe.attach(model, positions=position) as live:
                    model(enc["input_ids"], attention_mask=enc["attention_mask"],
                          **({} if model is bridge else {"position_ids": positions}))
                assert bool((enc["attention_mask"] == 0).any())
                torch.testing.assert_close(live.last, alone, rtol=1e-5, atol=1e-5, msg=f"{model.__class__} {position} {side}")
