"""Benchmark: batched logistic probes against scikit-learn side by side, and the cost of capturing every residual hook.

Part 1, probes: for every size (hooks x training rows x width) that fits in --max-gb, synthetic
float32 activations with a planted direction per hook (uneven scales, correlations, offsets;
Bayes AUROC 0.64-0.96) are fitted by

  * whitebox: `fit_logistic` (standardisation included) on T torch threads with the solver it
    picks by width: Newton, all hooks in one batched solve, or L-BFGS, hook by hook;
  * scikit-learn: `make_pipeline(StandardScaler(), LogisticRegression(C, tol))` (lbfgs) per hook,
    T hooks at a time on a thread pool (concurrent.futures) and 1 BLAS/OpenMP thread per fit
    (threadpoolctl), which is how a user spreads per-hook fits over T cores without copying the
    activations into worker processes. Threads share the process, so time.process_time counts
    every core's CPU time for both. scikit-learn keeps float32 input in float32, so its lbfgs
    stops at float32 resolution; --sklearn-float64 casts each hook first (timed) so it can reach --tol.

Each side gets one untimed warm-up fit, then --repeats interleaved timed fits (median wall and
CPU seconds reported), at each T in --threads (default: all cores and 1, so both sides are
compared at equal total cores). Both run at the same tight tolerance (--tol on the largest
gradient entry of the mean objective, which is what both solvers' tol bounds); one shared
function then evaluates each solution's objective (sum of log-losses + ||w||^2 / (2C) on the
same standardised data) and gradient, and their held-out AUROCs are compared. The run checks
that the objectives agree to OBJECTIVE_RTOL and the AUROCs to AUROC_TOL and records the check.

Part 2, capture: a small native bridge run over a dataset with and without `capture` of every
residual hook, interleaved in the same process; reports the median time ratio (--capture-n 0 skips it).

--full also times the public `fit_probes` end to end (shuffled-label control, metrics, data hashes,
its default tol) at each size. --crossover-widths times whitebox's Newton and L-BFGS solvers against
each other at small sizes, the measurement behind whitebox.probes.logistic.NEWTON_MAX_WIDTH.

    python scripts/bench_probes.py --out bench_probes.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from whitebox.capture import capture, residual_hooks
from whitebox.probes import fit_probes
from whitebox.probes.logistic import fit_logistic, solver_for

OBJECTIVE_RTOL, AUROC_TOL, CAPTURE_TARGET = 1e-4, 0.002, 1.3
RANK = 32  # correlated directions shared by the features of a synthetic hook
BLOCK = 4096  # rows per chunk when the shared objective is evaluated in float64
BASE_GB = 0.5  # this process before any data: torch, scikit-learn and transformer-lens loaded (measured 0.4-0.5)


def planted_data(hooks: int, n: int, n_test: int, d: int, seed: int):
    """float32 activations [hooks, n, d] and held-out [hooks, n_test, d], labels [n] and [n_test], Bayes AUROCs.

    Per hook x = s * (a e + L f) + offset + y shift with e ~ N(0, I_d), f ~ N(0, I_RANK): features of
    uneven scale s, correlated through L, offset; shift lies along a hidden direction at Mahalanobis
    distance `gap` from the other class mean. The structured mixing costs n d RANK to draw, not n d^2.
    """
    gen = torch.Generator().manual_seed(seed)
    y, yt = torch.rand(n, generator=gen) < 0.5, torch.rand(n_test, generator=gen) < 0.5
    x, test = torch.empty(hooks, n, d), torch.empty(hooks, n_test, d)
    r, a, bayes = min(RANK, d), 0.3, []
    for h in range(hooks):
        s = torch.exp(0.7 * torch.randn(d, generator=gen))
        mix = torch.randn(d, r, generator=gen) / r**0.5
        offset = 3 * torch.randn(d, generator=gen)
        gap = 0.5 + 2.0 * h / max(hooks - 1, 1)
        v = s * torch.randn(d, generator=gen)  # u = M' v lies in M's row space, so the distance is exactly gap
        u_e, u_f = a * v, mix.T @ v
        shift = gap * s * (a * u_e + mix @ u_f) / torch.cat([u_e, u_f]).norm()
        for out, labels in ((x[h], y), (test[h], yt)):
            torch.randn(out.shape, generator=gen, out=out).mul_(a)
            out.addmm_(torch.randn(len(labels), r, generator=gen), mix.T).mul_(s).add_(offset)
            out.add_(labels[:, None] * shift)
        bayes.append(0.5 * (1 + math.erf(gap / 2)))  # Phi(gap / sqrt 2)
    return x, y.double(), test, yt.double(), bayes


def estimated_gb(hooks: int, n: int, n_test: int, d: int, threads: int) -> float:
    """Peak GB of one size: data, whitebox's working copy and solver state or T scikit-learn fits' copies, drawing."""
    data = hooks * (n + n_test) * d * 4
    if solver_for(d) == "newton":  # a standardised copy of every hook; Gram, correlation, Hessian and factors
        working = hooks * (n * d * 4 + 5 * (d + 1) ** 2 * 8)
    else:  # one hook's standardised copy at a time
        working = n * d * 4
    sklearn = threads * n * d * 16  # per concurrent fit: the scaled copy (and with --sklearn-float64 the cast)
    draw = 2 * max(n, n_test) * d * 4
    return BASE_GB + (data + max(working, sklearn) + draw) / 2**30


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    """fn(*args, **kwargs), its wall seconds and the CPU seconds of this process (all its threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def whitebox_fit(x: torch.Tensor, y: torch.Tensor, C: float, tol: float, threads: int):
    """All hooks in one batched solve on `threads` torch threads; raw-space (w [hooks, d], b [hooks]) and steps."""
    torch.set_num_threads(threads)
    fit = fit_logistic(x, y, C=C, tol=tol)
    w = fit.weight[:, 0] / fit.std
    b = fit.bias[:, 0] - (fit.weight[:, 0] * fit.mean / fit.std).sum(-1)
    return w, b, fit.n_iter, bool(fit.converged.all())


def sklearn_fit(x: np.ndarray, y: np.ndarray, C: float, tol: float, threads: int, float64: bool):
    """Per-hook StandardScaler + LogisticRegression, `threads` hooks at a time on threads with 1 BLAS thread each.

    float64 casts each hook's activations first (timed), so lbfgs's objective can resolve a tight tol.
    """
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    def one(h: int):
        data = x[h].astype(np.float64) if float64 else x[h]
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, tol=tol, max_iter=100_000)).fit(data, y)

    with threadpool_limits(1):
        with ThreadPoolExecutor(threads) as pool:  # threads, not processes: no copy of the data, nothing pickled
            models = list(pool.map(one, range(x.shape[0])))
    scale = np.stack([m[0].scale_ for m in models])
    coef = np.stack([m[1].coef_[0] for m in models])
    w = coef / scale
    b = np.array([m[1].intercept_[0] for m in models]) - (coef * np.stack([m[0].mean_ for m in models]) / scale).sum(-1)
    return torch.from_numpy(w), torch.from_numpy(b), [int(m[1].n_iter_[0]) for m in models]


