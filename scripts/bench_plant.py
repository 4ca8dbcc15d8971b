"""Benchmark plant training (whitebox's fast path and the hooked bridge) against a plain-torch GPT of the same size.

One training step each (AdamW, answer-token cross-entropy, the batch of the backdoor task): whitebox
through its own Backprop updater and `supervised` loss, once on the hook-free fast path (what plant
training runs) and once through the TransformerBridge's hooked forward; the reference a minimal GPT
(pre-LN blocks, fused QKV, scaled_dot_product_attention, GELU MLP, unembedding only the answer
position) holding the very same weights, as a researcher would write it and, as the floor, with the
last block computed at the answer position only (the fast path's shortcut). Before timing, all train a
few steps from the same weights on the same batch and must reach the same losses. Reports training tokens per second and
the ratio ours / plain torch (target >= 0.9). Timings are medians of --repeats interleaved rounds,
CPU time of this process and wall time (use --threads 1 on a shared machine); on CUDA wall time
after synchronising. `ours_every_row` is the fast path without its distinct-rows shortcut (the first
block once per distinct (token, position) pair, taken when those are at most a quarter of the rows, as
in the grokking config's full batch); `--config` takes model, optimizer and batch from an experiment config.

    python scripts/bench_plant.py --threads 1 --out bench_plant.json           # CPU, quickstart size
    python scripts/bench_plant.py --device cuda --d-model 512 --n-layers 8 --precision bf16 --compile
    python scripts/bench_plant.py --threads 1 --config configs/grokking_nanda.yaml --iters 5 --out bench_plant_grok.json
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
from plain_gpt import PlainGPT
from torch import nn

from whitebox import fast_path
from whitebox.config import ConfigError, ModelConfig, TrainingConfig, load_config
from whitebox.models import build_model
from whitebox.runner import resolve_config
from whitebox.tasks import get_task
from whitebox.tasks.backdoor import BackdoorTaskConfig
from whitebox.training import Backprop, supervised
from whitebox.training.backprop import lr_factor

RATIO_TARGET = 0.9
CHECK_STEPS = 5  # steps from the same weights whose losses must agree
LOSS_TOLERANCE = 1e-4


def plain_step(model: nn.Module, cfg: TrainingConfig, device: torch.device) -> Callable[[dict], float]:
    """The same update as Backprop: AdamW with decay on matrices only, its warmup schedule, clipping; returns the loss."""
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else None

    def step(batch: dict) -> float:
        with amp if amp is not None else torch.enable_grad():
            loss = F.cross_entropy(model(batch["tokens"]).float(), batch["target"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        return float(loss.detach())

    return step


def timed(step: Callable[[dict], float], batch: dict, device: torch.device, iters: int) -> tuple[float, float]:
    """Seconds per step: (CPU time of this process, wall time); on CUDA both are wall time after synchronising."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(iters):
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = (time.perf_counter() - wall) / iters
    return (wall if device.type == "cuda" else (time.process_time() - cpu) / iters), wall


def through(fast: bool, step: Callable[[dict], float]) -> Callable[[dict], float]:
    """`step` with whitebox's fast path on or off."""

    def run(batch: dict) -> float:
        with fast_path.switched(fast):
            return step(batch)

    return run


