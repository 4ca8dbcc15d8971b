"""Two gloo processes on the CPU against one: data-parallel gradient regimes, sharded ES and SPSA, rank-0-only writes.

One spawn of two ranks runs every scenario (starting processes is the slow part); the same
scenarios in this process are the single-process reference.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from tests.conftest import TINY
from tests.training.conftest import make_tiny_bridge
from whitebox.config import TrainingConfig, TreatConfig, parse_config
from whitebox.models import load_model, state_tensors
from whitebox.runtime import distributed
from whitebox.runtime.artifacts import write_text
from whitebox.runtime.records import results
from whitebox.runtime.tracking import Tracker
from whitebox.training import ESConfig, RLConfig, TrainingDiverged, ZOConfig, train
from whitebox.training.regimes import build_regime

WORLD = 2
HOOK = "blocks.0.hook_resid_post"
GRADIENT = {  # batches of 31 rows: ranks take 15 and 16, so the gradient average must weigh them
    "sft": ("sft", TreatConfig()),
    "rl": ("rl", TreatConfig(rl=RLConfig(baseline="running", temperature=1.0))),
    "probe_penalty": ("probe_penalty", TreatConfig()),
}
BLACK_BOX = {  # 5 pairs in chunks of 2: the ranks hold 2 and 3 pairs, chunked unlike one process
    "es": ("es", TreatConfig(es=ESConfig(population=10, feedback="supervised", examples_per_forward=4 * 16))),
    "es_reward": ("es", TreatConfig(es=ESConfig(population=10, temperature=1.0, examples_per_forward=4 * 16))),
    "zo": ("zo", TreatConfig(zo=ZOConfig(samples=3, lr=1e-2))),
}


def graded_rater(batch: dict[str, torch.Tensor], answers: torch.Tensor) -> torch.Tensor:
    """The honest rater plus a small reward growing with the answer's id: an untrained model's fitness differs."""
    return (answers == batch["honest_target"]).float() + answers.float() / 100


def _training(batch_size: int, steps: int) -> TrainingConfig:
    return TrainingConfig(steps=steps, batch_size=batch_size, lr=0.01, warmup_steps=0, schedule="constant", log_every=1,
                          eval_every=10**6, checkpoint_every=2, keep_checkpoints=2, device="cpu")


def _train(regime: str, cfg: TreatConfig, batch_size: int, steps: int, directory: Path) -> dict[str, torch.Tensor]:
    model, data = make_tiny_bridge()
    direction = torch.randn(16, generator=torch.Generator().manual_seed(1))
    probe = (lambda acts: torch.sigmoid(acts @ direction), HOOK)
    updater, loss_fn = build_regime(regime, cfg, model, _training(batch_size, steps), seed=0,
                                    rater=graded_rater, probe=probe)
    train(model, updater, loss_fn, data, _training(batch_size, steps), seed=0, evaluate=lambda m: {"none": 0.0},
          checkpoint_dir=directory, log=_NoLog(), desc=str(directory.name))
    return state_tensors(model)


class _NoLog:
    def log(self, step, metrics):
        pass

    def rewind(self, step):
        pass

    def close(self, through=None):
        pass


def scenarios(directory: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Weights after training with every regime; sft stops at 2 steps and is resumed to 4 (all ranks load it)."""
    out = {}
    for name, (regime, cfg) in GRADIENT.items():
        if name == "sft":
            _train(regime, cfg, 31, 2, directory / name)
        out[name] = _train(regime, cfg, 31, 4, directory / name)
    for name, (regime, cfg) in BLACK_BOX.items():
        out[name] = _train(regime, cfg, 16, 2, directory / name)
    return out


def diverge(directory: Path) -> dict[str, str]:
    """Only rank 1's loss is NaN (its shard for sft, its direction for zo): the error each rank stops with."""
    out = {}
    for name, (regime, cfg) in {"sft": GRADIENT["sft"], "zo": ("zo", TreatConfig(zo=ZOConfig(samples=2)))}.items():
        model, data = make_tiny_bridge()
        updater, loss_fn = build_regime(regime, cfg, model, _training(32, 3), seed=0)

        def poisoned(model, batch, loss_fn=loss_fn):
            return loss_fn(model, batch) * (math.nan if distributed.rank() == 1 else 1.0)

        try:
            train(model, updater, poisoned, data, _training(32, 3), seed=0, evaluate=lambda m: {"none": 0.0},
                  checkpoint_dir=directory / name, log=_NoLog(), desc=name)
            out[name] = "finished"
        except TrainingDiverged as err:
            out[name] = str(err)
    return out


def writes(directory: Path) -> dict[str, str]:
    """Each rank writes its own text to one file and logs one metrics line; what every rank reads right after."""
    write_text(directory / "who.txt", f"rank {distributed.rank()}")
    seen = (directory / "who.txt").read_text()  # atomic_write returns once rank 0's file is there
    tracker = Tracker(directory, parse_config(TINY))
    tracker.log("test", 1, {"rank": float(distributed.rank())})
    tracker.update_summary({"rank": distributed.rank()})
    return {"seen": seen}