def _blocks(x: torch.Tensor):
    """(hook, first row, float64 rows) over x [hooks, n, d], BLOCK rows of one hook at a time: never a float64 x."""
    for h in range(x.shape[0]):
        for i in range(0, x.shape[1], BLOCK):
            yield h, i, x[h, i : i + BLOCK].double()


def shared_standardisation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 mean and population std [hooks, d] of x [hooks, n, d], as StandardScaler."""
    hooks, n, d = x.shape
    mean, var = torch.zeros(hooks, d, dtype=torch.float64), torch.zeros(hooks, d, dtype=torch.float64)
    for h, _, chunk in _blocks(x):
        mean[h] += chunk.sum(0) / n
    for h, _, chunk in _blocks(x):
        var[h] += (chunk - mean[h]).square().sum(0) / n
    std = var.sqrt()
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def objective_and_gradient(x, y, w, b, mean, std, C: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per hook: sum of log-losses + ||w_std||^2 / (2C) and the largest |gradient| entry of the mean objective.

    w, b [hooks, d], [hooks] are raw-space coefficients; w_std = w * std are the standardised
    ones that both solvers penalise. Evaluated in float64 by blocks of rows, for either solver alike.
    """
    hooks, n, _ = x.shape
    loss, sr = torch.zeros(hooks, dtype=torch.float64), torch.zeros(hooks, dtype=torch.float64)
    xr = torch.zeros_like(w)
    for h, i, chunk in _blocks(x):
        labels = y[i : i + BLOCK]
        logits = chunk @ w[h] + b[h]
        loss[h] += (torch.nn.functional.softplus(logits) - labels * logits).sum()
        r = torch.sigmoid(logits) - labels
        xr[h] += r @ chunk
        sr[h] += r.sum()
    w_std = w * std
    grad_w = (xr - mean * sr[:, None]) / std / n + w_std / (C * n)  # d/dw_std of the mean objective
    grad = torch.cat([grad_w, (sr / n)[:, None]], -1)
    return loss + w_std.square().sum(-1) / (2 * C), grad.abs().amax(-1)


