"""Benchmark live probe scoring during generation and activation capture against hook-free floors.

(a) Live: tokens/s of greedy generation with the bridge's `generate` (KV cache, what the README's
    live example runs) with no probe attached, with one probe at the last residual hook and with a
    probe at every residual hook, at each --batch-sizes; the same prompts must give the same tokens
    with and without probes (probes must not change the output). Overhead: time with / time without.
(b) Capture: `whitebox.capture.capture` of --n inputs at every residual hook, keeping the last
    position or all positions, in memory or disk-backed (out_dir, memory-mapped .npy), against the
    floor: the faster of a plain no-hook bridge forward and whitebox.fast_path.logits over the same
    batches. Before timing, each variant's rows must equal run_with_cache's on the first inputs.
    Peak memory as in scripts/bench_regimes.py (resident tensors + torch.profiler's peak allocation;
    a disk-backed store's memory map is page cache, not counted); disk bytes: sizes of the files written.

Every timing is the median of --repeats rounds after a warm-up, both sides interleaved in one
process, CPU time of this process and wall time (use --threads 1 on a shared machine); ratios are
taken per round, then the median. The model is the quickstart's (2 layers, width 64, random init) on
today's backdoor task (16 + 4 tokens).

    python scripts/bench_live.py --threads 1 --out bench_live.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from bench_regimes import peak_bytes

from whitebox import fast_path
from whitebox.capture import Captured, capture, residual_hooks
from whitebox.config import ModelConfig
from whitebox.models import build_model
from whitebox.probes import LiveScores, Probe, fit_probes
from whitebox.tasks import get_task
from whitebox.tasks.backdoor import BackdoorTaskConfig

PROMPT_LEN = 12  # generation fills the rest of the context: 8 new tokens on today's task
CHECK_ROWS = 4  # inputs compared against run_with_cache
ACTS_TOLERANCE = 1e-5
PROBE_SETS = ("none", "one_hook", "all_hooks")
CAPTURE_VARIANTS = {"last_memory": ("last", False), "last_disk": ("last", True),
                    "all_memory": ("all", False), "all_disk": ("all", True)}


def timed(fn: Callable[[], Any], iters: int) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) per call, averaged over `iters` calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.process_time() - cpu) / iters, (time.perf_counter() - wall) / iters


def setup(args: argparse.Namespace) -> tuple[torch.nn.Module, ModelConfig, torch.Tensor, dict[str, Probe]]:
    """The quickstart architecture, --n backdoor inputs [n, 20], and a logistic probe per residual hook."""
    task = get_task(BackdoorTaskConfig(seq_len=16, n_values=64))
    vocab = task.vocabulary()
    cfg = ModelConfig(arch="native", n_layers=2, d_model=64, n_heads=4, d_mlp=256, d_vocab=len(vocab), n_ctx=task.seq_len())
    torch.manual_seed(0)
    model = build_model(cfg, vocab, torch.device("cpu")).eval()
    fit = task.sample(args.fit, 0.5, seed=1)
    probes = fit_probes(capture(model, fit, "resid", labels="triggered", cfg=cfg), control=False, device="cpu")
    tokens = task.sample(max(args.n, max(args.batch_sizes)), 0.5, seed=0).with_format("torch")[:]["tokens"]
    return model, cfg, tokens, probes


def generate(model: torch.nn.Module, prompts: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy generation of exactly `new_tokens` tokens: [batch, prompt + new]."""
    with torch.no_grad():
        return model.generate(prompts, max_new_tokens=new_tokens, do_sample=False, stop_at_eos=False, verbose=False)


