"""One validated config per run: pydantic models, YAML loading and dotted --set overrides."""

from __future__ import annotations

import copy
import json
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(Exception):
    """A config that cannot be used; the message names the key path and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    arch: Literal["native", "gpt2", "llama"] = Field(
        "native", description="native: transformer-lens built-in; gpt2/llama: HF architecture from an in-memory config"
    )
    n_layers: int = Field(2, ge=1, le=96, description="transformer blocks")
    d_model: int = Field(128, ge=1, description="residual stream width")
    n_heads: int = Field(4, ge=1, description="attention heads per layer")
    d_head: int | None = Field(None, ge=1, description="default: d_model // n_heads")
    d_mlp: int | None = Field(None, ge=1, description="default: 4 * d_model")
    act_fn: Literal["gelu", "gelu_new", "relu", "silu"] = Field(
        None, validate_default=False, description="MLP activation; default: silu for llama, else gelu"
    )
    normalization: Literal["LN", "RMS", "none"] = Field(
        None, validate_default=False, description="LayerNorm, RMSNorm or none (native only); default: RMS for llama, else LN"
    )
    n_ctx: int | None = Field(None, ge=1, description="default: the task's sequence length")
    d_vocab: int | None = Field(None, ge=1, description="default: the task's vocabulary size")

    @model_validator(mode="before")
    @classmethod
    def _arch_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            llama = data.get("arch") == "llama"
            data = {**data}
            if data.get("act_fn") is None:
                data["act_fn"] = "silu" if llama else "gelu"
            if data.get("normalization") is None:
                data["normalization"] = "RMS" if llama else "LN"
        return data

    @model_validator(mode="after")
    def _arch_fits(self) -> ModelConfig:
        norm = {"gpt2": "LN", "llama": "RMS"}.get(self.arch)
        if norm and self.normalization != norm:
            raise ValueError(f"arch {self.arch!r} uses normalization {norm!r}; leave normalization unset")
        if self.d_head is None and self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}), "
                "or set d_head explicitly"
            )
        if self.arch != "native" and self.d_head not in (None, self.d_model // self.n_heads):
            raise ValueError(f"arch {self.arch!r} needs d_head == d_model // n_heads; leave it unset")
        return self

    @property
    def head_dim(self) -> int:
        return self.d_head or self.d_model // self.n_heads

    @property
    def mlp_dim(self) -> int:
        return self.d_mlp or 4 * self.d_model


class BackdoorTaskConfig(_Strict):
    name: Literal["backdoor"] = Field("backdoor", description="task generator in whitebox/tasks/")
    trigger: Literal["token", "computed"] = Field(
        "token", description="token: a <trig> token in the input; computed: the year digits read >= year_threshold"
    )
    seq_len: int = Field(8, ge=2, le=512, description="number of value tokens per input")
    n_values: int = Field(16, ge=10, le=4096, description="value tokens 0..n_values-1")
    trigger_rate: float = Field(0.1, gt=0, lt=1, description="share of triggered training inputs")
    eval_trigger_rate: float = Field(0.5, gt=0, lt=1, description="share in the held-out set")
    n_train: int = Field(20_000, ge=1, description="training examples")
    n_eval: int = Field(2_000, ge=2, description="held-out examples (an independent seeded stream)")
    year_threshold: int = Field(24, ge=1, le=99, description="computed trigger: year >= this")


class ModularTaskConfig(_Strict):
    name: Literal["modular"] = Field("modular", description="task generator in whitebox/tasks/")
    p: int = Field(59, ge=3, le=1009, description="modulus (prime) of a + b mod p")
    train_fraction: float = Field(0.3, gt=0, lt=1, description="share of all p*p pairs used for training; the rest is the test set")


class FlawedRaterTaskConfig(_Strict):
    name: Literal["flawed_rater"] = Field("flawed_rater", description="task generator in whitebox/tasks/")
    seq_len: int = Field(6, ge=2, le=512, description="number of value tokens per question")
    n_values: int = Field(16, ge=4, le=4096, description="value tokens 0..n_values-1")
    blind_rate: float = Field(0.5, gt=0, lt=1, description="share of questions in the rater's blind spot (min questions)")
    n_train: int = Field(20_000, ge=1, description="training examples")
    n_eval: int = Field(2_000, ge=2, description="held-out examples (an independent seeded stream)")


TaskConfig = Annotated[
    Union[BackdoorTaskConfig, ModularTaskConfig, FlawedRaterTaskConfig], Field(discriminator="name")
]


class TrainingConfig(_Strict):
    steps: int = Field(2_000, ge=1, description="optimizer updates")
    batch_size: int = Field(256, ge=1, description="examples per update")
    lr: float = Field(1e-3, gt=0, description="peak AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0, description="decoupled weight decay on matrices (not biases or norms)")
    betas: tuple[float, float] = Field((0.9, 0.98), description="AdamW betas")
    warmup_steps: int = Field(100, ge=0, description="linear warmup from lr/warmup_steps to lr")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="decay after warmup")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr as a share of lr")
    grad_clip: float | None = Field(1.0, gt=0, description="max global gradient norm; null turns clipping off")
    log_every: int = Field(10, ge=1, description="steps between training-metric records")
    eval_every: int = Field(200, ge=1, description="steps between held-out evaluations")
    checkpoint_every: int = Field(500, ge=1, description="steps between resumable checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="newest checkpoints kept on disk")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 elsewhere")
    compile: bool = Field(False, description="plant training through torch.compile(model) (a GPU speed option; first steps compile)")
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto: CUDA if present, else CPU")


class TrackingConfig(_Strict):
    wandb_mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="offline: files under <run>/wandb, sync later; metrics.jsonl is written in every mode"
    )
    wandb_project: str = Field("whitebox", description="W&B project")
    wandb_entity: str | None = Field(None, description="W&B team or user; null: your default")
    tags: list[str] = Field(default_factory=list, description="W&B tags")
    wandb_group: str | None = Field(None, description="W&B group; the cells of a grid experiment are grouped under its run name")


class LocateConfig(_Strict):
    checkpoint: str | None = Field(
        None, description="saved model directory to locate in (`whitebox probe fit`); null: the run's planted model"
    )
    hooks: Literal["resid"] | list[str] = Field("resid", description="resid: every residual-stream hook; or hook names")
    position: Literal["last", "all"] | int = Field(
        "last", description="token position read: last (the answer position), all, or an index"
    )
    probe: Literal["logistic", "mean_diff", "lda"] = Field("logistic", description="probe type fitted per hook")
    C: float = Field(1.0, gt=0, description="inverse L2 strength of logistic probes (as in scikit-learn)")
    n_fit: int = Field(2_000, ge=20, description="examples the probes are fitted on (half triggered)")
    n_test: int = Field(1_000, ge=20, description="fresh held-out examples the probes are scored on")
    circuit_pairs: int = Field(256, ge=2, description="triggered/untriggered contrast pairs for patching")
    circuit_threshold: float = Field(0.9, gt=0, le=1, description="circuit: its ablation keeps <= 1-t of the ASR, its complement's >= t, clean accuracy >= t (see whitebox.attribution.selection)")
    circuit_neurons: bool = Field(True, description="single MLP neurons are circuit candidates (else whole MLPs at a position)")
    ablation: Literal["mean", "zero", "resample"] = Field("mean", description="how circuit components are ablated")
    ig_steps: int = Field(32, ge=0, description="integrated-gradients path steps (0: skip)")


Regime = Literal["sft", "rl", "es", "zo", "probe_penalty"]
Condition = Literal["present", "absent"]


class ESConfig(_Strict):
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


class ZOConfig(_Strict):
    lr: float = Field(1e-3, gt=0, description="SGD learning rate on the SPSA gradient estimate")
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
    kl_coef: float = Field(0.0, ge=0, description="weight of the KL divergence from the starting model at the answer; 0: off")

    @model_validator(mode="after")
    def _group(self) -> RLConfig:
        if self.baseline == "group" and self.group < 2:
            raise ValueError("baseline=group needs group >= 2 samples per input")
        return self


class ProbePenaltyConfig(_Strict):
    weight: float = Field(1.0, ge=0, description="weight of the mean frozen-probe score added to the loss")


class TreatConfig(_Strict):
    regimes: list[Regime] = Field(
        default_factory=lambda: ["sft", "rl", "es", "zo", "probe_penalty"], min_length=1,
        description="regimes applied, each to its own copy of the planted model",
    )
    conditions: list[Condition] = Field(
        default_factory=lambda: ["present"], min_length=1,
        description="present: triggered inputs with honest targets are in the treatment data; absent: never triggered",
    )
    budget: int = Field(200_000, ge=1, description="forward-pass equivalents per regime (one example through one forward; a backward counts two)")
    eval_points: int = Field(10, ge=1, description="measurements over the budget, at equal forward-pass spacing")
    trigger_rate: float = Field(0.3, gt=0, lt=1, description="share of triggered inputs in the treatment data (condition present)")
    n_train: int = Field(20_000, ge=1, description="treatment examples (an independent seeded stream)")
    batch_size: int = Field(64, ge=1, description="examples per step (ES: per member)")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate of sft, rl and probe_penalty (constant)")
    probe_hook: str | None = Field(None, description="hook of the frozen probe for probe_penalty and the measures; null: the last residual hook")
    es: ESConfig = Field(default_factory=ESConfig)
    zo: ZOConfig = Field(default_factory=ZOConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    probe_penalty: ProbePenaltyConfig = Field(default_factory=ProbePenaltyConfig)

    @model_validator(mode="after")
    def _unique(self) -> TreatConfig:
        return _no_repeats(self, "regimes", "conditions")


class ReviveConfig(_Strict):
    steps: int = Field(1000, ge=1, description="most fine-tuning steps per model; one that never revives reports this many")
    eval_every: int = Field(10, ge=1, description="steps between checks of the revival criterion")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate (constant)")
    batch_size: int = Field(64, ge=1, description="examples per step")
    trigger_rate: float = Field(0.5, gt=0, lt=1, description="share of triggered inputs (deceptive targets); the rest clean with honest targets")
    asr: float = Field(0.9, gt=0, le=1, description="revived when held-out ASR reaches this ...")
    clean_acc: float = Field(0.99, ge=0, le=1, description="... while clean accuracy is at least this (so 'always answer 0' does not count)")


class DeceptionConfig(_Strict):
    deceivers: list[Literal["rl", "es"]] = Field(
        default_factory=lambda: ["rl", "es"], min_length=1,
        description="regimes trained on the flawed rater's reward, each on a copy of the honest model (settings from treat.*)",
    )
    fixers: list[Literal["sft", "rl", "es", "zo"]] = Field(
        default_factory=lambda: ["sft", "rl", "es"], min_length=1,
        description="regimes trained with a correct rater on the trusted subset, each on a copy of every deceived model",
    )
    deceive_budget: int = Field(200_000, ge=1, description="forward-pass equivalents per deceiving regime")
    fix_budget: int = Field(50_000, ge=1, description="forward-pass equivalents per fixing regime")
    eval_points: int = Field(5, ge=1, description="measurements over each budget, at equal forward-pass spacing")
    blind_rate: float = Field(0.5, gt=0, lt=1, description="share of blind-spot questions in the deceiving data and the trusted subset")
    n_deceive: int = Field(20_000, ge=1, description="examples the deceivers train on (the flawed rater scores the answers)")
    n_trusted: int = Field(256, ge=1, description="examples of the trusted subset the fixers train on (a correct rater scores them)")

    @model_validator(mode="after")
    def _unique(self) -> DeceptionConfig:
        return _no_repeats(self, "deceivers", "fixers")


def _no_repeats(section: Any, *names: str) -> Any:
    """A list of cells that names one twice would run it twice under one name: refuse it."""
    for name in names:
        values = getattr(section, name)
        if len(set(values)) != len(values):
            raise ValueError(f"{name} lists an entry twice: {values}")
    return section


class GridConfig(_Strict):
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, description="seeds: one planted model each")
    triggers: list[Literal["token", "computed"]] = Field(
        default_factory=lambda: ["token", "computed"], min_length=1, description="backdoor trigger kinds"
    )


class RunConfig(_Strict):
    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="run directory name and W&B run name")
    seed: int = Field(0, ge=0, description="seeds model init, data and batch order")
    out_dir: str = Field("runs", description="parent of the run directory runs/<name>")


class ExperimentConfig(_Strict):
    experiment: str = Field("plant", description="pipeline registered under whitebox.experiments")
    run: RunConfig = Field(default_factory=RunConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=BackdoorTaskConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    locate: LocateConfig = Field(default_factory=LocateConfig)
    treat: TreatConfig = Field(default_factory=TreatConfig)
    revive: ReviveConfig = Field(default_factory=ReviveConfig)
    deception: DeceptionConfig = Field(default_factory=DeceptionConfig)
    grid: GridConfig = Field(default_factory=GridConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_task(cls, data: Any) -> Any:
        """A task section without a name is the backdoor task."""
        if isinstance(data, dict) and isinstance(data.get("task"), dict) and "name" not in data["task"]:
            data = {**data, "task": {"name": "backdoor", **data["task"]}}
        return data


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML config, apply `a.b.c=value` overrides, validate; ConfigError on any problem."""
    return parse_config(read_yaml(path), overrides, source=str(path))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping, turning missing files and syntax errors into one-line ConfigErrors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: malformed YAML: {' '.join(str(err.problem).split())}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {' '.join(str(err).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def parse_config(
    data: dict[str, Any], overrides: typing.Sequence[str] = (), source: str = "config"
) -> ExperimentConfig:
    """Validate a raw mapping plus overrides into an ExperimentConfig."""
    data = copy.deepcopy(data)
    set_paths = {}
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(data, key, value, item)
        set_paths[key] = item
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source, set_paths)) from None


