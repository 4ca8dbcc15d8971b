"""Jobs run once their dependencies are done, side by side, with errors and Ctrl-C reaching every lane."""

import threading
import time

import pytest
import torch

from whitebox.runtime import lanes
from whitebox.runtime.lanes import Job, resolve_lanes, run_jobs, seeded


@pytest.mark.parametrize("count", [1, 2, 3])
def test_every_job_runs_once_after_its_dependencies_and_returns_its_result(count):
    log, lock = [], threading.Lock()

    def job(name, value):
        def run(results):
            with lock:
                log.append(("start", name, threading.current_thread().name))
            time.sleep(0.02)
            return value + sum(results[dep] for dep in deps[name])
        return run

    deps = {"a": (), "b": ("a",), "c": (), "d": ("b", "c")}
    jobs = [Job(name, job(name, i), after=deps[name]) for i, name in enumerate("dbca")]  # listed before their deps
    results = run_jobs(jobs, count)
    assert results == {"a": 3, "b": 4, "c": 2, "d": 6}  # a = 3, c = 2, b = 1 + a, d = 0 + b + c
    started = [name for _, name, _ in log]
    assert sorted(started) == ["a", "b", "c", "d"]
    assert started.index("a") < started.index("b") < started.index("d") and started.index("c") < started.index("d")
    threads = {thread for *_, thread in log}
    assert (len(threads) > 1) == (count > 1)  # lanes 1: all in the caller's thread


def test_lanes_share_the_torch_threads_and_give_them_back():
    before = torch.get_num_threads()
    seen = run_jobs([Job(n, lambda r: torch.get_num_threads()) for n in "ab"], 2)
    assert seen == {"a": max(1, before // 2), "b": max(1, before // 2)}
    assert torch.get_num_threads() == before


def test_a_failed_job_stops_new_jobs_and_its_error_is_raised():
    ran = []

    def boom(results):
        time.sleep(0.05)  # the other lane has taken "slow" by now
        raise ValueError("cell sft-present diverged")

    jobs = [Job("bad", boom), Job("slow", lambda r: time.sleep(0.2) or ran.append("slow")),
            Job("later", lambda r: ran.append("later"), after=("bad",))]
    with pytest.raises(ValueError, match="sft-present diverged"):
        run_jobs(jobs, 2)
    assert ran == ["slow"]  # the running job finished; the one waiting on the failure never started


def test_ctrl_c_in_the_main_lane_stops_the_other_lane_at_its_step_boundary():
    steps = []

    def other(results):  # a training loop in another lane: checks STOP after each step
        for step in range(1000):
            steps.append(step)
            time.sleep(0.005)
            if lanes.STOP.is_set():
                raise KeyboardInterrupt(f"stopped at step {step}")

    def main(results):
        time.sleep(0.05)
        raise KeyboardInterrupt("SIGINT")

    jobs = [Job("main", main), Job("other", other)]
    with pytest.raises(KeyboardInterrupt, match="SIGINT"):
        run_jobs(jobs, 2)
    assert 0 < len(steps) < 1000 and lanes.STOP.is_set()
    lanes.STOP.clear()


def test_circles_and_unknown_dependencies_are_refused_before_anything_runs():
    ran = []
    with pytest.raises(ValueError, match="circle"):
        run_jobs([Job("a", lambda r: ran.append(1), after=("b",)), Job("b", lambda r: ran.append(2), after=("a",))], 2)
    with pytest.raises(ValueError, match="unknown: \\['x'\\]"):
        run_jobs([Job("a", lambda r: ran.append(1), after=("x",))], 1)
    assert ran == []


def test_seeded_blocks_draw_their_own_numbers_whatever_runs_beside_them():
    def draw(seed):
        def run(results):
            out = []
            for _ in range(200):
                with seeded(seed):  # another lane's seeded block never lands between the seeding and the draw
                    out.append(torch.randn(3))
            return torch.stack(out)
        return run

    alone = {seed: draw(seed)({}) for seed in (7, 8)}
    both = run_jobs([Job("a", draw(7)), Job("b", draw(8))], 2)
    assert torch.equal(both["a"], alone[7]) and torch.equal(both["b"], alone[8])
    assert not torch.equal(alone[7], alone[8])


def test_auto_is_two_lanes_on_a_cpu_with_two_threads_else_one():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert resolve_lanes("auto", torch.device("cpu")) == 2
        assert resolve_lanes("auto", torch.device("cuda")) == 1
        assert resolve_lanes(3, torch.device("cpu")) == 3
        torch.set_num_threads(1)
        assert resolve_lanes("auto", torch.device("cpu")) == 1
    finally:
        torch.set_num_threads(before)


def test_run_lanes_is_refused_where_no_experiment_reads_it_and_outside_its_range(tiny):
    from tests.conftest import TINY
    from whitebox.config import ConfigError, parse_config
    from whitebox.runner import prepare

    with pytest.raises(ConfigError, match="run.lanes: experiment 'plant' runs its steps one after the other"):
        prepare(parse_config({**TINY, "run": {**TINY["run"], "lanes": 2}}))
    assert prepare(parse_config({**TINY, "run": {**TINY["run"], "lanes": "auto"}})).name == "plant"
    for bad in (0, 65):
        with pytest.raises(ConfigError, match="lanes"):
            parse_config({**TINY, "experiment": "treat", "run": {**TINY["run"], "lanes": bad}})