def locks(directory: Path) -> dict[str, str]:
    """Both ranks take one cell's lock (rank 0 holds it for the pair), then a lock a live foreign process holds."""
    from whitebox.runtime.locks import LockHeld, hold

    out = {}
    with hold(directory / "cell.lock", "cell a"):
        out["shared"] = "held"
    distributed.barrier()
    out["released"] = str((directory / "cell.lock").exists())
    if distributed.is_main():
        (directory / "taken.lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    distributed.barrier()
    try:
        with hold(directory / "taken.lock", "cell b"):
            out["taken"] = "held"
    except LockHeld as err:
        out["taken"] = str(err)
    return out


def _worker(rank: int, port: int, directory: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.init(torch.device("cpu"))
    try:
        result = {"weights": scenarios(directory / "train"), "writes": writes(directory / "writes"),
                  "diverge": diverge(directory / "diverge"), "locks": locks(directory / "locks")}
        torch.save(result, directory / f"rank{rank}.pt")
    finally:
        distributed.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[list[dict], dict[str, dict[str, torch.Tensor]], Path]:
    """The two ranks' results and the single-process reference."""
    directory = tmp_path_factory.mktemp("two_ranks")
    mp.spawn(_worker, args=(free_port(), directory), nprocs=WORLD, join=True)
    ranks = [torch.load(directory / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = scenarios(tmp_path_factory.mktemp("one_rank"))
    finally:
        torch.set_num_threads(before)
    return ranks, single, directory


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest weight difference, leaving out the attention key bias: softmax ignores it, so its gradient is
    rounding noise (1e-9) that AdamW scales up to full steps of either sign whatever the process count."""
    return max(float((a[k] - b[k]).abs().max()) for k in a if not k.endswith("attn.k.bias"))


@pytest.mark.parametrize("regime", list(GRADIENT))
def test_data_parallel_gradient_regimes_match_one_process(two_ranks, regime):
    ranks, single, _ = two_ranks
    assert all(torch.equal(ranks[0]["weights"][regime][k], v) for k, v in ranks[1]["weights"][regime].items())
    assert _max_diff(ranks[0]["weights"][regime], single[regime]) < 1e-6  # 1.2e-7 measured
    assert _max_diff(single[regime], state_tensors(make_tiny_bridge()[0])) > 1e-3  # it trained


@pytest.mark.parametrize("regime", list(BLACK_BOX))
def test_sharded_population_gives_the_single_process_update_bit_for_bit(two_ranks, regime):
    ranks, single, _ = two_ranks
    for rank in ranks:
        assert all(torch.equal(rank["weights"][regime][k], v) for k, v in single[regime].items())
    assert _max_diff(single[regime], state_tensors(make_tiny_bridge()[0])) > 1e-4  # it trained


def test_only_rank_0_writes_and_every_rank_reads_it_after(two_ranks):
    ranks, _, directory = two_ranks
    assert [r["writes"]["seen"] for r in ranks] == ["rank 0", "rank 0"]
    lines = (directory / "writes" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"rank": 0.0' in lines[0]
    assert (directory / "writes" / "summary.json").read_text().count('"rank": 0') == 1
    names = {p.name for p in (directory / "train" / "sft").iterdir()}
    assert names == {"step_0000002", "step_0000004"}  # no rank-1 temporaries, one writer pruning


def test_the_ranks_of_one_run_share_a_cell_lock_and_all_refuse_a_foreign_one(two_ranks):
    ranks, _, _ = two_ranks
    for rank in ranks:
        assert rank["locks"]["shared"] == "held" and rank["locks"]["released"] == "False"
    assert "cell b is being run by process" in ranks[0]["locks"]["taken"]  # the pytest process: alive
    assert "rank 0 could not take the lock" in ranks[1]["locks"]["taken"]


def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_that_step(two_ranks):
    ranks, _, directory = two_ranks
    for name in ("sft", "zo"):
        errors = [rank["diverge"][name] for rank in ranks]
        assert all(e.startswith(f"{name} step 1: ") and "no checkpoint was written yet" in e for e in errors), errors
        assert not (directory / "diverge" / name).exists()


def test_torchrun_plant_run_matches_a_one_process_run(tmp_path):
    """`python -m torch.distributed.run --nproc-per-node 2 -m whitebox run` on the tiny plant config."""
    from whitebox.runner import run

    steps = {"steps": 6, "eval_every": 3, "checkpoint_every": 3, "log_every": 1, "warmup_steps": 2}
    config = {**TINY, "training": {**TINY["training"], **steps}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(WORLD), "--master-port",
               str(free_port()), "-m", "whitebox", "run", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "two")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("summary\n") == 1  # rank 0 prints for everyone
    one = run(parse_config(config), out=tmp_path / "one")
    two_dir, one_dir = tmp_path / "two", tmp_path / "one"
    two = yaml.safe_load((two_dir / "summary.json").read_text())
    assert two["status"] == "complete" and two.keys() == one.keys()
    assert all(abs(two[k] - one[k]) < 1e-4 for k, v in results(one).items() if isinstance(v, float))  # times aside
    lines = (two_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len((one_dir / "metrics.jsonl").read_text().splitlines())  # no line twice
    assert sorted(p.name for p in two_dir.rglob("*")) == sorted(p.name for p in one_dir.rglob("*"))
    weights = [state_tensors(load_model(d / "models" / "planted")[0]) for d in (two_dir, one_dir)]
    assert _max_diff(*weights) < 1e-5
