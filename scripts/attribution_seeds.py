"""Does path-integrated attribution agree with activation patching on models it was not tuned on? Seeds x k.

For every trigger kind and seed, the quickstart's plant step (configs/locate.yaml without its locate
section) is planted into RUNS/s<seed>_<kind> (reused when there), and on the same contrast pairs
locate uses (256, seeded by the run seed) activation patching is compared with
`integrated_patching` at each k of --steps, per component class (heads, MLPs, residual positions,
single MLP neurons) and over heads, MLPs and residual positions together (what locate reports as
patching_spearman): Spearman, and top-90% overlap (the smallest set of components carrying 90% of
the exact |effect| in the class, and how many of them the estimate also puts in its top that many).
Cost in forward-equivalents (batched forwards over the pairs, a backward counting two) and wall
time (median of --repeats) beside each. One JSON per model goes to OUT/<kind>_s<seed>.json as it
finishes, so an interrupted run resumes where it stopped; `--random` adds the quickstart
architecture at random init.

    python scripts/attribution_seeds.py measure --seeds 0 1 2              # the tuning seeds
    python scripts/attribution_seeds.py choose                             # apply RULE to them
    python scripts/attribution_seeds.py measure --seeds 100 101 ... --random
    python scripts/attribution_seeds.py table --json docs/benchmarks/attribution_seeds.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from whitebox.attribution import activation_patching, integrated_patching, spearman
from whitebox.attribution.components import Component, model_components
from whitebox.attribution.scores import ComponentScores
from whitebox.config.load import parse_config, read_yaml
from whitebox.models import build_model, load_model, read_model_meta
from whitebox.runner import resolve_config, run_or_resume
from whitebox.runtime.artifacts import read_json, write_json
from whitebox.tasks import Task, get_task
from whitebox.tasks.backdoor import BackdoorTaskConfig

TUNING_SEEDS = (0, 1, 2)
HELD_OUT_SEEDS = tuple(range(100, 110))
STEPS = (1, 2, 3, 4, 8)
BUDGET = 10  # forward-equivalents per batch of pairs (the target)
TIE = 0.005
RULE = (
    f"k is the one of the k in --steps whose cost (1 + 3k forward-equivalents) is at most {BUDGET} with the highest "
    f"minimum, over the six tuning models (seeds {', '.join(map(str, TUNING_SEEDS))} x token, computed), of the "
    f"Spearman correlation with activation patching over heads, MLPs and residual positions together; a smaller k "
    f"within {TIE} of that minimum is preferred. The held-out seeds ({HELD_OUT_SEEDS[0]}-{HELD_OUT_SEEDS[-1]}) are "
    "planted only after k is chosen and committed."
)
CLASSES = ("all", "head", "mlp", "resid", "neuron")  # all: heads, MLPs and residual positions (locate's spearman)
N_PAIRS = 256


def plant_config(config: Path, seed: int, kind: str) -> Any:
    """The config's plant step alone (its locate section dropped) for one seed and trigger kind."""
    data = read_yaml(config)
    data.pop("locate", None)
    data["experiment"] = "plant"
    overrides = [f"run.seed={seed}", f"task.trigger={kind}", f"run.name=s{seed}_{kind}", "tracking.wandb_mode=disabled"]
    return parse_config(data, overrides, source=str(config))


def planted_model(config: Path, seed: int, kind: str, runs: Path) -> tuple[torch.nn.Module, Task, dict[str, float]]:
    """The planted model of one seed (planting it first if its run is missing or unfinished) and its plant metrics."""
    summary = run_or_resume(plant_config(config, seed, kind), runs / f"s{seed}_{kind}")
    directory = runs / f"s{seed}_{kind}" / "models" / "planted"
    model, _ = load_model(directory)
    task = get_task(BackdoorTaskConfig.model_validate(read_model_meta(directory)["task"]))
    return model.eval(), task, {k: float(summary[f"plant.{k}"]) for k in ("asr", "clean_acc")}


def random_model(config: Path, kind: str) -> tuple[torch.nn.Module, Task]:
    """The config's architecture at random init (torch seed 0) beside the task of one trigger kind."""
    cfg = resolve_config(plant_config(config, 0, kind))
    task = get_task(cfg.task)
    torch.manual_seed(0)
    return build_model(cfg.model, task.vocabulary()).eval(), task


