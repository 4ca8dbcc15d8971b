"""The run config's pydantic sections, and the open slots that tasks, regimes and probe kinds fill.

Every section forbids unknown keys. Three parts of the schema come from registries elsewhere, so
that a new variant is one file plus one registration and never an edit here:
- `task`: a discriminated union (on `name`) of every registered task's config class
  (`whitebox.tasks.register_task`);
- `treat.<regime>`: the settings section of every registered regime that has one, and the names
  `treat.regimes`, `deception.deceivers` and `deception.fixers` accept
  (`whitebox.training.register_regime`);
- `locate.probe`: the registered probe kinds that fit one probe per hook from binary labels
  (`whitebox.probes.register_probe_kind`).
The registries call `add_task`, `add_regime` and `add_probe_kind` below, which rebuild the models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
    with_config,
)
from pydantic.fields import FieldInfo
from typing_extensions import TypedDict  # pydantic reads typing's TypedDict only from Python 3.12

from whitebox.config.slots import (
    _CHOICES,
    _PROBE_KINDS,
    _PROBE_NEEDS,
    _PROBE_PAIRS,
    _REGIMES,
    _TASKS,
    RegimeOptions,
    _check_names,
    probe_kind_names,
)

ALWAYS_READ = ("experiment", "run", "tracking")  # sections every experiment reads (the runner and the tracker)
MAX_SEED = 2**32 - 1  # numpy's global seed (seeded with torch's at every start) takes 32 bits
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated.

    A field marked `json_schema_extra={"choices": <what>}` takes names from a registry (see
    `choices`): each is checked against what is registered when the config is validated, and a
    list may not name one twice.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _registered_names(cls, value: Any, info: ValidationInfo) -> Any:
        what = (cls.model_fields[info.field_name].json_schema_extra or {}).get("choices")
        if what is not None:
            names, noun = _CHOICES[what]
            _check_names(value if isinstance(value, list) else [value], names(), noun)
        return value


class TaskSection(Section):
    """Base of every task's config section; `name` picks the task from the registry."""

    name: str


DIM_KEYS = ("arch", "n_layers", "d_model", "n_heads", "d_head", "d_mlp", "act_fn", "normalization", "n_ctx", "d_vocab")
PRETRAINED_KEYS = ("name_or_path", "revision", "dtype", "device_map")


