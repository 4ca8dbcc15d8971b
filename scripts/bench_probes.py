"""Benchmark: batched logistic probes against scikit-learn, and the cost of capturing every residual hook.

Part 1: logistic probes on H hooks x N examples x width D of synthetic activations with a planted
direction (uneven scales, correlations, offsets; Bayes AUROC 0.64-0.96), fitted once by
whitebox's batched Newton solve and once by scikit-learn hook by hook (StandardScaler +
LogisticRegression(C) with lbfgs), with the same regularisation and standardisation. Reports the
median wall time of each, their ratio, and the largest held-out AUROC difference over hooks.

Part 2: a small native bridge run over a dataset with and without `capture` of every residual
hook, interleaved in the same process; reports the median time ratio.

    python scripts/bench_probes.py --out bench_probes.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
import warnings

import numpy as np
import torch

from whitebox.capture import capture, residual_hooks
from whitebox.probes import fit_probes
from whitebox.probes.logistic import fit_logistic

AUROC_TARGET, TIME_TARGET, CAPTURE_TARGET = 0.005, 1.0, 1.3


def planted_data(hooks: int, n: int, n_test: int, d: int, seed: int):
    """float32 activations [hooks, n, d] and held-out [hooks, n_test, d] with labels [n], [n_test]; per hook the
    class means differ along one hidden direction by a Mahalanobis distance `gap`."""
    gen = torch.Generator().manual_seed(seed)
    y, yt = torch.rand(n, generator=gen) < 0.5, torch.rand(n_test, generator=gen) < 0.5  # one label per example
    xs, ts, bayes = [], [], []
    for h in range(hooks):
        mix = torch.randn(d, d, generator=gen) / d**0.5 + 0.3 * torch.eye(d)
        mix = mix * torch.exp(0.7 * torch.randn(d, 1, generator=gen))  # features of uneven scale
        offset = 3 * torch.randn(d, generator=gen)
        gap = 0.5 + 2.0 * h / max(hooks - 1, 1)  # Mahalanobis distance between the class means
        u = torch.randn(d, generator=gen)
        shift = gap * mix @ (u / u.norm())
        xs.append(torch.randn(n, d, generator=gen) @ mix.T + offset + y[:, None] * shift)
        ts.append(torch.randn(n_test, d, generator=gen) @ mix.T + offset + yt[:, None] * shift)
        bayes.append(0.5 * (1 + math.erf(gap / 2)))  # Phi(gap / sqrt 2)
    return torch.stack(xs), y, torch.stack(ts), yt, bayes


def sklearn_fit(x: np.ndarray, y: np.ndarray, test: np.ndarray, C: float) -> tuple[float, np.ndarray]:
    """Hook-by-hook scikit-learn fits; returns the wall time and held-out scores [hooks, n_test]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    models = []
    for h in range(x.shape[0]):
        scaler = StandardScaler().fit(x[h])
        models.append((scaler, LogisticRegression(C=C, max_iter=1000).fit(scaler.transform(x[h]), y)))
    elapsed = time.perf_counter() - start
    scores = np.stack([m.decision_function(s.transform(test[h])) for h, (s, m) in enumerate(models)])
    return elapsed, scores


def whitebox_fit(x: torch.Tensor, y: torch.Tensor, test: torch.Tensor, C: float) -> tuple[float, np.ndarray, int]:
    """One batched solve over all hooks (standardisation included); wall time, held-out scores, iterations."""
    start = time.perf_counter()
    fit = fit_logistic(x, y, C=C)
    elapsed = time.perf_counter() - start
    return elapsed, fit.scores(test)[:, 0].numpy(), fit.n_iter


