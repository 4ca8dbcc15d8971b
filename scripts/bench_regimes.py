"""Benchmark the treatment regimes side by side on one model and one batch.

(a) ES: the time of one ES step against its floor, the population's forward in plain torch
    (scripts/plain_gpt.py holding the same weights, one weight set) over population x batch rows,
    the faster of one batched forward and forwards of ES's chunk size, and against the FLOP count of
    that forward at the faster GEMM rate of the two shapes measured here (target: <= 1.3x the
    plain-torch floor); the speed-up of the batched population over evaluating members one by one;
    the default CPU chunking (examples_per_forward 256) beside the one-chunk layout CUDA uses, in
    time and memory. Before timing, the batched population's logits are checked against the
    member-by-member ones.
(b) Peak memory of a zo, es (and every other) step against a no-grad forward (inference) and a
    backprop step. CUDA: torch.cuda.max_memory_allocated. CPU: tensors resident before the step
    (weights, buffers, optimizer state, reference model) plus the peak of the bytes the step
    allocates on top, read from torch.profiler's allocation trace (tracemalloc cannot see torch's
    allocator). Target: zo <= 1.1 x inference.
(c) Steps and forward-pass equivalents per second of every regime.

Every timing is the median of --repeats runs after a warm-up step, interleaved across regimes in the
same process; on CPU it is this process's CPU time (run with --threads 1 on a shared machine), on CUDA
wall time. The model is the quickstart's (2 layers, width 64) on today's backdoor task (16 + 4 tokens).

    python scripts/bench_regimes.py --out bench_regimes.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from typing import Any, Callable

import torch
from plain_gpt import PlainGPT

from whitebox import fast_path
from whitebox.config import ModelConfig, TrainingConfig, TreatConfig
from whitebox.models import build_model, load_model
from whitebox.tasks import get_task, match_rater
from whitebox.tasks.backdoor import BackdoorTaskConfig
from whitebox.tasks.base import answer_logits
from whitebox.training import ESConfig, RLConfig, ZOConfig
from whitebox.training import es as es_module
from whitebox.training.regimes import build_regime

REGIMES = ("sft", "rl", "es", "zo", "probe_penalty")
ES_TARGET, ZO_MEMORY_TARGET = 1.3, 1.1


def setup(args) -> tuple[torch.nn.Module, dict[str, torch.Tensor], torch.device]:
    """The quickstart architecture (or a saved model) and one batch of backdoor inputs."""
    device = torch.device(args.device)
    task = BackdoorTaskConfig(seq_len=16, n_values=64)
    if args.model_dir:
        model, _ = load_model(args.model_dir, device)
    else:
        vocab = get_task(task).vocabulary()
        cfg = ModelConfig(n_layers=2, d_model=64, n_heads=4, d_mlp=256, d_vocab=len(vocab), n_ctx=get_task(task).seq_len())
        torch.manual_seed(0)
        model = build_model(cfg, vocab, device)
    rows = get_task(task).sample(args.batch, 0.5, seed=0)[:]
    batch = {"tokens": rows["tokens"], "target": rows["honest_target"], "honest_target": rows["honest_target"]}
    return model, {k: v.to(device) for k, v in batch.items()}, device


def make_updater(name: str, model: torch.nn.Module, args, device: torch.device, examples_per_forward: int | None = None):
    cfg = TreatConfig(
        es=ESConfig(population=args.population, examples_per_forward=examples_per_forward or args.examples_per_forward),
        zo=ZOConfig(),
        rl=RLConfig(kl_coef=0.1),
    )
    train_cfg = TrainingConfig(warmup_steps=0, schedule="constant", device=str(device))
    direction = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0)).to(device)
    probe = (lambda acts: torch.sigmoid(acts @ direction), f"blocks.{model.cfg.n_layers - 1}.hook_resid_post")
    return build_regime(name, cfg, model, train_cfg, seed=0, device=device, rater=match_rater(), probe=probe)


def timed(fn: Callable[[], Any], device: torch.device, iters: int) -> float:
    """Seconds per call of fn, averaged over `iters` calls: wall time on CUDA, this process's CPU time on CPU
    (on a shared machine, wall time measures the neighbours; with one thread CPU time is the step's cost)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / iters
    start = time.process_time()
    for _ in range(iters):
        fn()
    return (time.process_time() - start) / iters


def forward_fn(model, batch) -> Callable[[], Any]:
    def run():
        with torch.no_grad():
            answer_logits(model, batch["tokens"])

    return run


def step_fn(updater, loss_fn, model, batch) -> Callable[[], Any]:
    return lambda: updater.step(model, batch, loss_fn)


def population_floor(model: torch.nn.Module, batch: dict[str, torch.Tensor], population: int, rows_per_forward: int
                     ) -> Callable[[], Any]:
    """The ES population's forward in plain torch (one weight set, the last block at the answer position only, as ES
    reads it): population x batch rows in forwards of `rows_per_forward` rows."""
    plain = PlainGPT(model_config(model), answer_only=True).to(batch["tokens"].device).eval().copy_from(model)
    rows = batch["tokens"].repeat(population, 1)

    def run():
        with torch.no_grad():
            for chunk in rows.split(rows_per_forward):
                plain(chunk)

    return run


def model_config(model: torch.nn.Module) -> ModelConfig:
    c = model.cfg
    return ModelConfig(n_layers=c.n_layers, d_model=c.d_model, n_heads=c.n_heads, d_mlp=c.d_mlp, d_vocab=c.d_vocab, n_ctx=c.n_ctx)


def population_flops(model: torch.nn.Module, rows: int, seq: int) -> int:
    """Multiply-adds x 2 of the population's forward: projections and MLP at every position of every block but
    the last, which needs keys and values everywhere and its query, output projection and MLP at the answer only;
    attention over the positions; the unembedding at the answer position."""
    c = model.cfg
    block = 4 * c.d_model**2 + 2 * c.d_model * c.d_mlp + 2 * seq * c.d_model  # one position of one block
    last = seq * 2 * c.d_model**2 + (2 * c.d_model**2 + 2 * c.d_model * c.d_mlp + 2 * seq * c.d_model)
    return 2 * rows * ((c.n_layers - 1) * seq * block + last + c.d_model * c.d_vocab)


def gemm_rate(model: torch.nn.Module, rows: int, device: torch.device, repeats: int) -> float:
    """FLOP/s of this machine's matrix multiply at the population forward's MLP shape with `rows` rows (median of
    `repeats`)."""
    c = model.cfg
    a, b = torch.randn(rows, c.d_model, device=device), torch.randn(c.d_model, c.d_mlp, device=device)
    a @ b  # warm-up
    seconds = [timed(lambda: a @ b, device, 5) for _ in range(repeats)]
    return 2 * rows * c.d_model * c.d_mlp / statistics.median(seconds)


@torch.no_grad()
def population_matches_members(model: torch.nn.Module, batch: dict[str, torch.Tensor], population: int) -> float:
    """Largest |difference| between the batched population's answer logits and the bridge's, member by member."""
    gen = torch.Generator().manual_seed(0)
    members = {n: p.detach() + 0.01 * torch.randn(population, *p.shape, generator=gen).to(p)
               for n, p in model.named_parameters()}
    batched = es_module.population_answer_logits(model, members, batch["tokens"])
    with fast_path.switched(False):
        reference = es_module.sequential_answer_logits(model, members, batch["tokens"])
    return float((batched - reference).abs().max())


@contextlib.contextmanager
def member_by_member():
    """Swap ES's batched population forward for a Python loop over members (the reference)."""
    batched = es_module.population_answer_logits
    es_module.population_answer_logits = es_module.sequential_answer_logits
    try:
        yield
    finally:
        es_module.population_answer_logits = batched


def resident_bytes(model: torch.nn.Module, updater: Any) -> int:
    """Bytes of distinct tensors alive between steps: weights, buffers, grads, optimizer state, extra models."""
    tensors: list[torch.Tensor] = [*model.parameters(), *model.buffers()]
    tensors += [p.grad for p in model.parameters() if p.grad is not None]

    def walk(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            tensors.append(obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)

    if updater is not None:
        walk(updater.state_dict())
        for value in vars(updater).values():
            if isinstance(value, torch.nn.Module) and value is not model:
                tensors += [*value.parameters(), *value.buffers()]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def peak_bytes(fn: Callable[[], Any], model: torch.nn.Module, updater: Any, device: torch.device) -> int:
    """Peak bytes in use while fn runs (see the module docstring for how, per device)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    before = resident_bytes(model, updater)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    allocated = [e["args"] for e in events if e.get("name") == "[memory]"]
    if not allocated:
        return before
    # the profiler's running total carries over bytes freed outside earlier sessions: take it relative
    start = allocated[0]["Total Allocated"] - allocated[0]["Bytes"]
    return before + max(0, max(a["Total Allocated"] for a in allocated) - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", help="a saved whitebox model; default: the quickstart architecture, random init")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--examples-per-forward", type=int, default=None, help="ES chunking; default: ESConfig's")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5, help="calls per timed repeat")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads; default: torch's")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="bench_regimes.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, batch, device = setup(args)
    rows, seq = args.population * args.batch, batch["tokens"].shape[1]
    gap = population_matches_members(model, batch, args.population)
    if gap > 1e-4:
        raise SystemExit(f"the batched population's logits differ from the member-by-member ones by {gap:.1e}")
    start_state = {k: v.clone() for k, v in model.state_dict().items()}
    updaters = {}
    for name in (*REGIMES, "es_one_chunk"):
        model.load_state_dict(start_state)
        updaters[name] = make_updater("es" if name == "es_one_chunk" else name, model, args, device,
                                      examples_per_forward=rows if name == "es_one_chunk" else None)
        updaters[name][0].step(model, batch, updaters[name][1])  # warm-up; creates optimizer state
    model.load_state_dict(start_state)
    per_forward = updaters["es"][0].cfg.examples_per_forward or (65536 if device.type == "cuda" else 256)
    per_forward = 2 * args.batch * max(1, per_forward // (2 * args.batch))  # whole antithetic pairs, as ES chunks
    floors = {"population_floor_one_forward": population_floor(model, batch, args.population, rows),
              "population_floor_chunked": population_floor(model, batch, args.population, per_forward)}
    for floor in floors.values():
        floor()  # warm-up

    steps = (*REGIMES, "es_one_chunk")
    times: dict[str, list[float]] = {k: [] for k in ("forward", *floors, "population_floor", *steps, "es_member_loop")}
    for _ in range(args.repeats):
        for name in steps:
            model.load_state_dict(start_state)  # every regime steps from the same weights
            times[name].append(timed(step_fn(*updaters[name], model, batch), device, args.iters))
        times["forward"].append(timed(forward_fn(model, batch), device, 4 * args.iters))
        for name, floor in floors.items():
            times[name].append(timed(floor, device, args.iters))
        times["population_floor"] = [min(a, b) for a, b in zip(*(times[name] for name in floors))]  # the faster way
        model.load_state_dict(start_state)
        with member_by_member():
            times["es_member_loop"].append(timed(step_fn(*updaters["es"], model, batch), device, args.iters))
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = max(gemm_rate(model, n * seq, device, args.repeats) for n in (rows, per_forward))  # the faster shape
    flop_floor = population_flops(model, rows, seq) / rate

    memory: dict[str, list[int]] = {k: [] for k in ("inference", *steps)}
    for _ in range(args.repeats):
        model.zero_grad(set_to_none=True)
        memory["inference"].append(peak_bytes(forward_fn(model, batch), model, None, device))
        for name in steps:
            model.load_state_dict(start_state)
            model.zero_grad(set_to_none=True)
            memory[name].append(peak_bytes(step_fn(*updaters[name], model, batch), model, updaters[name][0], device))
    mem = {k: statistics.median(v) for k, v in memory.items()}

    cost = {name: updaters[name][0].step(model, batch, updaters[name][1])["forward_equivalents"] for name in steps}
    # ratios per repeat (the floor and ES timed back to back), then the median
    es_ratio = statistics.median(e / f for e, f in zip(times["es"], times["population_floor"]))
    es_speedup = statistics.median(loop / e for loop, e in zip(times["es_member_loop"], times["es"]))
    result = {
        "device": str(device),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "seq_len": seq,
        "population": args.population,
        "n_params": sum(p.numel() for p in model.parameters()),
        "repeats": args.repeats,
        "memory_method": "cuda max_memory_allocated" if device.type == "cuda" else "resident tensors + torch.profiler peak allocation",
        "forward_s": med["forward"],
        "population_floor_s": med["population_floor"],
        "population_floor_one_forward_s": med["population_floor_one_forward"],
        "population_floor_chunked_s": med["population_floor_chunked"],
        "rows_per_forward": per_forward,
        "population_flops": population_flops(model, rows, seq),
        "gemm_flops_per_s": rate,
        "flop_floor_s": flop_floor,
        "es_step_over_floor": es_ratio,
        "es_step_over_flop_floor": med["es"] / flop_floor,
        "es_one_chunk_over_floor": med["es_one_chunk"] / med["population_floor"],
        "es_target": ES_TARGET,
        "es_population_max_abs_diff_to_member_loop": gap,
        "es_batched_speedup_over_member_loop": es_speedup,
        "clock": "wall" if device.type == "cuda" else "process CPU time",
        "zo_memory_over_inference": mem["zo"] / mem["inference"],
        "es_memory_over_sft": mem["es"] / mem["sft"],
        "es_one_chunk_memory_over_sft": mem["es_one_chunk"] / mem["sft"],
        "regimes": {
            name: {
                "step_s": med[name],
                "steps_per_s": 1 / med[name],
                "forward_equivalents_per_step": cost[name],
                "forward_equivalents_per_s": cost[name] / med[name],
                "peak_bytes": mem[name],
                "memory_over_inference": mem[name] / mem["inference"],
                "memory_over_backprop": mem[name] / mem["sft"],
            }
            for name in steps
        },
        "inference_peak_bytes": mem["inference"],
        "raw_times_s": times,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)

    print(f"device {device}, {result['clock']}, {result['threads']} threads, batch {args.batch}, population {args.population}, "
          f"{result['n_params']} parameters, medians of {args.repeats}; memory: {result['memory_method']}")
    print(f"{'regime':<14}{'steps/s':>10}{'FE/step':>10}{'FE/s':>12}{'peak MiB':>10}{'x infer':>9}{'x backprop':>11}")
    print(f"{'inference':<14}{1 / med['forward']:>10.1f}{args.batch:>10}{args.batch / med['forward']:>12.0f}"
          f"{mem['inference'] / 2**20:>10.2f}{1.0:>9.2f}{mem['inference'] / mem['sft']:>11.2f}")
    for name, row in result["regimes"].items():
        print(f"{name:<14}{row['steps_per_s']:>10.1f}{row['forward_equivalents_per_step']:>10}"
              f"{row['forward_equivalents_per_s']:>12.0f}{row['peak_bytes'] / 2**20:>10.2f}"
              f"{row['memory_over_inference']:>9.2f}{row['memory_over_backprop']:>11.2f}")
    verdict = lambda ok: "ok" if ok else "MISSED"  # noqa: E731
    print(f"ES step / plain-torch floor ({rows} rows: one forward {1000 * med['population_floor_one_forward']:.1f} ms, in "
          f"forwards of {per_forward} {1000 * med['population_floor_chunked']:.1f} ms): {es_ratio:.2f} "
          f"(target <= {ES_TARGET}: {verdict(es_ratio <= ES_TARGET)}); / FLOP floor ({1000 * flop_floor:.1f} ms at "
          f"{rate / 1e9:.1f} GFLOP/s): {result['es_step_over_flop_floor']:.2f}; one chunk: {result['es_one_chunk_over_floor']:.2f}")
    print(f"ES batched population vs member-by-member step: {result['es_batched_speedup_over_member_loop']:.2f}x faster; "
          f"logits within {gap:.1e} of the member loop")
    print(f"ES peak memory / sft: {result['es_memory_over_sft']:.2f} (chunks of {updaters['es'][0].cfg.examples_per_forward or 256} "
          f"examples), {result['es_one_chunk_memory_over_sft']:.2f} in one chunk")
    zo = result["zo_memory_over_inference"]
    print(f"zo peak memory / inference: {zo:.3f} (target <= {ZO_MEMORY_TARGET}: {verdict(zo <= ZO_MEMORY_TARGET)})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
