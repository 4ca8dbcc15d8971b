"""The memory a model, a task's data or a capture needs, estimated before allocating: what cannot fit is refused.

Estimates are deliberately low (weights, optimizer state and the main activations, no allocator
slack), so a refusal means the work cannot fit; one that passes may still be tight. The limit is
the smallest of the free RAM, the cgroup's memory limit and `ulimit -v`/`-d`, less what this
process already holds against them.
"""

from __future__ import annotations

import math
import os
import resource
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from whitebox.config import ConfigError, ExperimentConfig, ModelConfig

if TYPE_CHECKING:
    from whitebox.tasks import Task

FLOAT, TOKEN = 4, 8  # bytes of a float32 value and of an int64 token id
TRAINED_PARAM = 4 * FLOAT  # a trained parameter: its weight, its gradient and AdamW's two moments
TOKEN_COLUMNS = 8  # int64 values per token an example costs while drawn (the backdoor task peaks at ~9: numpy draws, columns)


def available_bytes() -> int:
    """What this process may still allocate: the least of free RAM, the cgroup's room and the ulimits' room."""
    room = [_free_ram(), _cgroup_room(), _rlimit_room(resource.RLIMIT_AS, 0), _rlimit_room(resource.RLIMIT_DATA, 5)]
    return min(r for r in room if r is not None)


def require_memory(need: int, what: str, fix: str, error: type[Exception], gpu: torch.device | None = None) -> None:
    """Raise `error` naming the estimate, the limit and the fix (the keys to lower) when `need` bytes cannot fit
    (in this process's memory, or free on the CUDA device `gpu`)."""
    limit = available_bytes() if gpu is None else torch.cuda.mem_get_info(gpu)[0]
    if need > limit:
        where = "this process can allocate" if gpu is None else f"free on {gpu}"
        raise error(f"{what} needs about {_size(need)} of memory, more than the {_size(limit)} {where}; {fix}")


def model_params(cfg: ModelConfig, d_vocab: int, n_ctx: int) -> int:
    """Parameters of a model built from config: embeddings, unembedding and, per block, attention, MLP and norms."""
    d, inner, llama = cfg.d_model, cfg.n_heads * cfg.head_dim, cfg.arch == "llama"
    mlp = (3 if llama else 2) * d * cfg.mlp_dim
    biases = 0 if llama else 3 * inner + 2 * d + cfg.mlp_dim  # q, k, v, o and the MLP's two
    norms = (1 if llama or cfg.normalization == "RMS" else 2) * d  # one norm's weight (and bias)
    block = 4 * d * inner + mlp + biases + 2 * norms
    embeddings = 2 * d_vocab * d + d_vocab + (0 if llama else n_ctx * d)  # embed, unembed (+ bias), positions
    return embeddings + cfg.n_layers * block + norms


def model_bytes(cfg: ModelConfig, d_vocab: int, n_ctx: int, batch: int = 0, length: int = 0) -> int:
    """A model trained on `batch` inputs of `length` tokens (batch 0: only its fp32 weights, e.g. to load it)."""
    params = model_params(cfg, d_vocab, n_ctx)
    if batch == 0:
        return params * FLOAT
    # per input and position: the residual stream, attention scores and MLP activations of every block, and the logits
    per_position = cfg.n_layers * (4 * cfg.d_model + cfg.n_heads * length + 2 * cfg.mlp_dim) + 2 * d_vocab
    return params * TRAINED_PARAM + batch * length * per_position * FLOAT


def pretrained_bytes(hf_config: dict) -> int:
    """The fp32 weights of a Hugging Face checkpoint from its config.json (GPT-2 and Llama-style key names); 0 when
    the keys are not there (then nothing is estimated)."""
    def key(*names: str) -> int:
        return next((v for n in names if isinstance(v := hf_config.get(n), int) and not isinstance(v, bool) and v > 0), 0)

    d, layers, vocab = key("hidden_size", "n_embd", "d_model"), key("num_hidden_layers", "n_layer"), key("vocab_size")
    inner = key("intermediate_size", "n_inner", "ffn_dim") or 4 * d
    return (2 * vocab * d + layers * (4 * d * d + 3 * d * inner)) * FLOAT


def examples_bytes(n: int, seq_len: int) -> int:
    """`n` task examples of `seq_len` tokens."""
    return n * (seq_len + 2) * TOKEN * TOKEN_COLUMNS