def bench_probes(args, sk_threads: int) -> dict:
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    x, y, test, y_test, bayes = planted_data(args.hooks, args.n, args.n_test, args.d, args.seed)
    x_np, y_np, test_np = x.numpy(), y.numpy(), test.numpy()
    ours_t, theirs_t, full_t, iters = [], [], [], 0
    for _ in range(args.repeats):  # interleaved, so background load hits both alike
        t, ours_scores, iters = whitebox_fit(x, y, test, args.C)
        ours_t.append(t)
        with threadpool_limits(sk_threads):
            t, sk_scores = sklearn_fit(x_np, y_np, test_np, args.C)
        theirs_t.append(t)
    for _ in range(args.repeats if args.full else 0):
        start = time.perf_counter()  # the public entry: control fit, metrics and data hashes included
        fit_probes({f"h{h}": x[h] for h in range(args.hooks)}, y, C=args.C, control=True)
        full_t.append(time.perf_counter() - start)
    ours_auc = [roc_auc_score(y_test, ours_scores[h]) for h in range(args.hooks)]
    sk_auc = [roc_auc_score(y_test, sk_scores[h]) for h in range(args.hooks)]
    diff = max(abs(a - b) for a, b in zip(ours_auc, sk_auc))
    ratio = statistics.median(ours_t) / statistics.median(theirs_t)
    return {
        "whitebox_s": ours_t, "sklearn_s": theirs_t, "whitebox_median_s": statistics.median(ours_t),
        "sklearn_median_s": statistics.median(theirs_t), "ratio": ratio, "newton_iterations": iters,
        "fit_probes_with_control_median_s": statistics.median(full_t) if full_t else None,
        "auroc_whitebox": ours_auc, "auroc_sklearn": sk_auc, "auroc_bayes": bayes, "max_auroc_diff": diff,
        "pass_auroc": diff <= AUROC_TARGET, "pass_time": ratio <= TIME_TARGET,
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hooks", type=int, default=12)
    parser.add_argument("--n", type=int, default=16384, help="training examples per hook")
    parser.add_argument("--n-test", type=int, default=4096, help="held-out examples per hook")
    parser.add_argument("--d", type=int, default=256, help="activation width")
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads(), 1],
                        help="thread counts to run the probe comparison at (torch and BLAS alike)")
    parser.add_argument("--full", action="store_true", help="also time fit_probes end to end (control, metrics, hashes)")
    parser.add_argument("--capture-n", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_probes.json")
    args = parser.parse_args()

    env = {"torch": torch.__version__, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "loadavg_start": os.getloadavg(), "cuda": torch.cuda.is_available()}
    print(f"probes: {args.hooks} hooks x {args.n} examples x width {args.d}, C={args.C}, {args.repeats} repeats "
          f"(held-out {args.n_test}); load average {env['loadavg_start'][0]:.2f} on {env['cpus']} CPUs")
    default_threads = torch.get_num_threads()
    probes = {}
    for threads in dict.fromkeys(args.threads):
        torch.set_num_threads(threads)
        probes[str(threads)] = bench_probes(args, threads)
    torch.set_num_threads(default_threads)
    capture_result = bench_capture(args)
    env["loadavg_end"] = os.getloadavg()

    print(f"\n{'threads':>7} {'whitebox s':>11} {'sklearn s':>10} {'ratio':>6} {'max |dAUROC|':>13} {'iters':>5}  targets")
    for threads, r in probes.items():
        ok = "ok" if r["pass_time"] and r["pass_auroc"] else "MISSED"
        print(f"{threads:>7} {r['whitebox_median_s']:>11.3f} {r['sklearn_median_s']:>10.3f} {r['ratio']:>6.2f} "
              f"{r['max_auroc_diff']:>13.2e} {r['newton_iterations']:>5}  {ok} (time <= {TIME_TARGET}x, AUROC <= {AUROC_TARGET})")
    best_ours = min(r["whitebox_median_s"] for r in probes.values())
    best_theirs = min(r["sklearn_median_s"] for r in probes.values())
    headline = {"whitebox_best_s": best_ours, "sklearn_best_s": best_theirs, "ratio": best_ours / best_theirs,
                "pass_time": best_ours / best_theirs <= TIME_TARGET,
                "pass_auroc": all(r["pass_auroc"] for r in probes.values())}
    print(f"{'best':>7} {best_ours:>11.3f} {best_theirs:>10.3f} {headline['ratio']:>6.2f}   "
          "(each side at its fastest thread count: the fair comparison)")
    first = next(iter(probes.values()))
    print("per-hook held-out AUROC (whitebox / sklearn / Bayes): " + ", ".join(
        f"{a:.4f}/{b:.4f}/{c:.4f}" for a, b, c in zip(first["auroc_whitebox"], first["auroc_sklearn"], first["auroc_bayes"])))
    if first["fit_probes_with_control_median_s"] is not None:
        print(f"fit_probes end to end (with control, metrics, hashes): {first['fit_probes_with_control_median_s']:.3f} s")
    print(f"\ncapture of {len(capture_result['hooks'])} residual hooks, {args.capture_n} x 32 tokens, batch {args.batch_size}:")
    for positions in ("last", "all"):
        r = capture_result[positions]
        print(f"  positions={positions:<4}  plain {statistics.median(r['plain_s']):.3f} s  captured "
              f"{statistics.median(r['capture_s']):.3f} s  ratio {r['ratio']:.2f}  {'ok' if r['pass'] else 'MISSED'} "
              f"(<= {CAPTURE_TARGET}x)")
    print(f"load average at end {env['loadavg_end'][0]:.2f}")
    result = {"config": vars(args), "environment": env, "probes_by_threads": probes, "probes_best": headline,
              "capture": capture_result}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