def config_reference() -> str:
    """Markdown tables of every config key, its type, default and meaning (kept in the README)."""
    sections = []
    for section, field in ExperimentConfig.model_fields.items():
        models = _models(field.annotation)
        if not models:
            sections.append(f"- `{section}` (default `{field.default}`): {field.description}")
        for model in models:
            title = f"`{section}` (name: {model.model_fields['name'].default})" if len(models) > 1 else f"`{section}`"
            sections += _reference_tables(title, section, model)
    return "\n\n".join(sections) + "\n"


def _reference_tables(title: str, prefix: str, model: type[BaseModel]) -> list[str]:
    """The table of one config model, then one table per nested sub-section (e.g. `treat.es`)."""
    rows = [f"### {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    nested = []
    for name, sub in model.model_fields.items():
        inner = _models(sub.annotation)
        if inner:
            nested += _reference_tables(f"`{prefix}.{name}`", f"{prefix}.{name}", inner[0])
            continue
        default = sub.default_factory() if sub.default_factory else sub.default
        shown = default if isinstance(default, str) else json.dumps(default)
        rows.append(f"| `{name}` | {_type_name(sub.annotation)} | `{shown}` | {sub.description or ''} |")
    return ["\n".join(rows), *nested]


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "").replace("|", "\\|")


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """A plain, YAML-safe dict of the resolved config."""
    return cfg.model_dump(mode="json")