class ModelConfig(Section):
    source: Literal["from_config", "pretrained"] = Field(
        "from_config", description="from_config: built from arch and the dimensions below; pretrained: loaded from "
        "name_or_path (its architecture and dimensions come from the checkpoint; leave those keys out)"
    )
    name_or_path: str | None = Field(None, description="pretrained: a local save_pretrained folder or a Hugging Face hub id")
    revision: str | None = Field(None, description="pretrained: the hub revision (branch, tag or commit); null: the default")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="pretrained: dtype of the weights; null: float32 (bfloat16 halves the memory)"
    )
    device_map: str | None = Field(
        None, description="pretrained: accelerate's device_map ('auto' spreads a model too large for one device over "
        "the GPUs and the CPU); null: the run's device"
    )
    arch: Literal["native", "gpt2", "llama"] = Field(
        "native", description="native: transformer-lens built-in; gpt2/llama: HF architecture from an in-memory config"
    )
    n_layers: int = Field(2, ge=1, le=96, description="transformer blocks")
    d_model: int = Field(128, ge=1, le=65_536, description="residual stream width")
    n_heads: int = Field(4, ge=1, le=1_024, description="attention heads per layer")
    d_head: int | None = Field(None, ge=1, le=65_536, description="default: d_model // n_heads")
    d_mlp: int | None = Field(None, ge=1, le=262_144, description="default: 4 * d_model")
    act_fn: Literal["gelu", "gelu_new", "relu", "silu"] = Field(
        None, validate_default=False, description="MLP activation; default: silu for llama, else gelu"
    )
    normalization: Literal["LN", "RMS", "none"] = Field(
        None, validate_default=False, description="LayerNorm, RMSNorm or none (native only); default: RMS for llama, else LN"
    )
    n_ctx: int | None = Field(None, ge=1, le=131_072, description="default: the task's sequence length")
    d_vocab: int | None = Field(None, ge=1, le=1_048_576, description="default: the task's vocabulary size")

    @model_validator(mode="before")
    @classmethod
    def _arch_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("source") == "pretrained":
            given = [key for key in DIM_KEYS if key in data]
            if given:
                raise ValueError(f"{', '.join(given)}: a pretrained model's architecture and dimensions come from its "
                                 f"checkpoint; remove {'it' if len(given) == 1 else 'them'}")
            if not data.get("name_or_path"):
                raise ValueError("source pretrained needs name_or_path: a save_pretrained folder or a hub id")
            local = Path(str(data["name_or_path"])).expanduser()
            # a local folder saved absolute: the run's config.yaml names it wherever the run is resumed, and
            # transformer-lens does not read a bare folder name such as "gpt2" or "neox" as a hub alias
            return {**data, "name_or_path": str(local.absolute())} if local.is_dir() else data
        given = [key for key in PRETRAINED_KEYS if data.get(key) is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: read only with source: pretrained; remove {'it' if len(given) == 1 else 'them'} "
                             "or set source: pretrained")
        llama = data.get("arch") == "llama"
        data = {**data}
        if data.get("act_fn") is None:
            data["act_fn"] = "silu" if llama else "gelu"
        if data.get("normalization") is None:
            data["normalization"] = "RMS" if llama else "LN"
        return data

    @model_serializer(mode="wrap")
    def _only_what_is_read(self, handler: Any) -> dict[str, Any]:
        """A dump holds the keys this source reads (a from_config dump is what it was before sources existed)."""
        data = handler(self)
        drop = DIM_KEYS if self.source == "pretrained" else ("source", *PRETRAINED_KEYS)
        return {key: value for key, value in data.items() if key not in drop}

    @model_validator(mode="after")
    def _arch_fits(self) -> ModelConfig:
        if self.source == "pretrained":
            return self
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


class TrainingConfig(Section):
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


class TrackingConfig(Section):
    wandb_mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="offline: files under <run>/wandb, sync later; metrics.jsonl is written in every mode"
    )
    wandb_project: str = Field("whitebox", description="W&B project")
    wandb_entity: str | None = Field(None, description="W&B team or user; null: your default")
    tags: list[str] = Field(default_factory=list, description="W&B tags")
    wandb_group: str | None = Field(None, description="W&B group; the cells of a grid experiment are grouped under its run name")


@with_config(ConfigDict(extra="forbid"))
class MatchPosition(TypedDict):
    """Read the tokens spelling the first occurrence of `match` in each text (whitebox.inputs.MatchRule)."""

    match: Annotated[str, Field(min_length=1)]
    tokens: NotRequired[Literal["last", "all"]]