@contextlib.contextmanager
def attached(model: torch.nn.Module, cfg: ModelConfig, probes: list[Probe]) -> Iterator[list[LiveScores]]:
    """`probes` attached live for the block (each attach checks the model: a one-off cost, timed apart)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(p.attach(model, cfg=cfg)) for p in probes]


def opened(context: Callable[[], contextlib.AbstractContextManager]) -> Callable[[], None]:
    """Enter and leave `context`, nothing run inside: the one-off cost of `with probe.attach(...)`."""

    def run() -> None:
        with context():
            pass

    return run


def bench_live(model: torch.nn.Module, cfg: ModelConfig, tokens: torch.Tensor, probes: dict[str, Probe],
               args: argparse.Namespace) -> dict[str, Any]:
    """Generation tokens/s with no probe, one and all, per batch size; checks the tokens are the same."""
    hooks = residual_hooks(model)
    sets = {"none": [], "one_hook": [probes[hooks[-1]]], "all_hooks": [probes[h] for h in hooks]}
    contexts = {name: (lambda ps=ps: attached(model, cfg, ps)) for name, ps in sets.items()}
    new = int(cfg.n_ctx) - PROMPT_LEN
    attach_cpu, attach_wall = rounds({name: opened(c) for name, c in contexts.items()}, args.repeats, args.iters)
    result: dict[str, Any] = {"prompt_len": PROMPT_LEN, "new_tokens": new, "hooks": hooks,
                              "attach_cpu_s": {k: statistics.median(v) for k, v in attach_cpu.items()},
                              "attach_wall_s": {k: statistics.median(v) for k, v in attach_wall.items()}, "batches": {}}
    for batch in args.batch_sizes:
        prompts = tokens[:batch, :PROMPT_LEN]
        outputs, entries = {}, {}
        for name, context in contexts.items():  # also the warm-up
            with context() as lives:
                outputs[name] = generate(model, prompts, new)
            entries[name] = [len(live.scores) for live in lives]
        same = all(torch.equal(out, outputs["none"]) for out in outputs.values())
        if not same or any(n != new for counts in entries.values() for n in counts):
            raise SystemExit(f"batch {batch}: probes changed the generated tokens or missed steps (entries {entries})")
        run = partial(generate, model, prompts, new)
        cpu, wall = rounds({name: run for name in sets}, args.repeats, args.iters, contexts)
        result["batches"][str(batch)] = {
            "same_tokens": same, "score_entries_per_probe": new,
            "tokens_per_s": {k: batch * new / statistics.median(v) for k, v in cpu.items()},
            "wall_tokens_per_s": {k: batch * new / statistics.median(v) for k, v in wall.items()},
            "overhead": {k: ratio(cpu[k], cpu["none"]) for k in PROBE_SETS[1:]},
            "wall_overhead": {k: ratio(wall[k], wall["none"]) for k in PROBE_SETS[1:]},
            "cpu_s": cpu, "wall_s": wall,
        }
    return result


def rounds(fns: dict[str, Callable[[], Any]], repeats: int, iters: int = 1,
           contexts: dict[str, Callable[[], contextlib.AbstractContextManager]] | None = None
           ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """CPU and wall seconds per call of every fn, `repeats` interleaved rounds of `iters` calls; each round timed
    inside its (untimed) context."""
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            with (contexts[name] if contexts else contextlib.nullcontext)():
                c, w = timed(fn, iters)
            cpu[name].append(c)
            wall[name].append(w)
    return cpu, wall


def ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num / den."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def floor(model: torch.nn.Module, tokens: torch.Tensor, batch_size: int, fast: bool) -> Callable[[], None]:
    """The same batches as capture, forward only, no hooks: through the bridge or through the fast path."""

    def run() -> None:
        with torch.no_grad():
            for chunk in tokens.split(batch_size):
                fast_path.logits(model, chunk) if fast else model(chunk)

    return run


def max_gap_to_reference(model: torch.nn.Module, tokens: torch.Tensor, captured: Captured, positions: str) -> float:
    """Largest |difference| between the captured rows of the first CHECK_ROWS inputs and run_with_cache's."""
    names = captured.hooks
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens[:CHECK_ROWS], names_filter=lambda name: name in names)
    gaps = []
    for hook in names:
        ref = cache[hook][:, -1] if positions == "last" else cache[hook].flatten(0, 1)  # rows d
        gaps.append(float((captured.acts[hook][: len(ref)] - ref).abs().max()))
    return max(gaps)