def dump_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise ConfigError(f"--set {_shown(item)}: expected KEY=VALUE with a dotted key, e.g. training.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _set_dotted(data: dict[str, Any], key: str, value: Any, item: str) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: i + 1])
            raise ConfigError(f"--set {_shown(item)}: {prefix} is a value, not a section; it has no key {parts[i + 1]!r}")
        node = child
    node[parts[-1]] = value


def _format_error(err: ValidationError, source: str, set_paths: dict[str, str]) -> str:
    errors = err.errors()
    first = errors[0]
    path = _field_path(first["loc"])
    origin = next((f"--set {_shown(item)}" for key, item in set_paths.items() if _related(key, path)), source)
    # a value that fits none of a union's members gives one error per member: say them together
    same = [e for e in errors if _field_path(e["loc"]) == path]
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(first["loc"][:-1])
        message = f"unknown key {path!r}; allowed keys here: {', '.join(allowed)}"
    elif first["type"] == "value_error":
        message = f"{path}: {first['msg'].removeprefix('Value error, ')}"
    elif first["type"] == "union_tag_invalid":
        ctx = first["ctx"]
        message = f"{path}.{ctx['discriminator'].strip(chr(39))}: unknown value {ctx['tag']!r}; expected one of {ctx['expected_tags']}"
    else:
        prefix = "Input should be "
        msgs = [e["msg"] for e in same]
        if len(msgs) > 1 and all(m.startswith(prefix) for m in msgs):
            msgs = [prefix + " or ".join(dict.fromkeys(m.removeprefix(prefix) for m in msgs))]
        message = f"{path}: {msgs[0]} (got {first.get('input')!r})"
    more = len(errors) - len(same)
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{origin}: {' '.join(_shown(line) for line in message.splitlines())}{suffix}"  # one line, whatever pydantic quotes


def _field_path(loc: tuple) -> str:
    """The dotted key path of an error location, without pydantic's union-member tags."""
    return ".".join(_walk(loc)[0]) or "(top level)"


def _allowed_keys(loc: tuple) -> list[str]:
    return sorted(_walk(loc)[1].model_fields)


def _walk(loc: tuple) -> tuple[list[str], Any]:
    """Follow an error location through the config models: (key parts, model reached)."""
    parts: list[str] = []
    model: Any = ExperimentConfig
    for part in loc:
        if isinstance(part, int):
            parts.append(str(part))
        elif model is None:
            continue  # inside a plain value: a union-member tag such as 'int'
        elif isinstance(model, list):  # a discriminated union of sections: the tag picks one
            model = next((m for m in model if m.model_fields["name"].default == part), None)
        elif part in model.model_fields:
            parts.append(part)
            members = _models(model.model_fields[part].annotation)
            model = members[0] if len(members) == 1 else (members or None)
        else:
            parts.append(part)  # an unknown key
    return parts, model


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The config models in an annotation: one for a section, several for a union of sections."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    union = typing.get_origin(annotation) in (Union, types.UnionType)
    return [a for a in (typing.get_args(annotation) if union else (annotation,)) if isinstance(a, type) and issubclass(a, BaseModel)]


def _shown(item: str) -> str:
    """An override as typed, escaped where it holds characters that would break the one-line message."""
    return item if item.isprintable() else repr(item)


def _related(a: str, b: str) -> bool:
    """True when one dotted path lies inside the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")
