"""Benchmark: attribution patching against activation patching over every component, on the same pairs.

For each model: wall time of both methods (median of --repeats runs), their ratio, and the
Spearman correlation of their scores. A size sweep of random-init native models shows how each
method grows with the number of components (activation patching: one forward per component;
attribution patching: two forwards and one backward whatever the count). Planted checkpoints
(e.g. runs/quickstart/models/planted) add the agreement that matters; without --checkpoint the
quickstart config is planted into a temporary directory first.

    python scripts/bench_attribution.py --checkpoint runs/quickstart/models/planted --out bench.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from whitebox.attribution import (
    activation_patching,
    agreement,
    attribution_patching,
)
from whitebox.attribution.components import UNIT_KINDS
from whitebox.config import ModelConfig
from whitebox.models import build_model, load_model, read_model_meta
from whitebox.runtime.artifacts import write_json
from whitebox.tasks import get_task
from whitebox.tasks.backdoor import BackdoorTaskConfig

SIZES = [(1, 4), (2, 4), (4, 4), (4, 8), (8, 8)]  # (n_layers, n_heads) of the sweep, d_model 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", default=[], help="saved model directory (repeatable)")
    parser.add_argument("--n-pairs", type=int, default=256, help="contrast pairs per batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method; medians are reported")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest at these sizes)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the size sweep")
    parser.add_argument("--out", type=Path, default=Path("bench_attribution.json"), help="JSON results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = args.checkpoint or _plant_quickstart(Path(tmp))
        for directory in checkpoints:
            meta = read_model_meta(directory)
            model, cfg = load_model(directory)
            task_cfg = BackdoorTaskConfig.model_validate(meta["task"])
            name = f"{Path(directory).parent.parent.name}/{task_cfg.trigger}"
            rows.append(_compare(name, model, task_cfg, args.n_pairs, args.repeats, planted=True))
    if not args.no_sweep:
        task_cfg = BackdoorTaskConfig()
        for n_layers, n_heads in SIZES:
            cfg = ModelConfig(
                n_layers=n_layers, d_model=64, n_heads=n_heads, d_head=16, d_mlp=256,
                n_ctx=get_task(task_cfg).seq_len(), d_vocab=len(get_task(task_cfg).vocabulary()),
            )
            torch.manual_seed(0)
            model = build_model(cfg, get_task(task_cfg).vocabulary())
            rows.append(_compare(f"random L{n_layers} H{n_heads}", model, task_cfg, args.n_pairs, args.repeats, planted=False))

    growth = _growth([r for r in rows if not r["planted"]])
    _print_table(rows, growth)
    env = {"torch": torch.__version__, "threads": args.threads, "cpu": platform.processor() or platform.machine()}
    result = {"n_pairs": args.n_pairs, "repeats": args.repeats, "env": env, "rows": rows, "growth": growth}
    write_json(args.out, result)
    print(f"\nwrote {args.out}")


def _compare(
    name: str, model: torch.nn.Module, task_cfg: BackdoorTaskConfig, n_pairs: int, repeats: int, planted: bool
) -> dict[str, Any]:
    """Median times of both methods on the same pairs, and how their scores agree."""
    pairs = get_task(task_cfg).contrast_pairs(n_pairs, seed=0)
    model.eval()
    with torch.no_grad():
        _, t_forward = _timed(lambda: model(pairs.triggered), repeats)
    exact, t_exact = _timed(lambda: activation_patching(model, pairs), repeats)
    fast, t_fast = _timed(lambda: attribution_patching(model, pairs), repeats)
    units = agreement(exact.subset(UNIT_KINDS), fast.subset(UNIT_KINDS))
    every = agreement(exact, fast, top=3)
    return {
        "model": name,
        "planted": planted,
        "n_components": len(exact.scores),
        "forward_s": t_forward,
        "activation_s": t_exact,
        "attribution_s": t_fast,
        "activation_forwards": t_exact / t_forward,  # cost in units of one batched forward
        "attribution_forwards": t_fast / t_forward,
        "speedup": t_exact / t_fast,
        "spearman": every["spearman"],
        "spearman_units": units["spearman"],
        "disagree": every["disagree"],
        "largest_gaps": every["largest_gaps"],
    }


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    out = fn()  # warm-up, not timed
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def _growth(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Least-squares cost per extra component over the sweep, in seconds and in forward passes."""
    if len(rows) < 2:
        return {}
    n = torch.tensor([float(r["n_components"]) for r in rows])
    out = {}
    for key in ("activation_s", "attribution_s", "activation_forwards", "attribution_forwards"):
        t = torch.tensor([r[key] for r in rows])
        slope = float(((n - n.mean()) * (t - t.mean())).sum() / ((n - n.mean()) ** 2).sum())
        out[f"{key}_per_component"] = slope
        out[f"{key}_intercept"] = float(t.mean() - slope * n.mean())
    return out


def _print_table(rows: list[dict[str, Any]], growth: dict[str, float]) -> None:
    head = (
        f"{'model':<22} {'components':>10} {'activation s':>13} {'attribution s':>14} {'speedup':>8} "
        f"{'act/fwd':>8} {'attr/fwd':>9} {'spearman':>9} {'units':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['model']:<22} {r['n_components']:>10d} {r['activation_s']:>13.3f} {r['attribution_s']:>14.3f} "
            f"{r['speedup']:>8.1f} {r['activation_forwards']:>8.1f} {r['attribution_forwards']:>9.1f} "
            f"{r['spearman']:>9.3f} {r['spearman_units']:>7.3f}"
        )
    if growth:
        print(
            f"\ngrowth over the sweep (least squares): activation {growth['activation_forwards_per_component']:.2f} "
            f"forwards/component + {growth['activation_forwards_intercept']:.1f}; attribution "
            f"{growth['attribution_forwards_per_component']:.4f} forwards/component "
            f"+ {growth['attribution_forwards_intercept']:.1f}"
        )
    for r in rows:
        if r["planted"] and r["spearman"] < 0.9:
            print(f"{r['model']}: spearman {r['spearman']:.3f} < 0.9")
            for label, key in (("rank", "disagree"), ("score", "largest_gaps")):
                worst = ", ".join(
                    f"{d['component']} ({d['activation_patching']:+.2f} vs {d['attribution_patching']:+.2f})" for d in r[key]
                )
                print(f"  largest {label} gaps (activation vs attribution): {worst}")


def _plant_quickstart(tmp: Path) -> list[str]:
    """Plant the quickstart config for both trigger kinds (about 25 s each)."""
    import whitebox

    dirs = []
    for trigger in ("token", "computed"):
        out = tmp / trigger
        config = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
        whitebox.run(config, overrides=[f"task.trigger={trigger}", "tracking.wandb_mode=disabled"], out=out)
        dirs.append(str(out / "models" / "planted"))
    return dirs


if __name__ == "__main__":
    main()