def convergence(x, y, test, y_test, ours, theirs, C: float) -> dict:
    """Both solutions under the shared objective and on held-out data, and whether they agree."""
    from sklearn.metrics import roc_auc_score

    mean, std = shared_standardisation(x)
    out: dict[str, Any] = {}
    for name, (w, b) in (("whitebox", ours), ("sklearn", theirs)):
        obj, grad = objective_and_gradient(x, y, w, b, mean, std, C)
        scores = [(test[h].double() @ w[h] + b[h]).numpy() for h in range(len(w))]
        out[f"objective_{name}"] = obj.tolist()
        out[f"grad_max_{name}"] = grad.tolist()
        out[f"auroc_{name}"] = [float(roc_auc_score(y_test.numpy(), s)) for s in scores]
    gaps = [(a - s) / abs(s) for a, s in zip(out["objective_whitebox"], out["objective_sklearn"])]
    auc = max(abs(a - s) for a, s in zip(out["auroc_whitebox"], out["auroc_sklearn"]))
    out |= {"objective_rel_gap": gaps, "max_objective_rel_gap": max(map(abs, gaps)), "max_auroc_diff": auc,
            "objective_rtol": OBJECTIVE_RTOL, "auroc_tol": AUROC_TOL}
    out["agree"] = out["max_objective_rel_gap"] <= OBJECTIVE_RTOL and auc <= AUROC_TOL
    return out


def summary(wall: list[float], cpu: list[float]) -> dict:
    return {"wall_s": wall, "cpu_s": cpu, "wall_median_s": statistics.median(wall), "cpu_median_s": statistics.median(cpu)}


