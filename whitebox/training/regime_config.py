"""Settings of the treatment regimes (the optimizer settings of `sft` live in TrainingConfig)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Regime = Literal["sft", "rl", "es", "zo", "probe_penalty"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ESConfig(_Strict):
    population: int = Field(32, ge=2, description="members per step, antithetic pairs (even)")
    sigma: float = Field(0.02, gt=0, description="perturbation scale (std of the parameter noise)")
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


class ZOConfig(_Strict):
    lr: float = Field(1e-4, gt=0, description="SGD learning rate on the SPSA gradient estimate")
    eps: float = Field(1e-3, gt=0, description="perturbation scale of the two-sided difference")
    samples: int = Field(1, ge=1, description="random directions averaged per step")
    weight_decay: float = Field(0.0, ge=0, description="decoupled weight decay")


class RLConfig(_Strict):
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the policy's answers")
    group: int = Field(4, ge=1, description="answers sampled per input (one forward serves them all)")
    baseline: Literal["group", "running"] = Field(
        "group", description="group: leave-one-out mean of the input's other samples; running: EMA of past rewards"
    )
    baseline_decay: float = Field(0.9, ge=0, lt=1, description="EMA decay of the running baseline")
    kl_coef: float = Field(0.0, ge=0, description="weight of KL(policy || starting model) at the answer; 0: off")

    @model_validator(mode="after")
    def _group(self) -> RLConfig:
        if self.baseline == "group" and self.group < 2:
            raise ValueError("baseline=group needs group >= 2 samples per input")
        return self


class ProbePenaltyConfig(_Strict):
    weight: float = Field(1.0, ge=0, description="weight of the mean frozen-probe score added to the loss")


class TreatConfig(_Strict):
    regime: Regime = Field("sft", description="how the planted model is trained to behave")
    budget: int = Field(2_000_000, ge=1, description="forward-pass equivalents (one example through one forward; a backward counts two)")
    es: ESConfig = Field(default_factory=ESConfig)
    zo: ZOConfig = Field(default_factory=ZOConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    probe_penalty: ProbePenaltyConfig = Field(default_factory=ProbePenaltyConfig)
