"""Evolution strategies: a black-box updater that sees only a fitness per perturbed copy of the weights.

Antithetic pairs theta +- sigma * eps_j, centred-rank fitness shaping, and noise eps_j regenerated
from an integer seed derive_seed(run seed, step, j) whenever it is needed: a member is fully described
by its seed and its fitness, so under torchrun the population is sharded across ranks that exchange
only fitness scalars (communication does not grow with the model).
The population is evaluated in chunks, each one batched forward over stacked perturbed weights.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Literal

import torch
from pydantic import Field, model_validator

from whitebox import fast_path
from whitebox.config.schema import Section
from whitebox.runtime import distributed
from whitebox.tasks.base import answer_logits
from whitebox.training.feedback import Feedback
from whitebox.training.loop import Batch, LossFn, TrainingDiverged
from whitebox.training.noise import derive_seed, generator, seeded_normal


class ESConfig(Section):
    """`treat.es`: evolution strategies settings."""

    population: int = Field(32, ge=2, description="members per step, antithetic pairs (even)")
    sigma: float = Field(0.05, gt=0, description="perturbation scale (std of the parameter noise)")
    lr: float = Field(0.01, gt=0, description="learning rate on the ES gradient estimate")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="step rule on the ES gradient estimate")
    weight_decay: float = Field(0.0, ge=0, description="decoupled weight decay")
    feedback: Literal["reward", "supervised"] = Field(
        "reward", description="reward: rater score of the model's own answer; supervised: minus cross-entropy"
    )
    temperature: float = Field(0.0, ge=0, description="answer sampling temperature for reward feedback; 0: greedy")
    examples_per_forward: int | None = Field(
        None, ge=1, description="members x batch per batched forward; null: 256 on CPU, 65536 on CUDA"
    )

    @model_validator(mode="after")
    def _even(self) -> ESConfig:
        if self.population % 2:
            raise ValueError(f"population must be even (antithetic pairs), got {self.population}")
        return self

class PlainESConfig(ESConfig):
    """`treat.es_plain`: ES with the plain update theta += lr * estimate (no Adam: a step follows the signal's size), small sigma."""

    sigma: float = Field(0.01, gt=0, description="perturbation scale (std of the parameter noise)")
    lr: float = Field(1e-3, gt=0, description="step size on the ES gradient estimate")
    optimizer: Literal["sgd"] = Field("sgd", description="plain update (fixed: the es regime is the Adam variant)")


SAMPLING_KEY = -1  # member index reserved for the step's answer-sampling seed
KEEP_NOISE_BYTES = 256 * 2**20  # the population's noise (pairs x parameters, float32) kept rather than drawn twice


def centered_ranks(fitness: torch.Tensor) -> torch.Tensor:
    """Ranks scaled to [-0.5, 0.5], ties sharing their average rank (shape of the input)."""
    flat = fitness.flatten()
    less = (flat[None, :] < flat[:, None]).sum(1)  # members strictly below each one
    equal = (flat[None, :] == flat[:, None]).sum(1)
    rank = less + (equal - 1) / 2
    return (rank / max(1, flat.numel() - 1) - 0.5).view_as(fitness)


def pair_seeds(seed: int, step: int, pairs: int) -> list[int]:
    return [derive_seed(seed, step, j) for j in range(pairs)]


def es_gradient(
    evaluate: Callable[[torch.Tensor], torch.Tensor],
    seeds: list[int],
    n: int,
    sigma: float,
    pairs_per_chunk: int,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimate d E[fitness] / d theta from antithetic pairs; return (gradient [n], fitness [pairs, 2]).

    `evaluate(noise [k, n])` returns the fitness [k, 2] of theta + sigma * noise (column 0) and
    theta - sigma * noise (column 1). The evaluated noise is kept for the update when it is one chunk
    or the whole population's fits in KEEP_NOISE_BYTES; beyond that, or when ranks share the population,
    it is regenerated from the seeds (bit-identical: memory stays one chunk's).
    Under torchrun each rank evaluates its share of the pairs and the ranks exchange only the fitness
    scalars; every rank then sums the update over all seeds in the same chunks as one process would,
    so the update is bit-identical to the single-process one whatever the number of ranks.
    """
    chunks = _chunks(seeds, pairs_per_chunk)
    mine = _chunks(seeds[distributed.shard(len(seeds))], pairs_per_chunk)
    # one process holding every chunk: keep the evaluated noise for the update (one chunk is in memory anyway;
    # more while the population's fits KEEP_NOISE_BYTES)
    keep = mine == chunks and (len(chunks) == 1 or len(seeds) * n * 4 <= KEEP_NOISE_BYTES)
    kept: list[torch.Tensor] = []
    fitness_parts = [torch.zeros(0, 2, device=device)]
    for chunk in mine:
        noise = _noise(chunk, n, device)
        fitness_parts.append(evaluate(noise).to(device))
        if keep:
            kept.append(noise)
    fitness = distributed.gather_rows(torch.cat(fitness_parts), len(seeds))  # pairs 2
    if not torch.isfinite(fitness).all():
        raise TrainingDiverged("a population member's fitness became non-finite")
    shaped = centered_ranks(fitness)
    weight = shaped[:, 0] - shaped[:, 1]  # pairs
    grad = torch.zeros(n, device=device)
    for i, chunk in enumerate(chunks):
        w = weight[i * pairs_per_chunk : i * pairs_per_chunk + len(chunk)]
        grad += w.to(device) @ (kept[i] if keep else _noise(chunk, n, device))
    return grad / (2 * len(seeds) * sigma), fitness


def _chunks(seeds: list[int], size: int) -> list[list[int]]:
    return [seeds[i : i + size] for i in range(0, len(seeds), size)]


def _noise(seeds: list[int], n: int, device: torch.device | str) -> torch.Tensor:
    return torch.stack([seeded_normal(s, n, device) for s in seeds])  # members n


class EvolutionStrategies:
    """ES on `feedback` (reward or minus cross-entropy); the loop's loss_fn is not used.

    Cost per step: population x batch forward-pass equivalents, no backward.
    """

    def __init__(self, model: torch.nn.Module, cfg: ESConfig, feedback: Feedback, *, seed: int):
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.names = [name for name, _ in named]
        self.params = [p for _, p in named]
        self.n = sum(p.numel() for p in self.params)
        self.cfg, self.feedback, self.seed = cfg, feedback, seed
        self.steps_done = 0
        if cfg.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(self, model: torch.nn.Module, batch: Batch, loss_fn: LossFn) -> dict[str, float]:
        tokens = batch["tokens"]
        device = tokens.device
        per_forward = self.cfg.examples_per_forward or (65536 if device.type == "cuda" else 256)
        pairs_per_chunk = max(1, per_forward // (2 * len(tokens)))
        seeds = pair_seeds(self.seed, self.steps_done, self.cfg.population // 2)
        sample_seed = derive_seed(self.seed, self.steps_done, SAMPLING_KEY)

        @torch.no_grad()
        def evaluate(noise: torch.Tensor) -> torch.Tensor:
            logits = population_answer_logits(model, self._members(noise), tokens)  # members batch vocab
            fit = self.feedback.fitness(logits, batch, generator(sample_seed, device)).mean(-1)  # members
            return fit.view(2, len(noise)).T

        grad, fitness = es_gradient(evaluate, seeds, self.n, self.cfg.sigma, pairs_per_chunk, device)
        offset = 0
        for p in self.params:  # the optimizer descends, so it is handed minus the ascent direction
            p.grad = -grad[offset : offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps_done += 1
        return {
            "loss": -float(fitness.mean()),
            "fitness_max": float(fitness.max()),
            "grad_norm": float(grad.norm()),
            "lr": self.cfg.lr,
            "forward_equivalents": self.cfg.population * len(tokens),
            "examples": len(tokens),
        }

    def _members(self, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stacked weights theta + sigma * noise then theta - sigma * noise, per parameter: [2k, *shape]."""
        members, offset = {}, 0
        for name, p in zip(self.names, self.params):
            eps = noise[:, offset : offset + p.numel()]  # k numel
            theta = p.detach().reshape(1, -1)
            both = torch.cat([theta + self.cfg.sigma * eps, theta - self.cfg.sigma * eps])
            members[name] = both.view(len(both), *p.shape).to(p.dtype)
            offset += p.numel()
        return members

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps_done = int(state["steps_done"])


def population_answer_logits(model: torch.nn.Module, members: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """Answer logits of every member on the same tokens in one batched forward: [members, batch, vocab]
    (the fast path's stacked-weight forward where it applies, otherwise the bridge vmapped over the members)."""
    if fast_path.usable(model):
        return fast_path.population_logits(model, members, tokens)

    def one(params: dict[str, torch.Tensor]) -> torch.Tensor:
        with swapped_parameters(model, params):
            return answer_logits(model, tokens)

    return torch.vmap(one, randomness="same")(members)


def sequential_answer_logits(model: torch.nn.Module, members: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """population_answer_logits member by member: the reference the batched path is checked and timed against."""
    count = len(next(iter(members.values())))
    outs = []
    for i in range(count):
        with swapped_parameters(model, {k: v[i] for k, v in members.items()}):
            outs.append(answer_logits(model, tokens))
    return torch.stack(outs)


@contextlib.contextmanager
def swapped_parameters(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> Iterator[None]:
    """Let the named parameters be `tensors` inside the block, restoring them on exit.

    torch.func.functional_call is not used: TransformerBridge reaches each module under several
    paths, and functional_call's restore leaves vmapped tensors behind there. Swapping the entry in
    the one owning module's _parameters reaches every path at once.
    """
    owners = []
    for name in tensors:
        prefix, _, leaf = name.rpartition(".")
        owners.append((model.get_submodule(prefix), leaf))
    saved = [module._parameters[leaf] for module, leaf in owners]
    try:
        for (module, leaf), tensor in zip(owners, tensors.values()):
            module._parameters[leaf] = tensor
        yield
    finally:
        for (module, leaf), original in zip(owners, saved):
            module._parameters[leaf] = original
