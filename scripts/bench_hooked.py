"""Benchmark: the hooked steps of locate and of every measurement point, through the fast path and through the bridge.

On a planted model (default: the quickstart's, runs/quickstart/models/planted), in one process on the same
threads, each step is timed with the fast path on (fast_path.run_with_hooks and fast_path.residuals serve
the hooks) and off (WHITEBOX_FAST_PATH=0: every hooked forward through the bridge), interleaved, after a
warm-up, median of --repeats, CPU and wall time; both must reach the same answer (the largest difference
is printed and written). Steps: the residual-stream capture of the task's evaluation set (what probes and
detectors read), the circuit selection (select_circuit: per-unit patching of every head, MLP and neuron),
and the mean-ablation reference (task_reference).

    python scripts/bench_hooked.py --threads 1 --repeats 5 --out docs/benchmarks/bench_hooked_cpu.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

import whitebox.variants  # noqa: F401  (every registered task, regime and probe kind: the run's config names them)
from whitebox import fast_path
from whitebox.attribution.circuit import task_reference
from whitebox.attribution.selection import select_circuit
from whitebox.capture import capture
from whitebox.config import load_config
from whitebox.models import load_model
from whitebox.runtime.artifacts import write_json
from whitebox.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/quickstart"), help="a finished run with models/planted")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=256, help="contrast pairs for the circuit selection (locate's)")
    parser.add_argument("--out", type=Path, default=Path("bench_hooked.json"))
    args = parser.parse_args()
    planted = args.run / "models" / "planted"
    if not planted.is_dir():
        raise SystemExit(f"bench_hooked: {planted} does not exist; run `whitebox run configs/quickstart.yaml` first")
    torch.set_num_threads(args.threads)
    cfg = load_config(args.run / "config.yaml")
    (model, model_cfg), task = load_model(planted), get_task(cfg.task)
    held_out = task.eval_set(cfg.run.seed)
    pairs = task.contrast_pairs(args.pairs, seed=cfg.run.seed)
    steps: dict[str, Callable[[], Any]] = {
        "capture resid (eval set)": lambda: capture(model, held_out, "resid", positions=cfg.locate.position).acts,
        "select_circuit": lambda: select_circuit(model, model_cfg, task, pairs, steps=cfg.locate.attribution_steps),
        "task_reference": lambda: task_reference(model, task).acts,
    }
    rows = [_compare(name, fn, args.repeats) for name, fn in steps.items()]
    print(f"{'step':28s} {'fast s':>8s} {'bridge s':>9s} {'speed-up':>9s} {'cpu fast':>9s} {'cpu bridge':>10s}  same answer")
    for r in rows:
        print(f"{r['step']:28s} {r['fast_wall_s']:8.3f} {r['bridge_wall_s']:9.3f} {r['speedup']:8.2f}x "
              f"{r['fast_cpu_s']:9.3f} {r['bridge_cpu_s']:10.3f}  {r['same']}")
    write_json(args.out, {"benchmark": "bench_hooked", "run": str(args.run), "threads": args.threads,
                          "repeats": args.repeats, "pairs": args.pairs, "torch": torch.__version__,
                          "machine": platform.processor() or platform.machine(), "rows": rows})
    print(f"wrote {args.out}")


def _compare(name: str, fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """Fast and bridge runs of `fn` interleaved after a warm-up of each; medians and whether the answers agree."""
    results, walls, cpus = {}, {True: [], False: []}, {True: [], False: []}
    for fast in (True, False):
        results[fast] = _with(fast, fn)  # warm-up, and the answer compared
    for _ in range(repeats):
        for fast in (True, False):
            wall, cpu = time.perf_counter(), time.process_time()
            _with(fast, fn)
            walls[fast].append(time.perf_counter() - wall)
            cpus[fast].append(time.process_time() - cpu)
    gap, same = _gap(results[True], results[False])
    fast_wall, bridge_wall = statistics.median(walls[True]), statistics.median(walls[False])
    return {"step": name, "fast_wall_s": fast_wall, "bridge_wall_s": bridge_wall, "speedup": bridge_wall / fast_wall,
            "fast_cpu_s": statistics.median(cpus[True]), "bridge_cpu_s": statistics.median(cpus[False]),
            "max_abs_difference": gap, "same": same}


def _with(fast: bool, fn: Callable[[], Any]) -> Any:
    with fast_path.switched(fast):
        return fn()


def _gap(a: Any, b: Any) -> tuple[float, str]:
    """The largest absolute difference of two answers (tensor dicts, or circuits by their components and scores)."""
    if hasattr(a, "components"):
        gap = max(abs(a.scores[c] - b.scores[c]) for c in a.scores)
        return gap, "same components" if a.components == b.components else f"components differ: {a.components} vs {b.components}"
    gap = max(float((a[k] - b[k]).abs().max()) for k in a)
    return gap, f"max |diff| {gap:.1e}"


if __name__ == "__main__":
    main()