def capture_bytes(n: int, hooks: int, width: int, positions: int = 1) -> int:
    """Activations of `n` inputs at `hooks` hooks of `width`, `positions` positions each."""
    return n * hooks * width * positions * FLOAT


def check_config(cfg: ExperimentConfig, sections: Sequence[str], task: Task) -> None:
    """Refuse (ConfigError) a config whose model or data cannot fit, before anything is allocated.

    Only the `sections` the experiment reads count. A task of texts is not estimated (its size is
    its file's, and its model's the checkpoint's)."""
    if task.uses_model_tokenizer:
        return
    reads, seq_len = set(sections), task.seq_len()
    locate = cfg.locate.n_fit + cfg.locate.n_test if "locate" in reads else 0
    examples = max(_task_examples(cfg), locate, 2 * cfg.locate.circuit_pairs if locate else 0,
                   cfg.treat.n_train if "treat" in reads else 0,
                   cfg.deception.n_deceive + cfg.deception.n_trusted if "deception" in reads else 0)
    require_memory(examples_bytes(examples, seq_len), f"the task's data ({examples:,} examples of {seq_len} tokens)",
                   "lower task.n_train / treat.n_train / locate.n_fit / locate.circuit_pairs / deception.n_deceive (whichever is "
                   "largest)", ConfigError)
    model = cfg.model
    d_vocab, n_ctx = model.d_vocab or len(task.vocabulary()), model.n_ctx or seq_len
    if "model" in reads and model.source == "from_config":
        batch = max(getattr(cfg, name).batch_size for name in ("training", "treat", "revive") if name in reads or name == "training")
        what, fix = f"the model ({model_params(model, d_vocab, n_ctx):,} parameters)", "lower model.d_model / model.d_mlp / model.n_layers"
        gpu = _gpu(cfg.training.device)
        if gpu is not None:  # built in this process's memory, then trained on the GPU
            require_memory(model_bytes(model, d_vocab, n_ctx), what, fix, ConfigError)
        require_memory(model_bytes(model, d_vocab, n_ctx, batch, seq_len), f"{what} trained on batches of {batch}",
                       f"{fix} or the batch sizes", ConfigError, gpu)
    if not locate:
        return
    hooks = 2 * model.n_layers + 1 if cfg.locate.hooks == "resid" else len(cfg.locate.hooks)  # see capture.residual_hooks
    require_memory(capture_bytes(locate, hooks, model.d_model, seq_len if cfg.locate.position == "all" else 1),
                   f"the probes' activations ({locate:,} inputs at {hooks} hooks)",
                   "lower locate.n_fit / locate.n_test (or set locate.position: last)", ConfigError)


def _gpu(device: str) -> torch.device | None:
    """The CUDA device training.device trains on, or None (the CPU, MPS: this process's memory)."""
    if not (device.startswith("cuda") or device == "auto") or not torch.cuda.is_available():
        return None
    return torch.device("cuda", torch.cuda.current_device()) if device in ("auto", "cuda") else torch.device(device)


def _task_examples(cfg: ExperimentConfig) -> int:
    """The most examples the task section asks for (its n_train and n_eval, where it has them)."""
    counts = [getattr(cfg.task, key, 0) for key in ("n_train", "n_eval")]
    return max(c for c in counts if isinstance(c, int))


def _size(n: int) -> str:
    """Bytes in the largest unit that keeps the number at least 1 (e.g. 25.8 GB)."""
    if n <= 0:
        return "0 B"
    power = min(int(math.log(n, 1000)), 6)
    return f"{n / 1000**power:.1f} {['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'][power]}"


def _free_ram() -> int:
    """MemAvailable (what can be allocated without swapping), else the free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: only the other limits apply


def _cgroup_room() -> int | None:
    """The cgroup's memory limit less its use (cgroup v2, then v1); None without a limit."""
    for limit, usage in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            cap = (Path("/sys/fs/cgroup") / limit).read_text().strip()
            if cap == "max" or int(cap) >= 1 << 60:
                return None
            return int(cap) - int((Path("/sys/fs/cgroup") / usage).read_text())
        except (OSError, ValueError):
            continue
    return None


def _rlimit_room(which: int, statm_field: int) -> int | None:
    """A ulimit less what this process maps against it (/proc/self/statm: size, or data); None when unlimited."""
    soft, _ = resource.getrlimit(which)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        used = int(Path("/proc/self/statm").read_text().split()[statm_field]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        used = 0
    return soft - used
