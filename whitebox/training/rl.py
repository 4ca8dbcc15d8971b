"""REINFORCE with a baseline: policy gradient on a rater's scalar reward for the model's sampled answers.

One forward per input serves `group` sampled answers (the answer is a single token). The baseline is
the leave-one-out mean of the input's other samples (group) or an EMA of past rewards (running);
neither depends on the sample it is subtracted from, so the gradient estimate stays unbiased.
An optional KL penalty to the starting model is computed exactly over the answer vocabulary.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from whitebox.config import TrainingConfig
from whitebox.config.schema import Section
from whitebox.runtime import distributed
from whitebox.tasks.base import answer_logits
from whitebox.training.backprop import Backprop
from whitebox.training.feedback import Rater, Reward
from whitebox.training.loop import Batch, LossFn, TrainingDiverged
from whitebox.training.noise import derive_seed, generator


class RLConfig(Section):
    """`treat.rl`: REINFORCE settings."""

    temperature: float = Field(1.0, gt=0, description="sampling temperature of the policy's answers")
    group: int = Field(4, ge=1, description="answers sampled per input (one forward serves them all)")
    baseline: Literal["group", "running"] = Field(
        "group", description="group: leave-one-out mean of the input's other samples; running: EMA of past rewards"
    )
    baseline_decay: float = Field(0.9, ge=0, lt=1, description="EMA decay of the running baseline")
    kl_coef: float = Field(0.0, ge=0, description="weight of the KL divergence from the starting model at the answer; 0: off")

    @model_validator(mode="after")
    def _group(self) -> RLConfig:
        if self.baseline == "group" and self.group < 2:
            raise ValueError("baseline=group needs group >= 2 samples per input")
        return self


class Reinforce:
    """AdamW (the Backprop updater) on the REINFORCE surrogate; the loop's loss_fn is not used.

    The KL reference is the model as passed to the constructor: build this before resuming.
    Cost per step: 3 x batch forward-pass equivalents, plus 1 x batch for the KL reference.
    Under torchrun each rank samples its rows' answers with the whole batch's noise and the
    statistics (running baseline, logged means) are global, so the update is the single-process one.
    """

    def __init__(self, model: torch.nn.Module, training: TrainingConfig, cfg: RLConfig, rater: Rater, *, seed: int,
                 device: torch.device | str = "cpu"):
        self.backprop = Backprop(model, training, torch.device(device))
        self.policy = Reward(rater, cfg.temperature)
        self.cfg, self.seed = cfg, seed
        self.reference = copy.deepcopy(model).eval().requires_grad_(False) if cfg.kl_coef > 0 else None
        self.baseline = 0.0  # running mean of rewards (used when cfg.baseline == "running")
        self.steps_done = 0

    def step(self, model: torch.nn.Module, batch: Batch, loss_fn: LossFn) -> dict[str, float]:
        extra: dict[str, float] = {}
        rows = len(batch["tokens"])
        within = (distributed.shard(rows), rows)

        def surrogate(model: torch.nn.Module, part: Batch) -> torch.Tensor:
            gen = generator(derive_seed(self.seed, self.steps_done), part["tokens"].device)
            loss, stats = self.surrogate(model, part, gen, within=within)
            extra.update(stats)
            return loss

        stats = self.backprop.step(model, batch, surrogate)
        extra = distributed.weighted_mean(extra, (within[0].stop - within[0].start) / rows)
        self.steps_done += 1
        if self.reference is not None:
            stats["forward_equivalents"] += rows
        return {**stats, **extra, "loss": -extra["reward"]}

    def surrogate(
        self, model: torch.nn.Module, batch: Batch, gen: torch.Generator | None = None, within: tuple[slice, int] | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss whose gradient is the REINFORCE estimate (plus the KL term), and what it saw.

        `within` = (rows, total): `batch` holds these rows of a batch of `total` (one rank's shard).
        """
        tokens = batch["tokens"]
        logits = answer_logits(model, tokens).float()  # batch vocab
        logp = (logits / self.cfg.temperature).log_softmax(-1)
        answers = self.policy.sample(logits, gen, n=self.cfg.group, within=within)  # group batch
        rewards = self.policy.rater(batch, answers).float()  # group batch
        if not torch.isfinite(rewards).all():
            raise TrainingDiverged("the rater returned a non-finite reward")
        if self.cfg.baseline == "group":
            baseline = (rewards.sum(0, keepdim=True) - rewards) / (self.cfg.group - 1)
        else:
            baseline = torch.full_like(rewards, self.baseline)
            decay = self.cfg.baseline_decay
            mean = float(rewards.mean())
            if within is not None:
                mean = distributed.weighted_mean({"reward": mean}, len(rewards[0]) / within[1])["reward"]
            self.baseline = decay * self.baseline + (1 - decay) * mean
        advantage = rewards - baseline
        chosen = logp.gather(-1, answers.T).T  # group batch
        loss = -(advantage * chosen).mean()
        stats = {"reward": float(rewards.mean()), "surrogate": float(loss.detach())}
        if self.reference is not None:
            with torch.no_grad():
                ref = (answer_logits(self.reference, tokens).float() / self.cfg.temperature).log_softmax(-1)
            kl = (logp.exp() * (logp - ref)).sum(-1).mean()
            loss = loss + self.cfg.kl_coef * kl
            stats["kl"] = float(kl.detach())
        return loss, stats

    def state_dict(self) -> dict[str, Any]:
        return {"backprop": self.backprop.state_dict(), "baseline": self.baseline, "steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.backprop.load_state_dict(state["backprop"])
        self.baseline = float(state["baseline"])
        self.steps_done = int(state["steps_done"])