def bench_size(hooks: int, n: int, d: int, args) -> dict:
    """Every thread count at one size: interleaved, warmed-up timings of both sides and their convergence check."""
    x, y, test, y_test, bayes = planted_data(hooks, n, args.n_test, d, args.seed)
    x_np, y_np = x.numpy(), y.numpy()
    runs = []
    for threads in dict.fromkeys(args.threads):
        times: dict[str, tuple[list, list]] = {"whitebox": ([], []), "sklearn": ([], [])}
        for repeat in range(args.repeats + 1):  # repeat 0 warms both up, untimed
            ours, wall, cpu = timed(whitebox_fit, x, y, args.C, args.tol, threads)
            theirs, sk_wall, sk_cpu = timed(sklearn_fit, x_np, y_np, args.C, args.tol, threads, args.sklearn_float64)
            if repeat:
                for side, (w_s, c_s) in (("whitebox", (wall, cpu)), ("sklearn", (sk_wall, sk_cpu))):
                    times[side][0].append(w_s)
                    times[side][1].append(c_s)
        torch.set_num_threads(max(args.threads))
        wb, sk = summary(*times["whitebox"]), summary(*times["sklearn"])
        wb |= {"n_iter": ours[2], "converged": ours[3]}
        sk |= {"n_iter": theirs[2]}
        check = convergence(x, y, test, y_test, ours[:2], theirs[:2], args.C)
        runs.append({"threads": threads, "whitebox": wb, "sklearn": sk, "convergence": check,
                     "wall_ratio": wb["wall_median_s"] / sk["wall_median_s"],
                     "cpu_ratio": wb["cpu_median_s"] / sk["cpu_median_s"]})
    out: dict[str, Any] = {"runs": runs, "bayes_auroc": bayes}
    if args.full:  # the public entry at its defaults: shuffled-label control, metrics and data hashes included
        acts = {f"h{h}": x[h] for h in range(hooks)}
        walls, cpus = [], []
        for repeat in range(args.repeats + 1):
            _, wall, cpu = timed(fit_probes, acts, y, C=args.C, control=True, device="cpu")
            if repeat:
                walls.append(wall)
                cpus.append(cpu)
        out["fit_probes_with_control"] = {"threads": max(args.threads), **summary(walls, cpus)}
    return out


def bench_crossover(args) -> list[dict]:
    """Newton against L-BFGS inside whitebox at small sizes on 1 thread (CPU time: robust to a loaded machine),
    2 label sets (probe + control) as fit_probes fits them."""
    torch.set_num_threads(1)
    rows = []
    for d in args.crossover_widths:
        x, y, _, _, _ = planted_data(args.crossover_hooks, args.crossover_rows, 1, d, args.seed)
        control = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(args.seed))]
        labels = torch.stack([y, control])
        row: dict[str, Any] = {"width": d, "hooks": args.crossover_hooks, "rows": args.crossover_rows}
        for solver in ("newton", "lbfgs"):
            fit_logistic(x, labels, C=args.C, tol=args.tol, solver=solver)  # warm-up
            times = [timed(fit_logistic, x, labels, C=args.C, tol=args.tol, solver=solver)[1:]
                     for _ in range(args.repeats)]
            fit = fit_logistic(x, labels, C=args.C, tol=args.tol, solver=solver)
            mean, std = shared_standardisation(x)
            w = fit.weight[:, 0] / fit.std
            b = fit.bias[:, 0] - (fit.weight[:, 0] * fit.mean / fit.std).sum(-1)
            row[solver] = {**summary(*map(list, zip(*times))), "n_iter": fit.n_iter,
                           "objective": objective_and_gradient(x, y, w, b, mean, std, args.C)[0].tolist()}
        row["newton_over_lbfgs_cpu"] = row["newton"]["cpu_median_s"] / row["lbfgs"]["cpu_median_s"]
        row["max_objective_rel_gap"] = max(abs(a - c) / abs(c) for a, c in
                                           zip(row["newton"]["objective"], row["lbfgs"]["objective"]))
        row["auto"] = solver_for(d)
        rows.append(row)
    torch.set_num_threads(max(args.threads))
    return rows


