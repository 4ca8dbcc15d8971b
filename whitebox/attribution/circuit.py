"""The circuit artifact: the components that carry a behaviour, how they were chosen, and ablating them.

Selection rule (`select_circuit`), per kind, each kind ranked by |score| (by default the exact
noising effect: the patch that removes the trigger from one component):
- heads: the shortest prefix whose joint patch (its heads patched at once) moves the metric by at
  least `threshold` (0.9) of patching every head at once. Heads of one layer are parallel paths
  that often carry the trigger redundantly, each with a small effect alone; only a joint patch
  sees them;
- MLP layers: the shortest prefix whose summed |score| reaches `threshold` of all MLP layers'.
  MLP layers sit in series, so every layer on the path has a large effect alone, while a joint
  patch would stop at the first layer that cuts the path and drop the ones after it;
- neurons: when neuron scores are given, each chosen MLP layer is narrowed to the shortest prefix
  of its neurons whose summed |score| reaches `neuron_threshold` (0.5) of the layer's. MLP layers
  also do the honest task and their neuron effects are dense (on the quickstart models ~128 of
  256 neurons carry 90% jointly); ablating that long tail costs clean accuracy.
Residual-stream rows are scored but never part of a circuit (ablating one removes everything
upstream of it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import torch

from whitebox.artifacts import ArtifactError, read_json, write_json
from whitebox.attribution.components import Component, by_hook, canonical_hook
from whitebox.attribution.pairs import ContrastPairs
from whitebox.attribution.patching import patch_metric
from whitebox.attribution.scores import ComponentScores
from whitebox.config import BackdoorTaskConfig, ModelConfig
from whitebox.models import fingerprint
from whitebox.tasks import backdoor

FORMAT_VERSION = 1
ARTIFACT_KIND = "whitebox.circuit"
RULE = (
    "heads: shortest |score|-ranked prefix whose joint patch reaches threshold of patching all heads; "
    "MLP layers: shortest |score|-ranked prefix whose summed |score| reaches threshold of all MLP layers'; "
    "each chosen MLP layer narrowed to the shortest |score|-ranked prefix of its neurons whose summed |score| "
    "reaches neuron_threshold of the layer's"
)
Ablation = Literal["mean", "zero", "resample"]
_REQUIRED = (
    "format_version", "kind", "components", "scores", "method", "direction", "rule", "threshold", "task", "model_fingerprint"
)


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
    rule: str = RULE
    hooks: dict[str, str] = field(default_factory=dict)  # component id -> canonical hook name
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # other methods' scores, agreement, ...

    @property
    def units(self) -> list[Component]:
        return [Component.parse(c) for c in self.components]

    def complement(self, model: torch.nn.Module) -> list[Component]:
        """Every head and MLP layer outside the circuit (plus the other neurons of a layer it holds neurons of)."""
        mine = set(self.units)
        n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
        out: list[Component] = []
        for layer in range(n_layers):
            out += [c for c in (Component("head", layer, h) for h in range(n_heads)) if c not in mine]
            neurons = {c for c in mine if c.kind == "neuron" and c.layer == layer}
            if neurons:
                d_mlp = int(model.cfg.d_mlp)
                out += [c for c in (Component("neuron", layer, i) for i in range(d_mlp)) if c not in neurons]
            elif Component("mlp", layer) not in mine:
                out.append(Component("mlp", layer))
        return out

    def to_json(self) -> dict[str, Any]:
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
        for key in ("components", "scores"):
            for item in data[key]:
                try:
                    Component.parse(item)
                except ValueError as err:
                    raise CircuitError(f"{path}: field {key!r}: {err}") from None
        if not all(isinstance(v, (int, float)) for v in data["scores"].values()):
            raise CircuitError(f"{path}: field 'scores' must map component ids to numbers")
        if not isinstance(data["model_fingerprint"], dict) or "sha256" not in data["model_fingerprint"]:
            raise CircuitError(f"{path}: field 'model_fingerprint' has no 'sha256'")
        fields = {k: data[k] for k in _REQUIRED if k not in ("format_version", "kind")}
        return cls(**fields, hooks=data.get("hooks", {}), metrics=data.get("metrics", {}), details=data.get("details", {}))

    def check_model(self, model: torch.nn.Module, model_cfg: ModelConfig | None = None) -> None:
        """Refuse a model whose fingerprint differs (parameter shapes only, when no config is given)."""
        saved = self.model_fingerprint
        if model_cfg is not None:
            if fingerprint(model, model_cfg)["sha256"] != saved["sha256"]:
                raise CircuitError(f"circuit: field 'model_fingerprint' ({saved['sha256'][:12]}) does not match this model")
            return
        shapes = {name: list(t.shape) for name, t in model.state_dict().items()}
        if "params" in saved and shapes != saved["params"]:
            raise CircuitError("circuit: field 'model_fingerprint' lists other parameters or shapes than this model's")

    @contextlib.contextmanager
    def ablate(
        self,
        model: torch.nn.Module,
        how: Ablation = "mean",
        *,
        complement: bool = False,
        reference: torch.Tensor | None = None,
        model_cfg: ModelConfig | None = None,
        seed: int = 0,
    ) -> Iterator[torch.nn.Module]:
        """Within the block, the circuit (or, with complement=True, everything else) is ablated.

        mean: each component's activation averaged per position over `reference` inputs;
        resample: a random reference row's activation per input row; zero: zeros. The default
        reference is 512 untriggered inputs of the circuit's task. Hooks go on exit, error or not.
        """
        self.check_model(model, model_cfg)
        targets = self.complement(model) if complement else self.units
        if how not in ("mean", "zero", "resample"):
            raise ValueError(f"how must be 'mean', 'zero' or 'resample', got {how!r}")
        n_layers = int(model.cfg.n_layers)
        groups = by_hook(targets, n_layers)
        cache: dict[str, torch.Tensor] = {}
        if how != "zero":
            tokens = (reference if reference is not None else self.reference_tokens()).to(next(model.parameters()).device)
            with torch.no_grad():
                _, run = model.run_with_cache(tokens, names_filter=lambda name: name in groups)
            cache = {name: run[name].detach() for name in groups}
        gen = torch.Generator().manual_seed(seed)
        hooks = [(name, _ablation_hook(comps, how, cache.get(name), gen)) for name, comps in groups.items()]
        with model.hooks(fwd_hooks=hooks):
            yield model

    def reference_tokens(self, n: int = 512, seed: int = 0) -> torch.Tensor:
        """Untriggered inputs of the circuit's task (the default reference for mean/resample ablation)."""
        if self.task.get("name") != "backdoor":
            raise ValueError("this circuit's task has no default reference; pass reference=tokens")
        cfg = BackdoorTaskConfig.model_validate(self.task)
        return backdoor.generate(cfg, n, trigger_rate=0.0, seed=[seed, 0xAB1A7E])["tokens"][:]


