"""What probes and detectors share: the HookArtifact base and its on-disk form, `<stem>.safetensors` + `<stem>.json`.

A HookArtifact reads one hook at one position rule, remembers the model and data it was fitted
on, scores activations, attaches live to a model and saves itself. Loading reads exactly those two
files (no pickle, no code): the JSON is validated field by field, the tensors must hash to the
recorded `weights_sha256` and have the shapes `d_model` implies. Every failure is a ProbeError
naming the file and the field.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from whitebox import __version__
from whitebox.probes.fits import check_model, check_position, override_record
from whitebox.probes.live import LiveScores, attach_module, attach_scorer
from whitebox.runtime.artifacts import (
    ArtifactError,
    ProbeError,
    atomic_write,
    now,
    read_json,
    seal,
    sha256_file,
    unsealed,
    write_json,
)

FORMAT_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ModelIdentity(_Strict):
    arch: str = Field(min_length=1)
    fingerprint: str | None = Field(description="sha256 of whitebox.models.fingerprint; null when no ModelConfig was given")
    params_sha256: str = Field(min_length=64, max_length=64, description="sha256 of every parameter's name and shape")
    weights_sha256: str | None = Field(None, min_length=64, max_length=64, description="whitebox.fingerprint.weights_digest")
    checkpoint: str | None = Field(None, description="the pretrained checkpoint's name or folder; null: built from config")
    revision: str | None = Field(None, description="the checkpoint's revision as configured; null: none given")
    hf_config_sha256: str | None = Field(None, min_length=64, max_length=64, description="whitebox.fingerprint."
                                         "hf_config_digest; null: no Hugging Face config (or saved before it was recorded)")
    tokenizer_sha256: str | None = Field(None, min_length=64, max_length=64, description="whitebox.fingerprint."
                                         "tokenizer_digest; null: no tokenizer (or saved before it was recorded)")


class HFLocation(_Strict):
    module: str = Field(min_length=1, description="the Hugging Face module whose input or output the hook is")
    io: Literal["input", "output"]
    hidden_states_index: int | None = Field(ge=0, description="index in HF's hidden_states; null: none matches")
    final_norm: bool


class MatchPosition(_Strict):
    match: str = Field(min_length=1, description="the string whose first occurrence in each text was read")
    tokens: Literal["last", "all"] = Field(description="the last token spelling it, or all of them")
    selected: dict[str, int] = Field(description="how many fitting rows read each token")


class PromptFormat(_Strict):
    chat_template: bool = Field(description="texts were wrapped as a user turn in the tokenizer's chat template")
    template_sha256: str | None = Field(None, min_length=64, max_length=64, description="sha256 of that template")


class FingerprintOverride(_Strict):
    message: str = Field(min_length=1, description="the warning: which identity differed, naming both checkpoints")
    model: ModelIdentity = Field(description="the model the artifact was used on anyway")
    when: str


class TrainingData(_Strict):
    description: str
    sha256: str = Field(min_length=64, max_length=64)
    n: int = Field(ge=1)
    n_positive: int | None = Field(None, ge=0)


class ArtifactMeta(_Strict):
    """Fields every probe and detector JSON has."""

    format_version: Literal[1]
    hook: str = Field(min_length=1)
    position: Literal["last", "all", "mean", "mask"] | int | MatchPosition
    d_model: int = Field(ge=1)
    model: ModelIdentity | None
    hf_location: HFLocation | None = None
    prompt_format: PromptFormat | None = Field(None, description="how texts became prompts; null: fitted on token ids")
    fingerprint_overrides: list[FingerprintOverride] | None = Field(
        None, description="each use on another model under allow_fingerprint_mismatch=True before it was saved")
    training_data: TrainingData
    hyperparameters: dict[str, Any]
    metrics: dict[str, float | int | str | bool | None]
    whitebox_version: str
    created: str
    weights_sha256: str = Field(min_length=64, max_length=64)
    sha256: str = Field(min_length=64, max_length=64, description="sha256 of every other field (whitebox.runtime.artifacts.seal)")


@dataclass(kw_only=True)
class HookArtifact:
    """Base of probes and detectors: what they read, what they were fitted on, and scoring, attaching and saving.

    A subclass sets STEM (the file stem) and TYPE_KEY (the JSON field naming its type), and
    implements `type_name`, `tensors` and `score`.
    """

    STEM: ClassVar[str]
    TYPE_KEY: ClassVar[str]

    hook: str  # canonical hook name
    position: Any  # "last" | "all" | "mean" | "mask" | int | a match rule with what it selected (whitebox.inputs)
    model: dict[str, Any] | None = None  # see model_identity; None when fitted on raw arrays
    hf_location: dict[str, Any] | None = None  # where `hook` is in the Hugging Face model (whitebox.hf_map); None: native
    prompt_format: dict[str, Any] | None = None  # how texts became prompts (whitebox.inputs.prompt_format); None: tokens
    training_data: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    whitebox_version: str | None = None
    fingerprint_overrides: list[dict[str, Any]] = field(default_factory=list)  # see attach(allow_fingerprint_mismatch)

    @property
    def type_name(self) -> str:
        raise NotImplementedError

    @property
    def d_model(self) -> int:
        raise NotImplementedError

    def tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def score(self, acts: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        raise NotImplementedError

    def attach(
        self,
        model: torch.nn.Module,
        *,
        cfg: Any = None,
        allow_fingerprint_mismatch: bool = False,
        positions: Any = None,
        detach: bool = True,
    ) -> AbstractContextManager[LiveScores]:
        """Score live at this artifact's hook during any forward pass or generation, inside a `with` block.

        Checks that the model is the one it was fitted on: with cfg (its ModelConfig) the full
        whitebox fingerprint, otherwise the architecture and every parameter name and shape.
        positions overrides the stored rule (e.g. "all" for one fitted with a mask).
        detach=False keeps the scores in the autograd graph (for a loss). A use on another model
        under allow_fingerprint_mismatch=True warns and is recorded in `fingerprint_overrides`
        (and in the JSON when the artifact is saved after it).
        """
        where = f"{self.STEM} at {self.hook}"
        overridden = check_model(self.model, model, cfg, allow_fingerprint_mismatch, where)
        if overridden is not None:
            self.fingerprint_overrides.append(override_record(overridden, model, cfg))
        rule = self.position if positions is None else positions
        check_position(rule, int(getattr(getattr(model, "cfg", None), "n_ctx", 0) or 0), where)
        if hasattr(model, "hook_dict"):
            return attach_scorer(model, self.hook, self.d_model, rule, self.score, where, detach)
        if self.hf_location is None:
            raise ProbeError(f"{where}: this model is not a TransformerBridge and the {self.STEM} records no Hugging Face "
                             "module for its hook (it was fitted on a model built from config); attach it to a bridge")
        return attach_module(model, self.hf_location, self.d_model, rule, self.score, where, detach)

    def save(self, directory: str | Path) -> Path:
        """Write `<STEM>.safetensors` (self.tensors()) and `<STEM>.json` into `directory`."""
        meta = base_meta(self.hook, self.position, self.d_model, self.model, self.training_data,
                         self.hyperparameters, json_metrics(self.metrics))
        if self.hf_location is not None:
            meta["hf_location"] = self.hf_location
        if self.prompt_format is not None:
            meta["prompt_format"] = self.prompt_format
        if self.fingerprint_overrides:
            meta["fingerprint_overrides"] = self.fingerprint_overrides
        if self.created:
            meta["created"] = self.created
        meta = {"format_version": meta.pop("format_version"), self.TYPE_KEY: self.type_name, **meta}
        return write_artifact(directory, self.STEM, self.tensors(), meta)

    def check_width(self, shape: tuple[int, ...]) -> None:
        if len(shape) == 0 or shape[-1] != self.d_model:
            raise ProbeError(f"{self.STEM} at {self.hook}: expects activations [..., {self.d_model}], got shape {list(shape)}")


def loaded_fields(meta: ArtifactMeta) -> dict[str, Any]:
    """HookArtifact's fields from validated metadata, as keyword arguments of a subclass's constructor."""
    return {
        "hook": meta.hook, "model": None if meta.model is None else meta.model.model_dump(),
        "position": meta.position.model_dump() if isinstance(meta.position, MatchPosition) else meta.position,
        "hf_location": None if meta.hf_location is None else meta.hf_location.model_dump(),
        "prompt_format": None if meta.prompt_format is None else meta.prompt_format.model_dump(),
        "training_data": meta.training_data.model_dump(), "hyperparameters": meta.hyperparameters,
        "metrics": meta.metrics, "created": meta.created, "whitebox_version": meta.whitebox_version,
        "fingerprint_overrides": [o.model_dump() for o in meta.fingerprint_overrides or []],
    }


def json_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as JSON-safe plain values (NaN becomes null)."""
    out = {}
    for k, v in metrics.items():
        v = v.item() if hasattr(v, "item") else v
        out[k] = None if isinstance(v, float) and math.isnan(v) else v
    return out


