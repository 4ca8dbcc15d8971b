"""The circuit artifact: the components that carry a behaviour, how they were chosen, and ablating them.

How `locate_circuit` chooses them is `whitebox.attribution.selection`; the rule it followed is
stored in the artifact (`rule`, with its threshold) beside the scores that ranked the components.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from pydantic import ValidationError

from whitebox.attribution.ablation import Ablation, ablated, padded_reference, reference_activations
from whitebox.attribution.components import Component
from whitebox.attribution.reference import Reference
from whitebox.config import ConfigError, ModelConfig
from whitebox.fingerprint import fingerprint
from whitebox.runtime.artifacts import ArtifactError, one_line, read_json, seal, unsealed, write_json
from whitebox.runtime.rundir import seed_stream
from whitebox.tasks import ContrastPairs, Task, get_task, has
from whitebox.tasks.pairs import tokenized_pairs

FORMAT_VERSION = 1
ARTIFACT_KIND = "whitebox.circuit"
_REQUIRED = (
    "format_version", "kind", "components", "scores", "method", "direction", "rule", "threshold", "task", "model_fingerprint"
)

_TYPES = {"components": list, "scores": dict, "method": str, "direction": str, "rule": str, "threshold": (int, float),
          "task": dict, "model_fingerprint": dict, "hooks": dict, "metrics": dict, "details": dict}
_JSON_NAMES = {list: "list", dict: "object", str: "string", (int, float): "number"}


class CircuitError(ArtifactError):
    """A circuit file is malformed, or does not belong to the model it is applied to."""


@dataclass
class Circuit:
    """A located circuit: its components, the scores that chose them, the task and the model it belongs to."""

    components: list[str]
    scores: dict[str, float]
    method: str
    direction: str
    task: dict[str, Any]
    model_fingerprint: dict[str, Any]
    threshold: float = 0.9
    rule: str = ""  # how the components were chosen ("" when given by hand)
    hooks: dict[str, str] = field(default_factory=dict)  # component id -> canonical hook name
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # other methods' scores, agreement, ...

    @property
    def units(self) -> list[Component]:
        return [Component.parse(c) for c in self.components]

    def to_json(self) -> dict[str, Any]:
        """The file's content: every field, then `sha256` of the rest, so an edited or damaged file is refused."""
        return seal(self._body())

    def _body(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": ARTIFACT_KIND,
            "components": list(self.components),
            "hooks": dict(self.hooks),
            "rule": self.rule,
            "threshold": self.threshold,
            "method": self.method,
            "direction": self.direction,
            "scores": dict(self.scores),
            "task": self.task,
            "model_fingerprint": self.model_fingerprint,
            "metrics": dict(self.metrics),
            "details": dict(self.details),
        }

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Circuit:
        """Read and check a circuit file; errors name the file and the field."""
        data = read_json(path)
        if not isinstance(data, dict):
            raise CircuitError(f"{path}: expected a JSON object, got {type(data).__name__}")
        for key in _REQUIRED:
            if key not in data:
                raise CircuitError(f"{path}: missing field {key!r}; the file is not a whitebox circuit")
        if data["kind"] != ARTIFACT_KIND:
            raise CircuitError(f"{path}: field 'kind' is {data['kind']!r}, expected {ARTIFACT_KIND!r}")
        if data["format_version"] != FORMAT_VERSION:
            version = data["format_version"]
            raise CircuitError(f"{path}: field 'format_version' is {version!r}; this whitebox reads {FORMAT_VERSION}")
        for key, kind in _TYPES.items():
            if key in data and (not isinstance(data[key], kind) or isinstance(data[key], bool)):
                raise CircuitError(f"{path}: field {key!r} must be a JSON {_JSON_NAMES[kind]}, got {type(data[key]).__name__}")
        for key in ("components", "scores"):
            for item in data[key]:
                try:
                    unit = Component.parse(item if isinstance(item, str) else repr(item))
                except ValueError as err:
                    raise CircuitError(f"{path}: field {key!r}: {err}") from None
                if key == "components" and unit.kind == "resid":
                    raise CircuitError(f"{path}: field 'components': {item} is a residual-stream position; a circuit is "
                                       "made of heads, MLPs and neurons")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data["scores"].values()):
            raise CircuitError(f"{path}: field 'scores' must map component ids to numbers")
        if not all(math.isfinite(v) for v in data["scores"].values()):
            raise CircuitError(f"{path}: field 'scores' holds NaN or infinity")
        if not 0 < data["threshold"] <= 1:
            raise CircuitError(f"{path}: field 'threshold' must be in (0, 1], got {data['threshold']!r}")
        if len(set(data["components"])) != len(data["components"]):
            raise CircuitError(f"{path}: field 'components' names a component twice")
        if "sha256" not in data["model_fingerprint"]:
            raise CircuitError(f"{path}: field 'model_fingerprint' has no 'sha256'")
        if unsealed(data):
            raise CircuitError(f"{path}: content hash differs from field 'sha256' (or it has none); the file was "
                               "modified or damaged: locate the circuit again")
        try:
            get_task(data["task"])
        except (ConfigError, ValidationError, ValueError, TypeError) as err:
            reason = one_line(err) if isinstance(err, ConfigError) else "not a valid task section"
            raise CircuitError(f"{path}: field 'task': {reason}") from None
        fields = {k: data[k] for k in _REQUIRED if k not in ("format_version", "kind")}
        return cls(**fields, hooks=data.get("hooks", {}), metrics=data.get("metrics", {}), details=data.get("details", {}))

    def check_model(self, model: torch.nn.Module, model_cfg: ModelConfig | None = None) -> None:
        """Refuse a model whose fingerprint differs (parameter shapes only, when no config is given), or that lacks
        one of the circuit's components."""
        self.check_components(model)
        saved = self.model_fingerprint
        if model_cfg is not None:
            if fingerprint(model, model_cfg)["sha256"] != saved["sha256"]:
                raise CircuitError(f"circuit: field 'model_fingerprint' ({saved['sha256'][:12]}) does not match this model")
            return
        shapes = {name: list(t.shape) for name, t in model.state_dict().items()}
        if "params" in saved and shapes != saved["params"]:
            raise CircuitError("circuit: field 'model_fingerprint' lists other parameters or shapes than this model's")

    def check_components(self, model: torch.nn.Module) -> None:
        """Refuse components beyond the model's layers, heads, neurons or context (e.g. L99.H0 on a 2-layer model)."""
        cfg = model.cfg
        layers, positions = int(cfg.n_layers), int(getattr(cfg, "n_ctx", 0) or 0)
        sizes = {"head": int(cfg.n_heads), "neuron": int(getattr(cfg, "d_mlp", 0) or 0), "resid": positions}  # 0: unknown
        for unit in self.units:
            size = sizes.get(unit.kind, 0)
            fits = (unit.layer < layers + (unit.kind == "resid")  # the residual stream has n_layers + 1 rows
                    and (unit.index is None or not size or unit.index < size)
                    and (unit.pos is None or not positions or unit.pos < positions))
            if not fits:
                raise CircuitError(f"circuit: field 'components': {unit.id} is not in this model ({layers} layers of "
                                   f"{sizes['head']} heads and {sizes['neuron']} neurons, {positions} positions); "
                                   "locate the circuit on this model")

    @contextlib.contextmanager
    def ablate(
        self,
        model: torch.nn.Module,
        how: Ablation = "mean",
        *,
        complement: bool = False,
        reference: torch.Tensor | dict[str, torch.Tensor] | Reference | None = None,
        model_cfg: ModelConfig | None = None,
        seed: int = 0,
    ) -> Iterator[torch.nn.Module]:
        """Within the block, the circuit (or, with complement=True, every head and neuron outside it) is ablated.

        mean: each component's activation averaged per position over `reference` inputs (or their
        `reference_activations`, or a padded `Reference`, aligned at the answer);
        resample: a random reference row's activation per input row; zero: zeros. The default
        reference is 512 untriggered inputs of the circuit's task (see reference_tokens), or, for a
        task that draws none, the untriggered side of its contrast pairs (`task_reference`). Hooks go
        on exit, error or not.
        """
        self.check_model(model, model_cfg)
        if reference is None and how != "zero":
            task = get_task(self.task)
            reference = self.reference_tokens() if has(task, "sample") else task_reference(model, task)
        with ablated(model, self.units, how, reference, complement=complement, seed=seed):
            yield model

    def reference_tokens(self, n: int = 512, seed: int = 0) -> torch.Tensor:
        """Untriggered inputs of the circuit's task (the default reference for mean/resample ablation)."""
        return reference_tokens(self.task, n, seed)


def reference_tokens(task: Task | dict[str, Any], n: int = 512, seed: int = 0) -> torch.Tensor:
    """`n` inputs without the hidden label (untriggered): what mean and resample ablation average or draw over."""
    task = get_task(task) if isinstance(task, dict) else task
    if not has(task, "sample"):
        raise ValueError(f"task {task.name!r} cannot sample inputs without its hidden label; pass reference=tokens")
    return task.sample(n, 0.0, seed=seed_stream("ablation_reference", seed))["tokens"][:]


def task_reference(model: torch.nn.Module, task: Task, pairs: ContrastPairs | None = None, n: int = 512,
                   seed: int = 0) -> Reference:
    """What mean and resample ablation draw on by default: `n` untriggered samples of a task that samples
    (`reference_tokens`), else the untriggered side of `pairs` (default: up to `n` of the task's own pairs, seed 0,
    what a saved circuit of the task ablates with), left-padded with its mask."""
    if has(task, "sample"):
        return Reference(reference_activations(model, reference_tokens(task, n, seed)))
    pairs = pairs if pairs is not None else tokenized_pairs(task, n, seed, model)
    return padded_reference(model, pairs.untriggered, pairs.untriggered_mask)