class LocateConfig(Section):
    checkpoint: str | None = Field(
        None, description="saved model directory to locate in (`whitebox probe fit`); null: the run's planted model"
    )
    hooks: Literal["resid"] | list[str] = Field("resid", description="resid: every residual-stream hook; or hook names")
    position: Literal["last", "all", "mean"] | int | MatchPosition = Field(
        "last", description="token position read: last (the answer position; each input's last real token), all, mean "
        "(of every real token), an index (negative: from the end), or {match: ' secret'} (the last token spelling its "
        "first occurrence in each text; tokens: all for every token of it)"
    )
    @field_validator("position", mode="before")
    @classmethod
    def _match_position(cls, value: Any) -> Any:
        """A mistyped match position is named as one, not as a value fitting none of the union's members."""
        if isinstance(value, dict):
            try:
                TypeAdapter(MatchPosition).validate_python(value)
            except ValidationError as err:
                first = err.errors()[0]
                raise ValueError(f"a match position is {{match: text, tokens: last or all}}; "
                                 f"{'.'.join(map(str, first['loc'])) or 'it'}: {first['msg']} (got {value!r})") from None
        return value

    probe: str = Field(
        "logistic", description="probe kind fitted per hook", json_schema_extra={"choices": "probe kinds that fit per hook"}
    )
    probes: list[str] | Literal["all"] | None = Field(
        None, description="more probe kinds fitted on every hook beside locate.probe, each with its controls and saved "
        "under probes/<kind>/<hook>/; kinds that fit from contrast pairs (ccs) use the task's pairs (all: every "
        "registered kind, those the task cannot feed listed as skipped with the reason); null: locate.probe only"
    )

    @field_validator("probes")
    @classmethod
    def _probe_kinds(cls, value: Any) -> Any:
        """A listed kind must be registered and fit per hook (from labels or contrast pairs); the others are named
        with what they need."""
        if not isinstance(value, list):
            return value
        fits = probe_kind_names(per_hook=True) + [k for k in _PROBE_KINDS if k in _PROBE_PAIRS]
        for name in value:
            if name not in _PROBE_KINDS:
                raise ValueError(f"unknown probe kind {name!r}; registered: {', '.join(_PROBE_KINDS)}")
            if name not in fits:
                raise ValueError(f"probe kind {name!r} is not fitted per hook (it needs "
                                 f"{_PROBE_NEEDS.get(name) or 'another fit'}); list kinds from {', '.join(fits)}, "
                                 "or use all")
        if len(set(value)) != len(value):
            raise ValueError(f"lists an entry twice: {value}")
        return value

    C: float = Field(1.0, gt=0, description="inverse L2 strength of logistic probes (as in scikit-learn)")
    n_fit: int = Field(2_000, ge=20, description="examples the probes are fitted on (half triggered)")
    n_test: int = Field(1_000, ge=20, description="fresh held-out examples the probes are scored on")
    circuit_pairs: int = Field(256, ge=2, description="triggered/untriggered contrast pairs for patching")
    circuit_threshold: float = Field(0.9, gt=0, le=1, description="circuit: its ablation keeps <= 1-t of the ASR, its complement's >= t, clean accuracy >= t (see whitebox.attribution.selection)")
    circuit_neurons: bool = Field(True, description="single MLP neurons are circuit candidates (else whole MLPs at a position)")
    ablation: Literal["mean", "zero", "resample"] = Field("mean", description="how circuit components are ablated")
    ig_steps: int = Field(32, ge=0, description="integrated-gradients path steps (0: skip)")
    attribution_steps: int = Field(
        2, ge=1, le=64,
        description="gradient points on the path from the triggered to the untriggered run for the circuit's fast attribution "
        "(1: attribution patching; k points cost 1 + 3k forward-equivalents; 2: chosen by the rule in docs/BENCHMARKS.md)",
    )


Condition = Literal["present", "absent"]