def bench_capture(model: torch.nn.Module, tokens: torch.Tensor, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """capture's four variants against the no-hook floor: time, peak memory, disk bytes, equality to run_with_cache."""
    tokens = tokens[: args.n]

    def variant(positions: str, disk: bool) -> Callable[[], Captured]:
        out_dir = tmp / positions if disk else None
        return lambda: capture(model, tokens, "resid", positions=positions, batch_size=args.batch_size, out_dir=out_dir)

    fns: dict[str, Callable[[], Any]] = {"floor_bridge": floor(model, tokens, args.batch_size, fast=False),
                                         "floor_fast_path": floor(model, tokens, args.batch_size, fast=True)}
    fns |= {name: variant(*spec) for name, spec in CAPTURE_VARIANTS.items()}
    gaps = {}
    for name, fn in fns.items():
        out = fn()  # also the warm-up
        if name in CAPTURE_VARIANTS:
            gaps[name] = max_gap_to_reference(model, tokens, out, CAPTURE_VARIANTS[name][0])
    if max(gaps.values()) > ACTS_TOLERANCE:
        raise SystemExit(f"captured activations differ from run_with_cache's: {gaps}")
    cpu, wall = rounds(fns, args.repeats)
    cpu["floor"] = [min(a, b) for a, b in zip(cpu["floor_bridge"], cpu["floor_fast_path"])]  # the faster way
    wall["floor"] = [min(a, b) for a, b in zip(wall["floor_bridge"], wall["floor_fast_path"])]
    memory = {name: peak_bytes(fns[name], model, None, torch.device("cpu")) for name in ("floor_bridge", *CAPTURE_VARIANTS)}
    variants = {}
    for name, (positions, disk) in CAPTURE_VARIANTS.items():
        written = sum(f.stat().st_size for f in (tmp / positions).iterdir()) if disk else 0
        variants[name] = {"positions": positions, "disk": disk, "cpu_s": statistics.median(cpu[name]),
                          "wall_s": statistics.median(wall[name]), "over_floor": ratio(cpu[name], cpu["floor"]),
                          "wall_over_floor": ratio(wall[name], wall["floor"]), "peak_bytes": memory[name],
                          "disk_bytes": written, "max_abs_diff_to_run_with_cache": gaps[name]}
    return {"n": len(tokens), "batch_size": args.batch_size, "hooks": residual_hooks(model), "check_rows": CHECK_ROWS,
            "tolerance": ACTS_TOLERANCE, "floor_cpu_s": statistics.median(cpu["floor"]),
            "floor_wall_s": statistics.median(wall["floor"]), "floor_bridge_peak_bytes": memory["floor_bridge"],
            "variants": variants, "raw_cpu_s": cpu, "raw_wall_s": wall}


def print_tables(result: dict[str, Any]) -> None:
    """The numbers a reader compares: tokens/s and overhead per batch; capture's time, memory and disk beside the floor."""
    live, cap = result["live"], result["capture"]
    print(f"live scoring during generation ({live['new_tokens']} new tokens after {live['prompt_len']}; same tokens checked)")
    print("attach + detach, once per with block: " + ", ".join(
        f"{k} {1000 * v:.1f} ms" for k, v in live["attach_cpu_s"].items() if k != "none"))
    print(f"{'batch':>6}{'probes':>11}{'tokens/s':>11}{'wall tok/s':>12}{'overhead':>10}")
    for batch, row in live["batches"].items():
        for name in PROBE_SETS:
            over = "" if name == "none" else f"{row['overhead'][name]:.2f}x"
            print(f"{batch:>6}{name:>11}{row['tokens_per_s'][name]:>11.0f}{row['wall_tokens_per_s'][name]:>12.0f}{over:>10}")
    print(f"\ncapture of {cap['n']} inputs at {len(cap['hooks'])} residual hooks (floor: no-hook forward, "
          f"{1000 * cap['floor_cpu_s']:.1f} ms CPU, {cap['floor_bridge_peak_bytes'] / 2**20:.1f} MiB through the bridge)")
    print(f"{'variant':>12}{'ms CPU':>9}{'ms wall':>9}{'/ floor':>9}{'peak MiB':>10}{'disk MiB':>10}{'max diff':>10}")
    for name, v in cap["variants"].items():
        print(f"{name:>12}{1000 * v['cpu_s']:>9.1f}{1000 * v['wall_s']:>9.1f}{v['over_floor']:>8.2f}x"
              f"{v['peak_bytes'] / 2**20:>10.1f}{v['disk_bytes'] / 2**20:>10.2f}{v['max_abs_diff_to_run_with_cache']:>10.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64], help="generation batch sizes")
    parser.add_argument("--n", type=int, default=4096, help="inputs captured")
    parser.add_argument("--batch-size", type=int, default=256, help="capture's batch_size (and the floor's)")
    parser.add_argument("--fit", type=int, default=512, help="inputs the probes are fitted on")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5, help="generations (and attaches) per timed round")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads; default: torch's")
    parser.add_argument("--out", default="bench_live.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, cfg, tokens, probes = setup(args)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"device": "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__,
                  "platform": platform.platform(), "model": cfg.model_dump(mode="json"), "seq_len": tokens.shape[1],
                  "repeats": args.repeats, "memory_method": "resident tensors + torch.profiler peak allocation",
                  "live": bench_live(model, cfg, tokens, probes, args), "capture": bench_capture(model, tokens, args, Path(tmp))}
    print_tables(result)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
