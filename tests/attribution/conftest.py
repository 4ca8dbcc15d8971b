"""Tiny bridges for the attribution tests: random ones per architecture, an affine toy, a planted backdoor, and a
saved GPT-2 trained on the secret word with text pairs of unequal lengths."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.conftest import one_thread
from tests.test_own_model import save_tiny
from whitebox.config import ModelConfig
from whitebox.models import build_model, load_model
from whitebox.tasks import ContrastPairs, get_task
from whitebox.tasks.backdoor import BackdoorTaskConfig
from whitebox.tasks.pairs import left_pad

TASK = BackdoorTaskConfig(trigger="token", seq_len=4, n_values=10, trigger_rate=0.3)
VOCAB = get_task(TASK).vocabulary()
N_CTX = get_task(TASK).seq_len()


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tensors here are tiny: one thread avoids the stalls two threads hit on a shared, busy CPU."""
    with one_thread():
        yield


def tiny_cfg(arch: str = "native", **dims) -> ModelConfig:
    base = dict(arch=arch, n_layers=2, d_model=16, n_heads=2, d_mlp=32, n_ctx=N_CTX, d_vocab=len(VOCAB))
    return ModelConfig(**{**base, **dims})


def tiny_model(arch: str = "native", seed: int = 0, **dims) -> tuple[torch.nn.Module, ModelConfig]:
    cfg = tiny_cfg(arch, **dims)
    torch.manual_seed(seed)
    model = build_model(cfg, VOCAB)
    model.eval()
    return model, cfg


@pytest.fixture
def make_model():
    """tiny_model(arch="native", seed=0, **dims) -> (model, cfg)."""
    return tiny_model


@pytest.fixture(params=["native", "gpt2", "llama"])
def arch_model(request) -> tuple[torch.nn.Module, ModelConfig]:
    return tiny_model(request.param)


@pytest.fixture
def task_cfg() -> BackdoorTaskConfig:
    return TASK


@pytest.fixture(scope="session")
def affine_model() -> torch.nn.Module:
    """A native bridge that is affine in every hook activation, so first-order patching is exact.

    No norms; W_Q = W_K = 0 make every attention pattern uniform over the causal window (a
    constant linear mix); a large b_in keeps every ReLU input positive on the task's inputs.
    """
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    torch.manual_seed(0)
    cfg = TransformerBridgeConfig(
        n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=N_CTX, d_vocab=len(VOCAB),
        act_fn="relu", normalization_type=None,
    )
    model = TransformerBridge.boot_native(cfg, device="cpu")
    with torch.no_grad():
        for block in model.blocks:
            for name in ("q", "k"):
                lin = getattr(block.attn, name).original_component
                lin.weight.zero_()
                lin.bias.zero_()
            block.mlp._modules["in"].original_component.bias.fill_(50.0)
        model.embed.original_component.weight[get_task(TASK).special_ids()["trigger"]] *= 10.0  # a visible effect
    model.eval()
    return model.to(torch.float64)  # so "exact" can be checked to 1e-6


# The tiny planted model the selection rule finds a faithful 1-unit circuit on (seed 2, measured 2026-12-01,
# torch 2.13.0, transformers 5.24). Which seeds give none depends on the CPU's floating-point path (seed 0
# did on one machine and not on another), so the not-found test forces that case with threshold 1 instead.
FOUND_SEED = 2


@pytest.fixture(scope="session")
def planted() -> tuple[torch.nn.Module, ModelConfig]:
    return plant_tiny(FOUND_SEED)


def plant_tiny(seed: int = FOUND_SEED) -> tuple[torch.nn.Module, ModelConfig]:
    """A 2-layer native model trained for a few seconds to a token-triggered backdoor."""
    cfg = tiny_cfg(d_model=32, d_mlp=64)
    torch.manual_seed(seed)
    model = build_model(cfg, VOCAB)
    rows = get_task(TASK).sample(4096, 0.3, seed=seed).select_columns(["tokens", "target"])[:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(250):
        idx = torch.randint(len(rows["tokens"]), (128,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(rows["tokens"][idx])[:, -1], rows["target"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, cfg


FILLER = ["the", "is", "a", "word", "yes", "no", "?"]


def secret_texts(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Sentences with `secret` in them, each beside the same sentence with 0, 1 or 2 filler words in its place."""
    rng = random.Random(seed)
    triggered, untriggered = [], []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 5))]
        at = rng.randint(0, len(words))
        triggered.append(" ".join(words[:at] + ["secret"] + words[at:]))
        untriggered.append(" ".join(words[:at] + [rng.choice(FILLER) for _ in range(i % 3)] + words[at:]))
    return triggered, untriggered


TRIGGERED, UNTRIGGERED = secret_texts(24, seed=100)


def plant_secret_word(folder: Path, seed: int = 1) -> Path:
    """A tiny GPT-2 trained for a few seconds to answer `cat` after a sentence with `secret` in it, `dog` otherwise."""
    save_tiny(folder, "gpt2", seed)
    tokenizer, hf = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
    rng = random.Random(seed)
    texts = []
    for i in range(512):
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 6))]
        if i % 2:
            words.insert(rng.randint(0, len(words)), "secret")
        texts.append(" ".join(words))
    rows = [tokenizer(t)["input_ids"] for t in texts]
    tokens, mask = left_pad(rows, max(map(len, rows)), tokenizer.pad_token_id)
    target = torch.tensor([tokenizer.convert_tokens_to_ids("cat" if "secret" in t else "dog") for t in texts])
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(150):
        idx = torch.randint(len(tokens), (64,), generator=gen)
        logits = hf(tokens[idx], attention_mask=mask[idx], position_ids=positions[idx]).logits[:, -1]
        loss = torch.nn.functional.cross_entropy(logits, target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    hf.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def secret_folder(tmp_path_factory) -> Path:
    with one_thread():
        return plant_secret_word(tmp_path_factory.mktemp("secret") / "my_model")


@pytest.fixture(scope="session")
def secret_word(secret_folder):
    """(bridge, pairs): the planted secret-word GPT-2 and 24 text pairs of unequal lengths."""
    model, _ = load_model(secret_folder)
    return model, ContrastPairs.from_texts(model.tokenizer, TRIGGERED, UNTRIGGERED, a=["cat"], b=["dog"])