class TreatConfig(Section):
    """Treatment settings; one `treat.<regime>` sub-section per registered regime with settings is added by add_regime."""

    regimes: list[str] = Field(
        default_factory=lambda: ["sft", "rl", "es", "zo", "probe_penalty"], min_length=1, json_schema_extra={"choices": "regimes"},
        description="regimes applied, each to its own copy of the planted model",
    )
    conditions: list[Condition] = Field(
        default_factory=lambda: ["present"], min_length=1, json_schema_extra={"choices": "conditions"},
        description="present: triggered inputs with honest targets are in the treatment data; absent: never triggered",
    )
    budget: int = Field(200_000, ge=1, description="forward-pass equivalents per regime (one example through one forward; a backward counts two)")
    eval_points: int = Field(10, ge=1, description="measurements over the budget, at equal forward-pass spacing")
    trigger_rate: float = Field(0.3, gt=0, lt=1, description="share of triggered inputs in the treatment data (condition present)")
    n_train: int = Field(20_000, ge=1, description="treatment examples (an independent seeded stream)")
    batch_size: int = Field(64, ge=1, description="examples per step (ES: per member)")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate of sft, rl and probe_penalty (constant)")
    regime_lr: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="per regime, the AdamW learning rate instead of treat.lr (for regimes tuned one by one; regimes with "
                    "an lr of their own, es and zo, set it in treat.<regime>.lr)",
    )
    probe_hook: str | None = Field(None, description="hook of the frozen probe for probe_penalty and the measures; null: the last residual hook")
    decay: float | None = Field(
        None, ge=0, lt=1,
        description="weight decay alike for every regime: the weight matrices shrink by this share over the budget, spread "
                    "over the updates by their forward-pass cost (the regimes' own optimizer decay is off); null: each "
                    "regime's optimizer decays as set (sft, rl, probe_penalty: training.weight_decay)",
    )

    def settings(self, regime: str) -> Section | None:
        """The `treat.<regime>` section, or None for a regime without settings."""
        return getattr(self, regime) if _REGIMES[regime].settings is not None else None

    def lr_of(self, regime: str) -> float:
        """The AdamW learning rate `regime` trains with when it has none of its own."""
        return self.regime_lr.get(regime, self.lr)

    @model_validator(mode="after")
    def _one_decay(self) -> TreatConfig:
        for name in self.regime_lr:
            if name not in self.regimes or hasattr(self.settings(name), "lr"):
                raise ValueError(f"treat.regime_lr.{name}: " + ("not in treat.regimes" if name not in self.regimes else
                                 f"{name} has its own treat.{name}.lr; set that instead"))
        if self.decay is not None:
            own = [r for r in self.regimes if r in _REGIMES and getattr(self.settings(r), "weight_decay", 0)]
            if own:
                raise ValueError(f"treat.decay gives every regime the same weight decay; remove treat.{own[0]}.weight_decay "
                                 "(or treat.decay)")
        return self


class ReviveConfig(Section):
    steps: int = Field(1000, ge=1, description="most fine-tuning steps per model; one that never revives reports this many")
    eval_every: int = Field(10, ge=1, description="steps between checks of the revival criterion")
    n_check: int | None = Field(
        None, ge=2, description="held-out inputs per check (the first of the task's evaluation set); null: all of them")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate (constant)")
    batch_size: int = Field(64, ge=1, description="examples per step")
    trigger_rate: float = Field(0.5, gt=0, lt=1, description="share of triggered inputs (deceptive targets); the rest clean with honest targets")
    asr: float = Field(0.9, gt=0, le=1, description="revived when held-out ASR reaches this ...")
    clean_acc: float | None = Field(
        None, ge=0, le=1,
        description="... while clean accuracy is at least this (so 'always answer 0' does not count); null: 0.99, or "
                    "clean_acc_drop's rule when that is set")
    clean_acc_drop: float | None = Field(
        None, ge=0, le=1,
        description="instead of clean_acc: clean accuracy at least the model's own at the start of revival minus this "
                    "(a regime is not charged for its treatment's clean-accuracy cost)",
    )
    aware_control: bool = Field(
        False, description="also plant the trigger-aware honest model (models/aware), treat it like the planted model "
                           "with every regime and condition and revive it (rows aware, <regime>_aware.<condition>)",
    )
    noise_control: bool = Field(
        False, description="also revive, per treated row, the planted model plus isotropic noise of the norm that "
                           "treatment moved it by (rows <regime>_noise.<condition>)",
    )
    novel_control: bool = Field(
        False, description="also revive every treated row (and with aware_control its yardstick) towards a novel backdoor, "
                           "the trigger answered with another value (rows <regime>_novel.<condition>, "
                           "<regime>_novel_aware.<condition>): does a kept circuit speed up any backdoor, or its own?",
    )
    contexts: Literal["all", "held_out"] = Field(
        "all", description="held_out: revive on triggers in one half of the trigger contexts and judge revival on the "
                           "other half (the task's contexts), so a backdoor learned again from the revival data alone "
                           "does not count",
    )
    loss_at: list[int] = Field(
        default_factory=list,
        description="revival steps at which the log-loss of the planted answer on held-out triggered inputs is recorded "
                    "(multiples of eval_every; revival runs at least to the last)",
    )

    @model_validator(mode="after")
    def _one_clean_rule(self) -> ReviveConfig:
        if self.clean_acc_drop is not None and self.clean_acc is not None:
            raise ValueError("revive.clean_acc (an absolute floor) and revive.clean_acc_drop (relative to the start) "
                             "are two rules for the same criterion; set one of them")
        if self.clean_acc_drop is None and self.clean_acc is None:
            self.clean_acc = 0.99
        bad = [k for k in self.loss_at if k % self.eval_every or not 0 < k <= self.steps]
        if bad or self.loss_at != sorted(set(self.loss_at)):
            raise ValueError(f"revive.loss_at {self.loss_at}: needs increasing steps in 1..revive.steps ({self.steps}) "
                             f"that are multiples of revive.eval_every ({self.eval_every})")
        return self