def compare(model: torch.nn.Module, task: Task, seed: int, steps: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """Activation patching against integrated_patching at each k, per class, with costs, on locate's pairs."""
    pairs = task.contrast_pairs(N_PAIRS, seed)
    d_mlp, n_layers = int(model.cfg.d_mlp), int(model.cfg.n_layers)
    comps = model_components(model, pairs.seq_len) + [
        Component("neuron", layer, i) for layer in range(n_layers) for i in range(d_mlp)
    ]
    units = [c for c in comps if c.kind != "neuron"]
    neurons = [c for c in comps if c.kind == "neuron"]
    exact, exact_s = _timed(lambda: activation_patching(model, pairs, units), repeats)
    exact_neurons, neurons_s = _timed(lambda: activation_patching(model, pairs, neurons), 1)
    exact.scores.update(exact_neurons.scores)
    row: dict[str, Any] = {
        "n_pairs": len(pairs),
        "n_components": {kind: len(_ids(exact, kind)) for kind in CLASSES},
        "total_effect": exact.total_effect,
        "activation_patching": {
            "forward_equivalents": exact.extra["forward_equivalents"], "wall_s": exact_s,
            "neurons": {"forward_equivalents": exact_neurons.extra["forward_equivalents"], "wall_s": neurons_s},
        },
        "methods": {},
    }
    for k in steps:
        scores, wall = _timed(lambda: integrated_patching(model, pairs, comps, steps=k), repeats)
        row["methods"][f"k{k}"] = {
            "steps": k,
            "forward_equivalents": scores.extra["forward_equivalents"],
            "wall_s": wall,
            "spearman": {kind: spearman(*_pair(exact, scores, kind)) for kind in CLASSES},
            "top90_overlap": {kind: top_overlap(*_pair(exact, scores, kind)) for kind in CLASSES},
        }
    return row


def top_overlap(exact: list[float], estimate: list[float], mass: float = 0.9) -> float:
    """Share of the components carrying `mass` of the exact |effect| that the estimate also ranks in its top that many."""
    size = torch.as_tensor(exact, dtype=torch.float64).abs()
    if float(size.sum()) == 0.0:
        return float("nan")
    order = torch.argsort(size, descending=True, stable=True)
    carried = torch.cumsum(size[order], 0) / size.sum()
    m = int((carried < mass - 1e-12).sum()) + 1  # the fewest components reaching `mass`
    guess = torch.argsort(torch.as_tensor(estimate, dtype=torch.float64).abs(), descending=True, stable=True)
    return len(set(order[:m].tolist()) & set(guess[:m].tolist())) / m


def _ids(scores: ComponentScores, kind: str) -> list[str]:
    if kind == "all":
        return [c for c in scores.scores if Component.parse(c).kind != "neuron"]
    return [c for c in scores.scores if Component.parse(c).kind == kind]


def _pair(exact: ComponentScores, estimate: ComponentScores, kind: str) -> tuple[list[float], list[float]]:
    ids = _ids(exact, kind)
    return [exact.scores[c] for c in ids], [estimate.scores[c] for c in ids]


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """The result of `fn` and the median wall time of `repeats` calls."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def measure(args: argparse.Namespace) -> None:
    """One JSON per model under --out; models whose JSON exists are skipped (resume)."""
    args.out.mkdir(parents=True, exist_ok=True)
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    jobs = [(kind, seed) for seed in args.seeds for kind in args.kinds] + ([(k, None) for k in args.kinds] if args.random else [])
    for kind, seed in jobs:
        name = f"{kind}_s{seed}" if seed is not None else f"{kind}_random"
        path = args.out / f"{name}.json"
        if path.is_file():
            print(f"{name}: done before, skipped")
            continue
        if seed is None:
            (model, task), plant, role = random_model(args.config, kind), None, "random"
        else:
            model, task, plant = planted_model(args.config, seed, kind, args.runs)
            role = "tuning" if seed in TUNING_SEEDS else "held-out"
        row = compare(model, task, seed if seed is not None else 0, tuple(args.steps), args.repeats)
        write_json(path, {"model": name, "kind": kind, "seed": seed, "role": role, "config": str(args.config),
                          "plant": plant, "env": env, **row})
        print(f"{name}: " + "  ".join(f"{m}: {r['spearman']['all']:.3f}" for m, r in row["methods"].items()), flush=True)


def load_rows(out: Path, role: str) -> list[dict[str, Any]]:
    return [r for r in (read_json(p) for p in sorted(out.glob("*.json"))) if r["role"] == role]


def choose(args: argparse.Namespace) -> int:
    """RULE applied to the tuning models' JSON: the chosen k (printed with the minimum per k)."""
    rows = load_rows(args.out, "tuning")
    assert len(rows) == 2 * len(TUNING_SEEDS), f"{len(rows)} tuning models measured, {2 * len(TUNING_SEEDS)} needed"
    within = [k for k in args.steps if 1 + 3 * k <= BUDGET]
    worst = {k: min(r["methods"][f"k{k}"]["spearman"]["all"] for r in rows) for k in within}
    best = max(worst.values())
    chosen = min(k for k in within if worst[k] >= best - TIE)
    print("minimum Spearman over the tuning models: " + ", ".join(f"k={k}: {v:.3f}" for k, v in worst.items()))
    print(f"chosen k = {chosen}\nrule: {RULE}")
    return chosen


def table(args: argparse.Namespace) -> None:
    """Median and minimum per trigger kind, role and k, against the targets; written to --json."""
    summary: dict[str, Any] = {"rule": RULE, "budget": BUDGET, "groups": {}, "models": {}}
    for role in ("tuning", "held-out", "random"):
        for kind in args.kinds:
            rows = [r for r in load_rows(args.out, role) if r["kind"] == kind]
            if not rows:
                continue
            summary["models"].update({r["model"]: {m: c["spearman"]["all"] for m, c in r["methods"].items()} for r in rows})
            group = {"seeds": [r["seed"] for r in rows], "activation_forward_equivalents": rows[0]["activation_patching"]
                     ["forward_equivalents"], "activation_wall_s_median": statistics.median(
                         r["activation_patching"]["wall_s"] for r in rows), "k": {}}
            for method in rows[0]["methods"]:
                cells = [r["methods"][method] for r in rows]
                group["k"][method] = {
                    "steps": cells[0]["steps"],
                    "forward_equivalents": cells[0]["forward_equivalents"],
                    "wall_s_median": statistics.median(c["wall_s"] for c in cells),
                    **{f"spearman_{c}_{stat.__name__}": stat(x["spearman"][c] for x in cells)
                       for c in CLASSES for stat in (statistics.median, min)},
                    **{f"top90_{c}_median": statistics.median(x["top90_overlap"][c] for x in cells) for c in CLASSES},
                    "targets_met": statistics.median(x["spearman"]["all"] for x in cells) >= 0.9
                    and min(x["spearman"]["all"] for x in cells) >= 0.85 and cells[0]["forward_equivalents"] <= BUDGET,
                }
            summary["groups"][f"{role}/{kind}"] = group
            print(f"\n{role} / {kind} (seeds {group['seeds']})")
            for method, g in group["k"].items():
                print(f"  {method:>4}: FE {g['forward_equivalents']:>3}  Spearman median {g['spearman_all_median']:.3f} "
                      f"min {g['spearman_all_min']:.3f}  top-90% {g['top90_all_median']:.2f}  targets "
                      f"{'met' if g['targets_met'] else 'not met'}")
    write_json(args.json, summary)
    print(f"\nwrote {args.json}\n\n" + markdown(summary))


def markdown(summary: dict[str, Any]) -> str:
    """The table's rows for docs/BENCHMARKS.md, read from the summary written above."""
    lines = ["| models | k | FE | wall | Spearman median | min | heads | MLPs | residual | neurons | top-90% overlap | "
             "targets |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, group in summary["groups"].items():
        lines.append(f"| {name} (activation patching) | | {group['activation_forward_equivalents']} | "
                     f"{group['activation_wall_s_median']:.3f} s | | | | | | | | |")
        for g in group["k"].values():
            medians = " | ".join(f"{g[f'spearman_{c}_median']:.3f}" for c in ("head", "mlp", "resid", "neuron"))
            lines.append(f"| {name} | {g['steps']} | {g['forward_equivalents']} | {g['wall_s_median']:.3f} s"
                         f" | {g['spearman_all_median']:.3f} | {g['spearman_all_min']:.3f} | {medians} | "
                         f"{g['top90_all_median']:.2f} | {'met' if g['targets_met'] else 'not met'} |")
    steps = sorted({m for row in summary["models"].values() for m in row}, key=lambda m: int(m[1:]))
    lines += ["", "| model | " + " | ".join(steps) + " |", "|---|" + "---|" * len(steps)]
    lines += [f"| {name} | " + " | ".join(f"{row[m]:.3f}" for m in steps) + " |" for name, row in summary["models"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["measure", "choose", "table"])
    parser.add_argument("--config", type=Path, default=Path("configs/locate.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(TUNING_SEEDS))
    parser.add_argument("--kinds", nargs="+", default=["token", "computed"], choices=["token", "computed"])
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    parser.add_argument("--random", action="store_true", help="also the config's architecture at random init")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method; medians are reported")
    parser.add_argument("--runs", type=Path, default=Path("runs/attribution_seeds"), help="planted models")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/attribution_seeds"), help="one JSON per model")
    parser.add_argument("--json", type=Path, default=Path("docs/benchmarks/attribution_seeds.json"), help="table JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"measure": measure, "choose": choose, "table": table}[args.action](args)


if __name__ == "__main__":
    main()