def select_circuit(
    scores: ComponentScores,
    model: torch.nn.Module,
    model_cfg: ModelConfig,
    task_cfg: BackdoorTaskConfig | dict[str, Any],
    pairs: ContrastPairs,
    threshold: float = 0.9,
    neuron_scores: ComponentScores | None = None,
    neuron_threshold: float = 0.5,
) -> Circuit:
    """The circuit by the module's documented rule, with the model's fingerprint and canonical hook names."""
    direction = scores.direction
    heads = sorted((c for c in scores.components if c.kind == "head"), key=lambda c: -abs(scores.scores[c.id]))
    chosen_heads, head_share = _joint_prefix(model, pairs, heads, direction, scores.base_metric, threshold)
    chosen = [c.id for c in chosen_heads]
    mlps = {c: v for c, v in scores.scores.items() if Component.parse(c).kind == "mlp"}
    neurons = neuron_scores.scores if neuron_scores is not None else {}
    for mlp in _additive_prefix(mlps, threshold):
        own = {c: v for c, v in neurons.items() if _is_neuron_of(c, Component.parse(mlp).layer)}
        chosen += _additive_prefix(own, neuron_threshold) if own else [mlp]
    n_layers = int(model.cfg.n_layers)
    hooks = {c: canonical_hook(model, Component.parse(c).hook(n_layers)) for c in chosen}
    task = task_cfg.model_dump(mode="json") if isinstance(task_cfg, BackdoorTaskConfig) else dict(task_cfg)
    rule = RULE.replace("reaches threshold ", f"reaches threshold={threshold} ")
    if neuron_scores is not None:
        rule = rule.replace("neuron_threshold", f"neuron_threshold={neuron_threshold} (neurons by {neuron_scores.method})")
    return Circuit(
        components=chosen,
        scores={**scores.scores, **(neuron_scores.scores if neuron_scores is not None else {})},
        method=scores.method,
        direction=direction,
        task=task,
        model_fingerprint=fingerprint(model, model_cfg),
        threshold=threshold,
        rule=rule,
        hooks=hooks,
        metrics={"head_share": head_share},
    )


def _joint_prefix(
    model: torch.nn.Module, pairs: ContrastPairs, ranked: list[Component], direction: str, base: float, threshold: float
) -> tuple[list[Component], float]:
    """Shortest prefix of `ranked` whose joint patch carries `threshold` of the whole list's, and the share it carries."""
    if not ranked:
        return [], float("nan")
    whole = patch_metric(model, pairs, ranked, direction) - base
    share = float("nan")
    for k in range(1, len(ranked) + 1):
        share = (patch_metric(model, pairs, ranked[:k], direction) - base) / whole if whole else 1.0
        if share >= threshold:
            return ranked[:k], share
    return ranked, share


def _is_neuron_of(comp_id: str, layer: int) -> bool:
    comp = Component.parse(comp_id)
    return comp.kind == "neuron" and comp.layer == layer


def _additive_prefix(values: dict[str, float], share: float) -> list[str]:
    """The shortest prefix of `values` ranked by |value| whose summed |value| reaches `share` of the total."""
    ranked = sorted(values, key=lambda c: abs(values[c]), reverse=True)
    total = sum(abs(v) for v in values.values())
    chosen: list[str] = []
    carried = 0.0
    for comp in ranked:
        if chosen and carried >= share * total:
            break
        chosen.append(comp)
        carried += abs(values[comp])
    return chosen


def _ablation_hook(comps: list[Component], how: str, ref: torch.Tensor | None, gen: torch.Generator):
    def hook(act: torch.Tensor, hook: Any) -> torch.Tensor:
        if ref is not None and ref.shape[1:] != act.shape[1:]:
            raise ValueError(
                f"{hook.name}: reference activations {tuple(ref.shape[1:])} do not match inputs {tuple(act.shape[1:])}; "
                "pass reference inputs of the same length"
            )
        for comp in comps:
            if how == "zero":
                value = torch.zeros_like(comp.select(act))
            elif how == "mean":
                value = comp.select(ref).mean(0, keepdim=True).expand_as(comp.select(act))
            else:
                rows = torch.randint(len(ref), (act.shape[0],), generator=gen).to(ref.device)
                value = comp.select(ref)[rows]
            act = comp.replace(act, value.to(act.dtype))
        return act

    return hook