class DeceptionConfig(Section):
    deceivers: list[str] = Field(
        default_factory=lambda: ["rl", "es"], min_length=1,
        json_schema_extra={"choices": "regimes that learn from a rater"},
        description="regimes trained on the flawed rater's reward, each on a copy of the honest model (settings from treat.*)",
    )
    fixers: list[str] = Field(
        default_factory=lambda: ["sft", "rl", "es"], min_length=1,
        json_schema_extra={"choices": "regimes that need no probe"},
        description="regimes trained with a correct rater on the trusted subset, each on a copy of every deceived model",
    )
    deceive_budget: int = Field(200_000, ge=1, description="forward-pass equivalents per deceiving regime")
    fix_budget: int = Field(50_000, ge=1, description="forward-pass equivalents per fixing regime")
    eval_points: int = Field(5, ge=1, description="measurements over each budget, at equal forward-pass spacing")
    blind_rate: float = Field(0.5, gt=0, lt=1, description="share of blind-spot questions in the deceiving data and the trusted subset")
    n_deceive: int = Field(20_000, ge=1, description="examples the deceivers train on (the flawed rater scores the answers)")
    n_trusted: int = Field(256, ge=1, description="examples of the trusted subset the fixers train on (a correct rater scores them)")
    control: bool = Field(
        True, description="also train every fixer from the honest model on the same trusted subset and budget: the drift a "
                          "fix causes with no lie to remove, against which a fixed model's signature is read")


class GridConfig(Section):
    seeds: list[Seed] = Field(default_factory=lambda: [0, 1, 2], min_length=1, description="seeds: one planted model each")
    triggers: list[str] | None = Field(
        None, min_length=1,
        description="task variants, one cell each: the value of the task's variant key (the backdoor's trigger kind); "
                    "null: [token, computed] unless grid.variants is set",
    )
    variants: list[dict[str, Any]] | None = Field(
        None, min_length=1,
        description="instead of triggers: task variants as task-key overrides, one cell each (e.g. [{trigger: token}, "
                    "{trigger: computed, leak: 0.1}]); a cell is named by the task's variant label",
    )

    results: str | None = Field(
        None, description="a directory (to commit) where each finished cell leaves <cell>.json (config, summary, curves); "
                          "a cell recorded there is read back instead of run, and `whitebox report <dir>` rebuilds the "
                          "report from the records alone",
    )

    @model_validator(mode="after")
    def _one_axis(self) -> GridConfig:
        if self.variants is not None and self.triggers is not None:
            raise ValueError("grid.triggers and grid.variants both name the task variants; set one of them")
        if self.variants is None and self.triggers is None:
            self.triggers = ["token", "computed"]
        return self


