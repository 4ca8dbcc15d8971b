"""Build TransformerBridge models from config and save/load them as checked safetensors artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from whitebox import __version__
from whitebox.config import ModelConfig
from whitebox.fingerprint import fingerprint, fingerprint_of
from whitebox.runtime.artifacts import (
    ArtifactError,
    atomic_write,
    one_line,
    read_json,
    seal,
    sha256_file,
    unsealed,
    write_json,
)
from whitebox.runtime.memory import model_bytes, pretrained_bytes, require_memory

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

FORMAT_VERSION = 1
WEIGHTS, META = "model.safetensors", "model.json"
OPTIONAL_FIELDS = {"task": dict, "metrics": dict, "regime": str, "condition": str}  # what save_model's callers add


def build_model(
    cfg: ModelConfig, vocab: list[str] | None = None, device: str | torch.device = "cpu", *, pretrained_weights: bool = True
) -> TransformerBridge:
    """A bridge: freshly initialised from the config (seed with torch.manual_seed first; no hub access), or the
    pretrained checkpoint cfg.name_or_path (with pretrained_weights=False: its architecture, randomly initialised)."""
    # transformer-lens is imported here, not at the top: saving, loading checks and checkpoints do not need it
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    if cfg.source == "pretrained":
        return load_pretrained(cfg, device, pretrained_weights=pretrained_weights)
    if vocab is None:
        raise ValueError("a model built from config needs the task's vocabulary")
    if cfg.d_vocab is None or cfg.n_ctx is None:
        raise ValueError("resolve model.d_vocab and model.n_ctx from the task before building")
    if cfg.d_vocab < len(vocab):
        raise ValueError(f"model.d_vocab ({cfg.d_vocab}) is smaller than the task vocabulary ({len(vocab)})")
    tokenizer = make_tokenizer(vocab + [f"<unused{i}>" for i in range(cfg.d_vocab - len(vocab))])
    if cfg.arch == "native":
        bridge_cfg = TransformerBridgeConfig(
            n_layers=cfg.n_layers,
            d_model=cfg.d_model,
            n_heads=cfg.n_heads,
            d_head=cfg.head_dim,
            d_mlp=cfg.mlp_dim,
            n_ctx=cfg.n_ctx,
            d_vocab=cfg.d_vocab,
            act_fn=cfg.act_fn,
            normalization_type=None if cfg.normalization == "none" else cfg.normalization,
        )
        model = TransformerBridge.boot_native(bridge_cfg, tokenizer=tokenizer, device="cpu")
    else:
        hf_model = _hf_model(cfg)
        model = TransformerBridge.boot_transformers(cfg.arch, hf_model=hf_model, tokenizer=tokenizer, device="cpu")
    return model.to(device, print_details=False)


def load_pretrained(
    cfg: ModelConfig, device: str | torch.device = "cpu", *, pretrained_weights: bool = True
) -> TransformerBridge:
    """A Hugging Face checkpoint (local folder or hub id) as a bridge; with pretrained_weights=False its architecture
    freshly initialised (the untrained control; seed with torch.manual_seed first). One-line ArtifactError on failure."""
    from transformer_lens.model_bridge import TransformerBridge

    name = cfg.name_or_path
    hf_config = Path(name) / "config.json"
    if hf_config.is_file() and not cfg.device_map:  # refuse what cannot fit before transformers allocates it
        # (under a device_map accelerate places the weights over the devices and offloads what does not fit)
        data = read_json(hf_config)
        require_memory(pretrained_bytes(data) if isinstance(data, dict) else 0, f"{hf_config}: this checkpoint",
                       "load it on a machine with more memory, or free some", ArtifactError)
    placement = {"device_map": cfg.device_map} if cfg.device_map else {"device": "cpu"}
    try:
        bridge = TransformerBridge.boot_transformers(name, dtype=getattr(torch, cfg.dtype or "float32"),
                                                     revision=cfg.revision, load_weights=pretrained_weights, **placement)
    except (OSError, ValueError, KeyError) as err:
        raise ArtifactError(f"model.name_or_path: cannot load {name!r} ({one_line(err, 300)}); give a save_pretrained "
                            "folder or a hub id (the hub needs network access)") from None
    tokenizer = bridge.tokenizer
    if tokenizer is not None and tokenizer.pad_token_id is None:  # padding is never read, but a batch needs an id there
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    bridge = bridge.eval()
    return bridge if cfg.device_map else bridge.to(device, print_details=False)  # accelerate placed it already


def _hf_model(cfg: ModelConfig) -> torch.nn.Module:
    """A randomly initialised HF GPT-2 or Llama built from an in-memory config."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if cfg.arch == "gpt2":
        hf_cfg = GPT2Config(
            n_layer=cfg.n_layers,
            n_embd=cfg.d_model,
            n_head=cfg.n_heads,
            n_inner=cfg.mlp_dim,
            n_positions=cfg.n_ctx,
            vocab_size=cfg.d_vocab,
            activation_function=cfg.act_fn,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=None,
            eos_token_id=None,
        )
        return GPT2LMHeadModel(hf_cfg)
    hf_cfg = LlamaConfig(
        num_hidden_layers=cfg.n_layers,
        hidden_size=cfg.d_model,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        intermediate_size=cfg.mlp_dim,
        max_position_embeddings=cfg.n_ctx,
        vocab_size=cfg.d_vocab,
        hidden_act=cfg.act_fn,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    return LlamaForCausalLM(hf_cfg)


def make_tokenizer(vocab: list[str]) -> Any:
    """A word-level HF tokenizer over the task's token strings (space separated), built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    word_level = Tokenizer(models.WordLevel(vocab={tok: i for i, tok in enumerate(vocab)}, unk_token=vocab[0]))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    special = "<bos>" if "<bos>" in vocab else vocab[0]
    # add_bos_token=True and a name stop transformer-lens from re-downloading the tokenizer by name.
    return PreTrainedTokenizerFast(
        tokenizer_object=word_level,
        name_or_path="whitebox-synthetic",
        add_bos_token=True,
        bos_token=special,
        eos_token=special,
        pad_token=special,
        unk_token=vocab[0],
    )


def state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as independent CPU tensors (tied weights such as GPT-2's embeddings are copied)."""
    return {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}


def save_model(model: torch.nn.Module, cfg: ModelConfig, directory: str | Path, extra: dict | None = None) -> Path:
    """Write model.safetensors and model.json (config, fingerprint, hash) into `directory`."""
    directory = Path(directory)
    weights = atomic_write(directory / WEIGHTS, lambda tmp: save_file(state_tensors(model), str(tmp)))
    meta = {
        "format_version": FORMAT_VERSION,
        "whitebox_version": __version__,
        "model_config": cfg.model_dump(mode="json"),
        "fingerprint": fingerprint(model, cfg),
        "weights_sha256": sha256_file(weights),
        **(extra or {}),
    }
    write_json(directory / META, seal(meta))
    return directory


def read_model_meta(directory: str | Path) -> dict[str, Any]:
    """The checked model.json of a saved model."""
    path = Path(directory) / META
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    for key in ("format_version", "model_config", "fingerprint", "weights_sha256"):
        if key not in meta:
            raise ArtifactError(f"{path}: missing field {key!r}; the file is not a whitebox model")
    fingerprint = meta["fingerprint"]
    kinds = {"arch": str, "dims": dict, "params": dict, "sha256": str}
    if not isinstance(fingerprint, dict) or not all(isinstance(fingerprint.get(k), t) for k, t in kinds.items()):
        raise ArtifactError(f"{path}: field 'fingerprint' must hold arch, dims, params and sha256; the file is damaged")
    if not isinstance(meta["weights_sha256"], str) or not isinstance(meta["model_config"], dict):
        raise ArtifactError(f"{path}: fields 'weights_sha256' (a string) and 'model_config' (an object) are damaged")
    if meta["format_version"] != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {meta['format_version']!r} is not supported (this whitebox reads {FORMAT_VERSION})"
        )
    for key, kind in OPTIONAL_FIELDS.items():
        if key in meta and not isinstance(meta[key], kind):
            raise ArtifactError(f"{path}: field {key!r} must be a JSON {'object' if kind is dict else 'string'}, got "
                                f"{type(meta[key]).__name__}; the file is damaged")
    if not all(isinstance(v, (int, float, str, bool)) or v is None for v in meta.get("metrics", {}).values()):
        raise ArtifactError(f"{path}: field 'metrics' must map names to numbers or strings; the file is damaged")
    if unsealed(meta):
        raise ArtifactError(f"{path}: content hash differs from field 'sha256' (or it has none); the file was edited or "
                            "damaged: save the model again")
    if "vocab" in meta:
        _check_vocab(path, meta["vocab"], meta["model_config"].get("d_vocab"))
    return meta