def every_row(step: Callable[[dict], float]) -> Callable[[dict], float]:
    """`step` with the fast path's first block computed on every row, never once per distinct (token, position)."""

    def run(batch: dict) -> float:
        distinct, fast_path._distinct_rows = fast_path._distinct_rows, lambda tokens, vocab: None
        try:
            return step(batch)
        finally:
            fast_path._distinct_rows = distinct

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    sizes = {"n_layers": 2, "d_model": 64, "n_heads": 4, "batch_size": 128, "seq_len": 16}
    for key, default in sizes.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, help=f"default {default} (not with --config)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--iters", type=int, default=20, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU")
    parser.add_argument("--config", help="take the model, the optimizer settings and the batch (the first "
                        "training.batch_size rows of the task's training set) from this experiment config instead")
    parser.add_argument("--out", default="bench_plant.json")
    args = parser.parse_args()
    given = [f"--{key.replace('_', '-')}" for key in sizes if getattr(args, key) is not None]
    if args.config and given:
        parser.error(f"--config sets the model and the batch; leave out {', '.join(given)}")
    for key, default in sizes.items():
        setattr(args, key, default if getattr(args, key) is None else getattr(args, key))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.config:
        try:
            cfg = resolve_config(load_config(args.config, [f"training.precision={args.precision}",
                                                           f"training.device={args.device}"]))
        except ConfigError as err:
            raise SystemExit(f"bench_plant: {err}") from None
        task, model_cfg, train_cfg = get_task(cfg.task), cfg.model, cfg.training
        rows = task.train_set(cfg.run.seed).select_columns(["tokens", "target"])[: train_cfg.batch_size]
        vocab = task.vocabulary()
    else:
        backdoor = BackdoorTaskConfig(seq_len=args.seq_len, n_values=64)
        task = get_task(backdoor)
        vocab = task.vocabulary()
        model_cfg = ModelConfig(arch="native", n_layers=args.n_layers, d_model=args.d_model, n_heads=args.n_heads,
                                d_vocab=len(vocab), n_ctx=task.seq_len())
        train_cfg = TrainingConfig(batch_size=args.batch_size, precision=args.precision, device=args.device)
        rows = task.sample(args.batch_size, backdoor.trigger_rate, seed=0).select_columns(["tokens", "target"])[:]
    batch = {k: v.to(device) for k, v in rows.items()}
    batch_size = len(batch["tokens"])

    torch.manual_seed(0)
    bridges = {name: build_model(model_cfg, vocab, device).train() for name in ("ours", "ours_every_row", "bridge")}
    for name in ("ours_every_row", "bridge"):
        bridges[name].load_state_dict(bridges["ours"].state_dict())
    plain_model = PlainGPT(model_cfg).to(device).train().copy_from(bridges["ours"])
    floor_model = PlainGPT(model_cfg, answer_only=True).to(device).train().copy_from(bridges["ours"])
    params = {"ours": sum(p.numel() for p in bridges["ours"].parameters()),
              "plain": sum(p.numel() for p in plain_model.parameters())}

    def whitebox_step(model: nn.Module) -> Callable[[dict], float]:
        updater = Backprop(model, train_cfg, device)
        forward = torch.compile(model) if args.compile else model
        return lambda b: updater.step(forward, b, supervised)["loss"]

    steps = {"ours": through(True, whitebox_step(bridges["ours"])),
             "ours_every_row": every_row(through(True, whitebox_step(bridges["ours_every_row"]))),
             "bridge": through(False, whitebox_step(bridges["bridge"])),
             "plain": plain_step(torch.compile(plain_model) if args.compile else plain_model, train_cfg, device),
             "plain_answer_only": plain_step(torch.compile(floor_model) if args.compile else floor_model, train_cfg, device)}
    # the same answer: from the same weights on the same batch, the same losses step after step (also the warm-up)
    losses = {name: [step(batch) for _ in range(CHECK_STEPS)] for name, step in steps.items()}
    gaps = {name: max(abs(a - b) for a, b in zip(losses[name], losses["plain"])) for name in steps if name != "plain"}
    if max(gaps.values()) > LOSS_TOLERANCE or params["ours"] != params["plain"]:
        raise SystemExit(f"they do not compute the same training: loss gaps {gaps}, parameters {params}")
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    wall: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            c, w = timed(step, batch, device, args.iters)
            cpu[name].append(c)
            wall[name].append(w)
    tokens = batch_size * batch["tokens"].shape[1]
    seconds = {name: statistics.median(s) for name, s in cpu.items()}
    result = {
        "device": str(device), "precision": args.precision, "compile": args.compile, "threads": torch.get_num_threads(),
        "config": args.config, "model": model_cfg.model_dump(mode="json"), "batch_size": batch_size, "tokens_per_step": tokens, "params": params,
        "same_answer": {"steps": CHECK_STEPS, "losses": losses, "max_gap_to_plain": gaps, "tolerance": LOSS_TOLERANCE},
        "seconds_per_step": seconds, "wall_seconds_per_step": {name: statistics.median(s) for name, s in wall.items()},
        "samples": cpu, "wall_samples": wall,
        "tokens_per_second": {name: tokens / s for name, s in seconds.items()},
        "ratio_ours_over_plain": seconds["plain"] / seconds["ours"],
        "ratio_bridge_over_plain": seconds["plain"] / seconds["bridge"],
        "ratio_ours_over_floor": seconds["plain_answer_only"] / seconds["ours"], "target": RATIO_TARGET,
        "distinct_rows": fast_path._distinct_rows(batch["tokens"], model_cfg.d_vocab) is not None,
        "ratio_ours_over_every_row": seconds["ours_every_row"] / seconds["ours"],
        "torch": torch.__version__, "platform": platform.platform(),
    }
    print(f"{'':18}{'params':>10}{'ms/step':>10}{'wall ms':>10}{'tokens/s':>12}")
    for name in steps:
        print(f"{name:18}{params['plain' if name.startswith('plain') else 'ours']:>10}{1000 * seconds[name]:>10.2f}"
              f"{1000 * result['wall_seconds_per_step'][name]:>10.2f}{result['tokens_per_second'][name]:>12.0f}")
    print(f"same losses over {CHECK_STEPS} steps: max gap to plain torch {max(gaps.values()):.1e}")
    print(f"ours (fast path) / plain torch throughput: {result['ratio_ours_over_plain']:.2f} (target >= {RATIO_TARGET}); "
          f"hooked bridge / plain: {result['ratio_bridge_over_plain']:.2f}; ours / plain torch computing the last block "
          f"at the answer only, as the fast path does (the floor): {result['ratio_ours_over_floor']:.2f}")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