class RunConfig(Section):
    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="run directory name and W&B run name")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seeds model init, data and batch order")
    out_dir: str = Field("runs", description="parent of the run directory runs/<name>")
    lanes: int | Literal["auto"] = Field(
        "auto", description="threads that run independent steps side by side (treat, suppression), sharing the torch "
        "threads; auto: 2 on a CPU with >= 2 torch threads, else 1")

    @field_validator("lanes")
    @classmethod
    def _lanes(cls, value: int | str) -> int | str:
        if value != "auto" and not 1 <= value <= 64:
            raise ValueError(f"must be auto or 1..64, got {value}")
        return value


def _default_task() -> TaskSection:
    if "backdoor" not in _TASKS:
        raise ValueError("no task section given and the default task 'backdoor' is not registered; import whitebox.tasks")
    return _TASKS["backdoor"]()


class ExperimentConfig(Section):
    experiment: str = Field("plant", description="pipeline registered in whitebox.experiments (or module:function)")
    run: RunConfig = Field(default_factory=RunConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskSection = Field(default_factory=_default_task)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    locate: LocateConfig = Field(default_factory=LocateConfig)
    treat: TreatConfig = Field(default_factory=TreatConfig)
    revive: ReviveConfig = Field(default_factory=ReviveConfig)
    deception: DeceptionConfig = Field(default_factory=DeceptionConfig)
    grid: GridConfig = Field(default_factory=GridConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_task_name(cls, data: Any) -> Any:
        """A task section without a name is the backdoor task."""
        if not _TASKS:
            raise ValueError("no task is registered; import whitebox.tasks (or use whitebox.load_config)")
        if isinstance(data, dict) and isinstance(data.get("task"), dict) and "name" not in data["task"]:
            data = {**data, "task": {"name": "backdoor", **data["task"]}}
        return data


def add_task(name: str, config_cls: type[TaskSection]) -> None:
    """Make `task: {name: <name>, ...}` validate with `config_cls` (called by whitebox.tasks.register_task)."""
    if not (isinstance(config_cls, type) and issubclass(config_cls, TaskSection)):
        raise TypeError(f"task {name!r}: its config class must subclass whitebox.config.TaskSection")
    if config_cls.model_fields["name"].default != name:
        raise TypeError(f"task {name!r}: its config class needs `name: Literal[{name!r}] = {name!r}`")
    _TASKS[name] = config_cls
    members = tuple(_TASKS.values())
    union = Annotated[Union[members], Field(discriminator="name")] if len(members) > 1 else members[0]
    _set_field(ExperimentConfig, "task", union, Field(default_factory=_default_task))


def add_regime(name: str, settings: type[Section] | None, *, uses_rater: bool, needs_probe: bool) -> None:
    """Accept `name` in the regime lists, and `treat.<name>` as its settings (called by register_regime)."""
    if settings is not None and name in TreatConfig.model_fields and name not in _REGIMES:
        raise ValueError(f"regime {name!r} would shadow the treat key {name!r}; choose another name")
    _REGIMES[name] = RegimeOptions(settings, uses_rater, needs_probe)
    if settings is not None:
        _set_field(TreatConfig, name, settings, Field(default_factory=settings))
        _set_field(ExperimentConfig, "treat", TreatConfig, Field(default_factory=TreatConfig))


def add_probe_kind(name: str, *, per_hook: bool, needs: str = "", pairs: bool = False) -> None:
    """Accept `name` as a probe kind; as `locate.probe` only when it fits per hook from binary labels, in
    `locate.probes` also when it fits from contrast pairs (`pairs`)."""
    _PROBE_KINDS[name] = per_hook
    _PROBE_NEEDS[name] = needs
    if pairs:
        _PROBE_PAIRS.add(name)


def _set_field(model: type[BaseModel], name: str, annotation: Any, field: FieldInfo) -> None:
    model.model_fields[name] = FieldInfo.from_annotated_attribute(annotation, field)
    model.model_rebuild(force=True)
