"""Benchmark plant training through the TransformerBridge against a plain-torch GPT of the same size.

One training step each (AdamW, answer-token cross-entropy, the batch of the backdoor task), the
bridge via whitebox's own Backprop updater and `supervised` loss, the reference a minimal GPT
(pre-LN blocks, causal torch attention, GELU MLP) with the same widths and parameter count in the
same process. Reports training tokens per second and the ratio ours / plain torch (target >= 0.9
on the GPU). Timings are medians of --repeats interleaved rounds; on CPU they are this process's
CPU time (use --threads 1 on a shared machine), on CUDA wall time after synchronising.

    python scripts/bench_plant.py --out bench_plant.json                       # CPU, quickstart size
    python scripts/bench_plant.py --device cuda --d-model 512 --n-layers 8 --precision bf16 --compile
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from whitebox.config import ModelConfig, TrainingConfig
from whitebox.models import build_model
from whitebox.tasks import get_task
from whitebox.tasks.backdoor import BackdoorTaskConfig
from whitebox.training import Backprop, supervised

RATIO_TARGET = 0.9


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_mlp: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_mlp), nn.GELU(), nn.Linear(d_mlp, d_model))
        self.n_heads = n_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, self.n_heads, d // self.n_heads).unbind(2)  # each b s h e
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.out(att.transpose(1, 2).reshape(b, s, d))
        return x + self.mlp(self.ln2(x))


class PlainGPT(nn.Module):
    """The reference: what a researcher would write in plain torch for the same model."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed, self.pos = nn.Embedding(cfg.d_vocab, cfg.d_model), nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads, cfg.mlp_dim) for _ in range(cfg.n_layers))
        self.ln, self.unembed = nn.LayerNorm(cfg.d_model), nn.Linear(cfg.d_model, cfg.d_vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln(x))


def plain_step(model: nn.Module, cfg: TrainingConfig, device: torch.device) -> Callable[[dict], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else None

    def step(batch: dict) -> None:
        with amp if amp is not None else torch.enable_grad():
            loss = F.cross_entropy(model(batch["tokens"])[:, -1].float(), batch["target"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()

    return step


def timed(step: Callable[[dict], None], batch: dict, device: torch.device, iters: int) -> float:
    """Seconds per step: CPU time of this process on CPU, wall time on CUDA."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = clock()
    for _ in range(iters):
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (clock() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--iters", type=int, default=20, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU")
    parser.add_argument("--out", default="bench_plant.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    task = BackdoorTaskConfig(seq_len=args.seq_len, n_values=64)
    vocab = get_task(task).vocabulary()
    model_cfg = ModelConfig(arch="native", n_layers=args.n_layers, d_model=args.d_model, n_heads=args.n_heads,
                            d_vocab=len(vocab), n_ctx=get_task(task).seq_len())
    train_cfg = TrainingConfig(batch_size=args.batch_size, precision=args.precision, device=args.device)
    rows = get_task(task).sample(args.batch_size, task.trigger_rate, seed=0).select_columns(["tokens", "target"])[:]
    batch = {k: v.to(device) for k, v in rows.items()}

    torch.manual_seed(0)
    bridge = build_model(model_cfg, vocab, device).train()
    updater = Backprop(bridge, train_cfg, device)
    forward = torch.compile(bridge) if args.compile else bridge
    ours = lambda b: updater.step(forward, b, supervised)  # noqa: E731
    plain_model = PlainGPT(model_cfg).to(device).train()
    plain = plain_step(torch.compile(plain_model) if args.compile else plain_model, train_cfg, device)
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("ours", bridge), ("plain", plain_model))}

    steps = {"ours": ours, "plain": plain}
    for step in steps.values():  # warm-up (and compilation)
        timed(step, batch, device, 3)
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            samples[name].append(timed(step, batch, device, args.iters))
    tokens = args.batch_size * batch["tokens"].shape[1]
    seconds = {name: statistics.median(s) for name, s in samples.items()}
    result = {
        "device": str(device), "precision": args.precision, "compile": args.compile, "threads": torch.get_num_threads(),
        "model": model_cfg.model_dump(mode="json"), "batch_size": args.batch_size, "tokens_per_step": tokens, "params": params,
        "seconds_per_step": seconds, "samples": samples,
        "tokens_per_second": {name: tokens / s for name, s in seconds.items()},
        "ratio_ours_over_plain": seconds["plain"] / seconds["ours"], "target": RATIO_TARGET,
        "torch": torch.__version__, "platform": platform.platform(),
    }
    print(f"{'':8}{'params':>10}{'ms/step':>10}{'tokens/s':>12}")
    for name in steps:
        print(f"{name:8}{params[name]:>10}{1000 * seconds[name]:>10.2f}{result['tokens_per_second'][name]:>12.0f}")
    print(f"ours / plain torch throughput: {result['ratio_ours_over_plain']:.2f} (target >= {RATIO_TARGET} on GPU)")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