def bench_capture(args) -> dict:
    """Plain forward vs forward with every residual hook captured, over the same batches, interleaved."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    torch.manual_seed(args.seed)
    cfg = TransformerBridgeConfig(n_layers=4, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=32,
                                  d_vocab=64, act_fn="gelu", normalization_type="LN")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TransformerBridge.boot_native(cfg, device="cpu").eval()
    tokens = torch.randint(0, 64, (args.capture_n, 32), generator=torch.Generator().manual_seed(args.seed))
    hooks = residual_hooks(model)

    def plain() -> None:
        with torch.no_grad():
            for start in range(0, len(tokens), args.batch_size):
                model(tokens[start : start + args.batch_size])

    results = {}
    for positions in ("last", "all"):
        plain_t, captured_t = [], []
        plain()  # warm-up
        for _ in range(args.repeats):
            start = time.perf_counter()
            plain()
            plain_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            capture(model, tokens, hooks, positions=positions, batch_size=args.batch_size)
            captured_t.append(time.perf_counter() - start)
        ratio = statistics.median(captured_t) / statistics.median(plain_t)
        results[positions] = {"plain_s": plain_t, "capture_s": captured_t, "ratio": ratio, "pass": ratio <= CAPTURE_TARGET}
    return {"hooks": hooks, "examples": args.capture_n, "seq": 32, "batch_size": args.batch_size, **results}


def print_table(sizes: list[dict]) -> None:
    print(f"\n{'hooks':>5} {'rows':>6} {'width':>5} {'solver':>6} {'T':>2} | {'whitebox wall':>13} {'cpu':>7} "
          f"{'iters':>5} | {'sklearn wall':>12} {'cpu':>7} {'iters':>9} | {'wall x':>6} {'cpu x':>6} | "
          f"{'max obj gap':>11} {'max dAUROC':>10} agree")
    for size in sizes:
        head = f"{size['hooks']:>5} {size['rows']:>6} {size['width']:>5}"
        if size["skipped"]:
            print(f"{head} skipped: {size['skipped']}")
            continue
        for run in size["runs"]:
            wb, sk, c = run["whitebox"], run["sklearn"], run["convergence"]
            iters = f"{min(sk['n_iter'])}-{max(sk['n_iter'])}"
            print(f"{head} {size['solver']:>6} {run['threads']:>2} | {wb['wall_median_s']:>12.3f}s {wb['cpu_median_s']:>6.2f}s "
                  f"{wb['n_iter']:>5} | {sk['wall_median_s']:>11.3f}s {sk['cpu_median_s']:>6.2f}s {iters:>9} | "
                  f"{run['wall_ratio']:>6.2f} {run['cpu_ratio']:>6.2f} | {c['max_objective_rel_gap']:>11.1e} "
                  f"{c['max_auroc_diff']:>10.1e} {'yes' if c['agree'] else 'NO'}")
    for size in sizes:
        if "fit_probes_with_control" in size:
            r = size["fit_probes_with_control"]
            print(f"fit_probes end to end, {size['hooks']} x {size['rows']} x {size['width']}, {r['threads']} threads: "
                  f"{r['wall_median_s']:.3f} s wall, {r['cpu_median_s']:.2f} s CPU")
    print(f"(x = whitebox / scikit-learn medians; T = torch threads for whitebox, concurrent 1-thread fits for "
          f"scikit-learn; agree: objectives within {OBJECTIVE_RTOL:g} relative, AUROCs within {AUROC_TOL})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--hooks", type=int, nargs="+", default=[12, 48])
    parser.add_argument("--rows", type=int, nargs="+", default=[16384, 65536], help="training examples per hook")
    parser.add_argument("--n-test", type=int, default=4096, help="held-out examples per hook")
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--tol", type=float, default=1e-6,
                        help="both solvers' bound on the largest gradient entry of the mean objective")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count() or 1, 1],
                        help="T: torch threads for whitebox, concurrent single-threaded per-hook fits for scikit-learn")
    parser.add_argument("--sklearn-float64", action="store_true",
                        help="cast each hook to float64 for scikit-learn (timed), whose float32 lbfgs stops above a tight tol")
    parser.add_argument("--max-gb", type=float, default=4.0, help="sizes estimated to need more memory are skipped")
    parser.add_argument("--full", action="store_true",
                        help="also time fit_probes end to end (control, metrics, hashes; its default tol) at each size")
    parser.add_argument("--crossover-widths", type=int, nargs="*", default=[],
                        help="also time whitebox's Newton against its L-BFGS at these widths")
    parser.add_argument("--crossover-hooks", type=int, default=4)
    parser.add_argument("--crossover-rows", type=int, default=4096)
    parser.add_argument("--capture-n", type=int, default=2048, help="capture benchmark examples (0 skips it)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_probes.json")
    args = parser.parse_args()

    import sklearn
    import threadpoolctl

    env = {"torch": torch.__version__, "sklearn": sklearn.__version__,
           "threadpoolctl": threadpoolctl.__version__, "cpus": os.cpu_count(),
           "machine": platform.processor() or platform.machine(), "loadavg_start": os.getloadavg(),
           "cuda": torch.cuda.is_available(),
           "sklearn_parallelism": "a thread pool, T fits at a time, threadpoolctl limit 1 thread each",
           "cpu_time": "time.process_time: every thread of this process",
           "precision": "float32 activations to both; scikit-learn's lbfgs keeps float32 input in float32 (objective "
                        "and gradient in float32, so it may stop above tol: see grad_max_sklearn) unless "
                        "--sklearn-float64 casts it; whitebox passes the data in float32 and keeps logits, objective "
                        "and solver state in float64"}
    print(f"probes: C={args.C}, tol={args.tol:g}, {args.repeats} repeats after a warm-up, held-out {args.n_test}, "
          f"threads {args.threads}; load average {env['loadavg_start'][0]:.2f} on {env['cpus']} CPUs")
    sizes = []
    for hooks in args.hooks:
        for n in args.rows:
            for d in args.widths:
                gb = estimated_gb(hooks, n, args.n_test, d, max(args.threads))
                size = {"hooks": hooks, "rows": n, "width": d, "n_test": args.n_test, "solver": solver_for(d),
                        "estimated_gb": gb, "skipped": None}
                if gb > args.max_gb:
                    size["skipped"] = f"needs about {gb:.1f} GB, over --max-gb {args.max_gb:g}"
                else:
                    print(f"  {hooks} hooks x {n} rows x width {d} ({gb:.2f} GB) ...", flush=True)
                    size |= bench_size(hooks, n, d, args)
                    print_table([size])
                sizes.append(size)
                with open(args.out, "w") as f:  # every finished size is kept, whatever happens to the next
                    json.dump({"config": vars(args), "environment": env, "probes": sizes, "partial": True}, f, indent=2)
    print_table(sizes)
    fitted = [run for size in sizes if not size["skipped"] for run in size["runs"]]
    result: dict[str, Any] = {"config": vars(args), "environment": env, "probes": sizes,
                              "all_agree": all(run["convergence"]["agree"] for run in fitted)}
    if args.crossover_widths:
        result["crossover"] = bench_crossover(args)
        print("\nwhitebox solvers, 1 thread: width, Newton CPU s, L-BFGS CPU s, Newton / L-BFGS, iterations, objective gap")
        for row in result["crossover"]:
            print(f"  {row['width']:>5} {row['newton']['cpu_median_s']:>8.3f} {row['lbfgs']['cpu_median_s']:>8.3f} "
                  f"{row['newton_over_lbfgs_cpu']:>6.2f} {row['newton']['n_iter']:>4}/{row['lbfgs']['n_iter']:<4} "
                  f"{row['max_objective_rel_gap']:.1e}  (auto: {row['auto']})")
    if args.capture_n:
        result["capture"] = bench_capture(args)
        print(f"\ncapture of {len(result['capture']['hooks'])} residual hooks, {args.capture_n} x 32 tokens, "
              f"batch {args.batch_size}:")
        for positions in ("last", "all"):
            r = result["capture"][positions]
            print(f"  positions={positions:<4}  plain {statistics.median(r['plain_s']):.3f} s  captured "
                  f"{statistics.median(r['capture_s']):.3f} s  ratio {r['ratio']:.2f}  {'ok' if r['pass'] else 'MISSED'} "
                  f"(<= {CAPTURE_TARGET}x)")
    env["loadavg_end"] = os.getloadavg()
    env["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"all fitted sizes agree: {result['all_agree']}; load average at end {env['loadavg_end'][0]:.2f}")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
