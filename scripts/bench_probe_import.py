"""Benchmark what loading and scoring a saved probe costs a fresh process, against the floor.

A researcher's own code (a training loop, an eval harness) loads a two-file probe and scores
activations it already has. Each variant is a fresh `python -c` process that does exactly that and
prints the scores; the wall time of the whole process is what the user pays:

- floor: torch and safetensors only: read probe.safetensors and compute ((x - mean) / std) . w + b
  by hand, the least any loader can cost;
- probe: `from whitebox.probes import load_probe`, load, `probe.score(x)` (the documented way);
- stack: the same after importing everything whitebox can use (its experiments, transformer-lens,
  wandb, captum, datasets): what loading cost when the loader pulled in the whole stack.

Every variant must print the same scores (max |difference| <= 1e-5) and the probe variant must
import none of transformer_lens, transformers, datasets, wandb or captum. The three run interleaved,
one warm-up round, then --repeats rounds; medians, and the ratio to the floor taken per round.
Each process gets --threads threads (OMP_NUM_THREADS).

    python scripts/bench_probe_import.py --threads 1 --out docs/benchmarks/bench_probe_import_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from whitebox.probes import fit_probes

HOOK = "blocks.0.hook_out"
HEAVY = ("transformer_lens", "transformers", "datasets", "wandb", "captum")
SCORE_TOLERANCE = 1e-5
FLOOR = """
import json, torch
from safetensors.torch import load_file
t, x = load_file('probe/probe.safetensors'), load_file('acts.safetensors')['acts']
print(json.dumps((((x - t['mean']) / t['std']) @ t['weight'] + t['bias']).tolist()))
"""
PROBE = """
import json, sys
from safetensors.torch import load_file
from whitebox.probes import load_probe
print(json.dumps(load_probe('probe').score(load_file('acts.safetensors')['acts']).tolist()))
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""
STACK = """
import whitebox.variants, whitebox.runner, transformer_lens, wandb, captum.attr, datasets
""" + PROBE
VARIANTS = {"floor": FLOOR, "probe": PROBE.format(heavy=HEAVY), "stack": STACK.format(heavy=HEAVY)}


def prepare(folder: Path, d_model: int, n: int) -> None:
    """A logistic probe fitted on seeded Gaussian activations, and `n` activations to score, as safetensors."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(400) % 2
    acts = torch.randn(400, d_model, generator=gen) + labels[:, None] * 0.5
    fit_probes({HOOK: acts}, labels, control=False, device="cpu")[HOOK].save(folder / "probe")
    save_file({"acts": torch.randn(n, d_model, generator=gen)}, str(folder / "acts.safetensors"))


def run(code: str, folder: Path, threads: int) -> tuple[float, list[str]]:
    """(wall seconds of a fresh interpreter running `code` in `folder`, its output lines)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"a benchmark process failed:\n{done.stderr[-2000:]}")
    return wall, done.stdout.strip().splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d-model", type=int, default=768, help="the probe's width (default 768, GPT-2 small's)")
    parser.add_argument("--n", type=int, default=64, help="activations scored (default 64)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds after one warm-up (default 7; at least 5)")
    parser.add_argument("--threads", type=int, default=1, help="threads of each process (default 1)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats: at least 5 rounds, for a median")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepare(folder, args.d_model, args.n)
        walls: dict[str, list[float]] = {name: [] for name in VARIANTS}
        outputs: dict[str, list[str]] = {}
        for round_ in range(args.repeats + 1):  # round 0 warms the file cache and the bytecode caches
            for name, code in VARIANTS.items():
                wall, outputs[name] = run(code, folder, args.threads)
                if round_:
                    walls[name].append(wall)
    scores = {name: torch.tensor(json.loads(out[0])) for name, out in outputs.items()}
    gap = max(float((scores[name] - scores["floor"]).abs().max()) for name in VARIANTS)
    if gap > SCORE_TOLERANCE:
        raise SystemExit(f"the variants' scores differ by {gap:.2e} (> {SCORE_TOLERANCE}); nothing recorded")
    probe_imports = json.loads(outputs["probe"][1])
    if probe_imports:
        raise SystemExit(f"loading a probe imported {', '.join(probe_imports)}; nothing recorded")
    rows = {name: {"wall_s_median": statistics.median(w), "wall_s": w,
                   "ratio_to_floor_median": statistics.median(a / f for a, f in zip(w, walls["floor"], strict=True))}
            for name, w in walls.items()}
    print(f"{'variant':8} {'wall s (median)':>16} {'x floor':>8}")
    for name, row in rows.items():
        print(f"{name:8} {row['wall_s_median']:16.3f} {row['ratio_to_floor_median']:8.2f}")
    print(f"scores agree to {gap:.1e}; the probe process imported none of {', '.join(HEAVY)}")
    result = {
        "benchmark": "bench_probe_import", "d_model": args.d_model, "n": args.n, "repeats": args.repeats,
        "threads": args.threads, "variants": rows, "max_score_difference": gap, "probe_imports_heavy": probe_imports,
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
