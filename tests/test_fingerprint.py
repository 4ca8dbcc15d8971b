"""What identifies a model: the HF config, revision and tokenizer digests artifacts record, and recorded overrides."""

import json
import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from tests.test_own_model import save_tiny, write_texts
from whitebox.attribution import Circuit, locate_circuit
from whitebox.capture import capture
from whitebox.config import ModelConfig
from whitebox.fingerprint import hf_config_digest, model_identity, tokenizer_digest
from whitebox.models import load_model
from whitebox.probes import ProbeError, fit_detectors, fit_probes, load_detector, load_probe
from whitebox.runtime.artifacts import seal
from whitebox.tasks import get_task

HOOK = "blocks.1.hook_out"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """(folder, bridge, model_cfg, probe saved and loaded back) on a tiny saved GPT-2."""
    root = tmp_path_factory.mktemp("fingerprint")
    save_tiny(root / "my_model", "gpt2", seed=0)
    rows = [json.loads(line) for line in write_texts(root / "secret.jsonl", 100).read_text().splitlines()]
    bridge, model_cfg = load_model(root / "my_model")
    captured = capture(bridge, [r["text"] for r in rows], [HOOK], labels=[r["label"] for r in rows], cfg=model_cfg)
    fit_probes(captured, seed=0)[HOOK].save(root / "probe")
    detector = fit_detectors({HOOK: captured.acts[HOOK]}, model=captured.model)[HOOK]
    detector.save(root / "detector")
    return root, bridge, model_cfg, captured


def test_a_bridge_and_its_plain_hf_model_share_config_and_weights_and_the_bridge_adds_its_tokenizer(fitted):
    root, bridge, model_cfg, _ = fitted
    ours, plain = model_identity(bridge, model_cfg), model_identity(AutoModelForCausalLM.from_pretrained(root / "my_model"))
    assert ours["hf_config_sha256"] == plain["hf_config_sha256"] is not None  # output_attentions etc. do not count
    assert ours["weights_sha256"] == plain["weights_sha256"]
    assert ours["tokenizer_sha256"] == tokenizer_digest(bridge.tokenizer) and plain["tokenizer_sha256"] is None
    assert ours["checkpoint"] == str(root / "my_model") and ours["revision"] is None
    pinned = ModelConfig(source="pretrained", name_or_path=str(root / "my_model"), revision="v1")
    assert model_identity(bridge, pinned)["revision"] == "v1"
    assert hf_config_digest(torch.nn.Linear(2, 2)) is None and tokenizer_digest(None) is None


def test_probes_detectors_and_circuits_record_the_whole_identity(fitted):
    root, bridge, model_cfg, _ = fitted
    ours = model_identity(bridge, model_cfg)
    for artifact in (load_probe(root / "probe"), load_detector(root / "detector")):
        assert artifact.model == ours
    task = get_task({"name": "text_pairs", "path": str(root / "pairs.jsonl"), "a": ["cat"], "b": ["dog"]})
    (root / "pairs.jsonl").write_text("".join(json.dumps({"triggered": f"the secret is a {w}", "untriggered": f"a {w}"})
                                              + "\n" for w in ("word", "yes", "no", "the")))
    circuit, _ = locate_circuit(bridge, model_cfg, task, n_pairs=4, ablation="zero", ig_steps=0, neurons=False)
    circuit.save(root / "circuit.json")
    assert Circuit.load(root / "circuit.json").model_fingerprint["identity"] == ours


def test_another_hf_config_with_the_same_weights_is_refused(fitted):
    root, *_ = fitted
    other = root / "other_eps"
    save_tiny(other, "gpt2", seed=0)
    config = GPT2Config.from_pretrained(other)
    config.layer_norm_epsilon = 1e-3
    config.save_pretrained(other)
    stranger, stranger_cfg = load_model(other)
    with pytest.raises(ProbeError, match="the Hugging Face config differs; pass allow_fingerprint_mismatch=True"):
        with load_probe(root / "probe").attach(stranger, cfg=stranger_cfg):
            pass


def test_an_allowed_mismatch_is_warned_recorded_on_the_probe_and_saved_with_it(fitted, tmp_path):
    root, *_ = fitted
    save_tiny(tmp_path / "other", "gpt2", seed=1)
    stranger, stranger_cfg = load_model(tmp_path / "other")
    probe = load_probe(root / "probe")
    assert probe.fingerprint_overrides == []
    with pytest.warns(UserWarning, match="other weights"):
        with probe.attach(stranger, cfg=stranger_cfg, allow_fingerprint_mismatch=True):
            pass
    (record,) = probe.fingerprint_overrides
    assert "other weights" in record["message"] and record["model"] == model_identity(stranger, stranger_cfg)
    probe.save(tmp_path / "used")
    assert load_probe(tmp_path / "used").fingerprint_overrides == [record]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with probe.attach(load_model(root / "my_model")[0]):  # its own model: nothing to warn about or record
            pass
    assert len(probe.fingerprint_overrides) == 1


def test_a_probe_saved_before_these_fields_existed_still_loads_and_is_checked(fitted, tmp_path):
    root, bridge, model_cfg, captured = fitted
    data = json.loads((root / "probe" / "probe.json").read_text())
    for key in ("revision", "hf_config_sha256", "tokenizer_sha256"):
        del data["model"][key]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "probe.safetensors").write_bytes((root / "probe" / "probe.safetensors").read_bytes())
    (tmp_path / "old" / "probe.json").write_text(json.dumps(seal({k: v for k, v in data.items() if k != "sha256"})))
    old = load_probe(tmp_path / "old")
    assert old.model["hf_config_sha256"] is None
    with torch.no_grad(), old.attach(bridge, cfg=model_cfg) as live:
        bridge(bridge.tokenizer(["the secret is a cat"], return_tensors="pt")["input_ids"])
    assert torch.allclose(live.last, load_probe(root / "probe").score(live_acts(bridge)), atol=1e-5)


def live_acts(bridge) -> torch.Tensor:
    tokens = bridge.tokenizer(["the secret is a cat"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens, names_filter=[HOOK])
    return cache[HOOK][:, -1]
