import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.attribution.conftest import TASK, plant_tiny
from tests.conftest import one_thread
from tests.test_own_model import save_tiny
from whitebox.capture import capture
from whitebox.models import load_model
from whitebox.probes import ProbeError, fit_probes
from whitebox.probes.steer import direction, steer, steering_sweep, steering_vector_kwargs
from whitebox.tasks import get_task


@pytest.fixture(scope="module")
def planted():
    with one_thread():
        model, cfg = plant_tiny()
    task = get_task(TASK)
    captured = capture(model, task.sample(1000, 0.5, seed=11), ["blocks.1.hook_out"], labels="triggered", cfg=cfg)
    return model, task, fit_probes(captured, seed=0)["blocks.1.hook_out"]


def test_adding_the_trigger_direction_makes_clean_inputs_give_the_deceptive_answer(planted):
    """The probe's direction is causal here: pushed along it at the answer position, clean inputs answer 0."""
    model, task, probe = planted
    clean = task.sample(400, 0.0, seed=12)[:]["tokens"]

    def deceptive_share(m: torch.nn.Module) -> dict[str, float]:
        with torch.no_grad():
            return {"deceptive": float((m(clean)[:, -1].argmax(-1) == 0).float().mean())}

    rows = steering_sweep(model, probe, [0, 10, 20, 40], deceptive_share, positions="last")
    shares = [r["deceptive"] for r in rows[:4]]
    assert shares[0] == deceptive_share(model)["deceptive"] == 0.0  # multiplier 0 is the unsteered model
    assert shares == sorted(shares) and shares[-1] > 0.9
    assert rows[-1]["ablated"] == 1.0 and math.isnan(rows[-1]["multiplier"])


def test_the_direction_raises_the_probe_score_at_its_full_rate(planted):
    _, _, probe = planted
    x = torch.randn(8, probe.d_model, generator=torch.Generator().manual_seed(0))
    unit = direction(probe)
    rate = float((probe.weight.double() / probe.std.double()).norm())
    assert torch.allclose(probe.score(x + 3.0 * unit) - probe.score(x), torch.full((8,), 3.0 * rate), atol=1e-4)
    assert float(unit.norm()) == pytest.approx(1.0)
    with pytest.raises(ProbeError, match="records no Hugging Face module"):
        with steer(torch.nn.Linear(2, 2), probe):
            pass


def test_a_plain_hf_model_is_steered_exactly_like_its_bridge(tmp_path):
    folder = save_tiny(tmp_path / "m", "gpt2", seed=0)
    bridge, cfg = load_model(folder)
    texts = ["the secret is a cat", "a dog is a word", "yes no ?", "the cat"] * 10
    captured = capture(bridge, texts, ["blocks.0.hook_out"], labels=[i % 2 for i in range(40)], cfg=cfg)
    probe = fit_probes(captured, seed=0)["blocks.0.hook_out"]
    hf_model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokens = bridge.tokenizer(["the secret is a cat"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        plain = hf_model(tokens).logits
        with steer(bridge, probe, 3.0):
            on_bridge = bridge(tokens)
        with steer(hf_model, probe, 3.0):
            on_hf = hf_model(tokens).logits
    assert not torch.allclose(on_hf, plain, atol=1e-3) and torch.allclose(on_bridge, on_hf, atol=1e-4)
    kwargs = steering_vector_kwargs(probe, scale=2.0)
    assert kwargs["layer_type"] == "decoder_block" and list(kwargs["layer_activations"]) == [0]
    assert torch.allclose(kwargs["layer_activations"][0], 2.0 * direction(probe))