def data_sha256(acts: torch.Tensor, labels: torch.Tensor | None) -> str:
    """sha256 of the float32 activations [n, d] and the labels the artifact was fitted on."""
    digest = hashlib.sha256()
    flat = acts.detach().reshape(acts.shape[0], -1)
    for start in range(0, flat.shape[0], 8192):
        digest.update(flat[start : start + 8192].to("cpu", torch.float32).contiguous().numpy().tobytes())
    if labels is not None:
        digest.update(torch.as_tensor(labels).to("cpu", torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def write_artifact(directory: str | Path, stem: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write `<stem>.safetensors` then `<stem>.json` (with the tensors' hash), each atomically."""
    directory = Path(directory)
    plain = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    weights = atomic_write(directory / f"{stem}.safetensors", lambda tmp: save_file(plain, str(tmp)))
    write_json(directory / f"{stem}.json", seal({**meta, "weights_sha256": sha256_file(weights)}))
    return directory


def read_artifact(
    directory: str | Path,
    stem: str,
    schema: type[ArtifactMeta],
    shapes: Callable[[ArtifactMeta], dict[str, tuple[int, ...]]],
) -> tuple[dict[str, torch.Tensor], ArtifactMeta]:
    """Validated metadata and tensors of `<stem>.json` + `<stem>.safetensors`; ProbeError on any defect."""
    directory = Path(directory)
    meta_path, weights_path = directory / f"{stem}.json", directory / f"{stem}.safetensors"
    try:
        raw = read_json(meta_path)
    except ArtifactError as err:
        raise ProbeError(str(err)) from None
    if not isinstance(raw, dict):
        raise ProbeError(f"{meta_path}: expected a JSON object, got {type(raw).__name__}")
    if "format_version" not in raw:
        raise ProbeError(f"{meta_path}: missing field 'format_version'; the file is not a whitebox {stem}")
    if raw["format_version"] != FORMAT_VERSION:
        raise ProbeError(f"{meta_path}: field 'format_version' is {raw['format_version']!r}; "
                         f"this whitebox reads format {FORMAT_VERSION} (re-save the {stem} with this version)")
    if "sha256" not in raw:
        raise ProbeError(f"{meta_path}: missing field 'sha256' (the hash of every other field; files saved before "
                         f"whitebox sealed them have none): fit and save the {stem} again")
    try:
        meta = schema.model_validate(raw)
    except ValidationError as err:
        raise ProbeError(f"{meta_path}: {_describe(err)}") from None
    if unsealed(raw):
        raise ProbeError(f"{meta_path}: content hash differs from field 'sha256'; the file was edited or damaged "
                         f"(fit and save the {stem} again)")
    if not weights_path.is_file():
        raise ProbeError(f"{weights_path}: file not found")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ProbeError(f"{weights_path}: unreadable safetensors file ({err}); it is truncated or corrupt") from None
    if sha256_file(weights_path) != meta.weights_sha256:
        raise ProbeError(f"{weights_path}: content hash differs from field 'weights_sha256' of {meta_path.name}; "
                         "the file was modified or replaced")
    expected = shapes(meta)
    if set(tensors) != set(expected):
        raise ProbeError(f"{weights_path}: tensors {sorted(tensors)}, expected {sorted(expected)}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ProbeError(f"{meta_path}: field 'd_model' is {meta.d_model} but {weights_path.name} tensor "
                             f"{name!r} has shape {list(tensors[name].shape)}, expected {list(shape)}; re-save the {stem}")
        if tensors[name].is_floating_point() and not bool(torch.isfinite(tensors[name]).all()):
            raise ProbeError(f"{weights_path}: tensor {name!r} holds NaN or infinity; fit and save the {stem} again")
    return tensors, meta


def base_meta(
    hook: str, position: Any, d_model: int, model: dict | None, training_data: dict, hyperparameters: dict, metrics: dict
) -> dict[str, Any]:
    """The shared fields of a new artifact, in the order they appear in the JSON."""
    return {
        "format_version": FORMAT_VERSION,
        "hook": hook,
        "position": position,
        "d_model": d_model,
        "model": model,
        "training_data": training_data,
        "hyperparameters": hyperparameters,
        "metrics": metrics,
        "whitebox_version": __version__,
        "created": now(),
    }


def _describe(err: ValidationError) -> str:
    """One line per invalid field: `field 'a.b': message (got value)`."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("literal[", "int", "str", "function")))
        got = "" if e["type"] == "missing" else f" (got {e.get('input')!r})"
        message = "missing" if e["type"] == "missing" else e["msg"].removeprefix("Value error, ")
        parts.append(f"field {loc!r}: {message}{got}")
    return "; ".join(dict.fromkeys(parts))