def _check_vocab(path: Path, vocab: Any, d_vocab: Any) -> None:
    """A saved vocabulary is a list of distinct token strings, no longer than the model's d_vocab."""
    if not isinstance(vocab, list) or not vocab or not all(isinstance(t, str) and t for t in vocab):
        raise ArtifactError(f"{path}: field 'vocab' must be a non-empty list of token strings; the file is damaged")
    if len(set(vocab)) != len(vocab):
        raise ArtifactError(f"{path}: field 'vocab' names a token twice; the file is damaged")
    if isinstance(d_vocab, int) and len(vocab) > d_vocab:
        raise ArtifactError(f"{path}: field 'vocab' has {len(vocab)} tokens but model_config.d_vocab is {d_vocab}")


def load_weights(model: torch.nn.Module, cfg: ModelConfig, directory: str | Path) -> torch.nn.Module:
    """Load saved weights into `model` in place, refusing any fingerprint or hash mismatch."""
    directory = Path(directory)
    meta = read_model_meta(directory)
    saved, ours = meta["fingerprint"], fingerprint(model, cfg)
    if saved["sha256"] != ours["sha256"]:
        raise ArtifactError(f"{directory / META}: fingerprint mismatch: {_describe_mismatch(saved, ours)}")
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise ArtifactError(f"{weights}: file not found")
    if sha256_file(weights) != meta["weights_sha256"]:
        raise ArtifactError(f"{weights}: content hash differs from {META}; the file is corrupt or was replaced")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise ArtifactError(f"{weights}: unreadable safetensors file ({err})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ArtifactError(f"{weights}: tensors do not fit the model ({str(err).strip().splitlines()[-1].strip()})") from None
    return model


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> tuple[TransformerBridge, ModelConfig]:
    """A saved model as a bridge and its ModelConfig: a whitebox model (model.json, checked) or a Hugging Face
    save_pretrained folder (config.json)."""
    directory = Path(directory)
    if not (directory / META).is_file() and (directory / "config.json").is_file():
        cfg = ModelConfig(source="pretrained", name_or_path=str(directory))
        return load_pretrained(cfg, device), cfg
    if not (directory / META).is_file():
        raise ArtifactError(f"{directory}: no {META} (a whitebox model) and no config.json (a save_pretrained folder) here")
    meta = read_model_meta(directory)
    try:
        cfg = ModelConfig.model_validate(meta["model_config"])
    except ValidationError as err:
        raise ArtifactError(f"{Path(directory) / META}: field 'model_config' is invalid ({err.errors()[0]['msg']})") from None
    if cfg.source == "from_config":
        _check_before_building(directory, meta, cfg)
    vocab = meta.get("vocab") or [str(i) for i in range(cfg.d_vocab or 0)]
    model = build_model(cfg, None if cfg.source == "pretrained" else vocab)
    return load_weights(model, cfg, directory).to(device, print_details=False), cfg


def _check_before_building(directory: Path, meta: dict[str, Any], cfg: ModelConfig) -> None:
    """Refuse, before any allocation, weights that are not the file recorded, a config they were not saved with,
    or a model too large for this machine."""
    weights, path = directory / WEIGHTS, directory / META
    if cfg.d_vocab is None or cfg.n_ctx is None:
        raise ArtifactError(f"{path}: field 'model_config' lacks d_vocab or n_ctx; the file is damaged")
    if not weights.is_file():
        raise ArtifactError(f"{weights}: file not found")
    if sha256_file(weights) != meta["weights_sha256"]:
        raise ArtifactError(f"{weights}: content hash differs from {META}; the file is corrupt or was replaced")
    try:
        with safe_open(str(weights), "pt") as f:
            params = {name: list(f.get_slice(name).get_shape()) for name in f.keys()}
    except (SafetensorError, OSError) as err:
        raise ArtifactError(f"{weights}: unreadable safetensors file ({one_line(err)})") from None
    if fingerprint_of(cfg.arch, cfg, params)["sha256"] != meta["fingerprint"]["sha256"]:
        raise ArtifactError(f"{path}: field 'model_config' or 'fingerprint' does not match {WEIGHTS}; the file was edited")
    require_memory(model_bytes(cfg, cfg.d_vocab, cfg.n_ctx), f"{path}: this model", "load it on a machine with more "
                   "memory, or free some", ArtifactError)


def _describe_mismatch(saved: dict[str, Any], ours: dict[str, Any]) -> str:
    if saved["arch"] != ours["arch"]:
        return f"saved arch {saved['arch']!r}, model arch {ours['arch']!r}"
    dims = [f"{k} saved {v!r} vs model {ours['dims'].get(k)!r}" for k, v in saved["dims"].items() if ours["dims"].get(k) != v]
    if dims:
        return "; ".join(dims)
    a, b = saved["params"], ours["params"]
    diff = sorted(set(a) ^ set(b)) or [k for k in a if a[k] != b[k]]
    return f"parameters differ: {', '.join(diff[:5])}" + (" ..." if len(diff) > 5 else "")
