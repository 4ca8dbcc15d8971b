"""Toy models and logs shared by the regime tests: each builds in milliseconds."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import one_thread
from whitebox.config import parse_config
from whitebox.models import build_model
from whitebox.tasks import get_task


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread, and do not stall when other jobs share the cores."""
    with one_thread():
        yield


class ToyLM(torch.nn.Module):
    """tokens [batch, pos] -> logits [batch, pos, vocab] from a running mean of embeddings."""

    def __init__(self, vocab: int = 6, d: int = 8):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d)
        self.head = torch.nn.Linear(d, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens).cumsum(1) / torch.arange(1, tokens.shape[1] + 1).unsqueeze(-1)  # batch pos d
        return self.head(torch.tanh(h))


class ListLog:
    def __init__(self):
        self.records: list[tuple[int, dict]] = []

    def log(self, step, metrics):
        self.records.append((step, metrics))

    def rewind(self, step):
        self.records = [(s, m) for s, m in self.records if s <= step]

    def close(self, through=None):
        pass


@pytest.fixture
def toy_lm():
    def make(seed: int = 0, vocab: int = 6, d: int = 8) -> ToyLM:
        torch.manual_seed(seed)
        return ToyLM(vocab, d)

    return make


@pytest.fixture
def toy_data():
    """Inputs whose honest answer is their first token: tokens, target, honest_target."""
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 6, (64, 5), generator=gen)
    return {"tokens": tokens, "target": tokens[:, 0].clone(), "honest_target": tokens[:, 0].clone()}


@pytest.fixture
def list_log():
    return ListLog


def make_tiny_bridge(seed: int = 0):
    """A 1-layer TransformerBridge on the backdoor vocabulary, and a batch of its task data."""
    cfg = parse_config({"model": {"arch": "native", "n_layers": 1, "d_model": 16, "n_heads": 2, "d_mlp": 32},
                        "task": {"seq_len": 4, "n_values": 10}})
    vocab = get_task(cfg.task).vocabulary()
    torch.manual_seed(seed)
    model = build_model(cfg.model.model_copy(update={"d_vocab": len(vocab), "n_ctx": get_task(cfg.task).seq_len()}), vocab)
    rows = get_task(cfg.task).sample(64, 0.5, seed=seed)[:]
    return model, {"tokens": rows["tokens"], "target": rows["honest_target"], "honest_target": rows["honest_target"]}


@pytest.fixture
def tiny_bridge():
    return make_tiny_bridge
