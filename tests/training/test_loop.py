import math
import shutil

import pytest
import torch

from tests.training.conftest import ListLog
from whitebox.config import TrainingConfig
from whitebox.training import Backprop, TrainingDiverged, batch_indices, train
from whitebox.training.checkpoints import list_checkpoints, load_checkpoint

CFG = TrainingConfig(steps=12, batch_size=8, lr=0.05, warmup_steps=0, schedule="constant", log_every=1, eval_every=4,
                     checkpoint_every=3, keep_checkpoints=5, device="cpu")
DATA = {"x": torch.randn(40, 3, generator=torch.Generator().manual_seed(0))}


def _train(tmp_path, loss_fn, model=None, cfg=CFG, log=None):
    torch.manual_seed(0)
    model = model or torch.nn.Linear(3, 1)
    return model, train(model, Backprop(model, cfg, torch.device("cpu")), loss_fn, DATA, cfg, seed=0,
                        evaluate=_evaluate,
                        checkpoint_dir=tmp_path, log=log or ListLog(), desc="toy")


@torch.no_grad()
def _evaluate(model):
    return {"loss": float(model(DATA["x"]).pow(2).mean())}


def _square(model, batch):
    return model(batch["x"]).pow(2).mean()


def test_batches_cover_each_epoch_once_and_are_seeded():
    epoch = torch.cat([batch_indices(s, 40, 8, seed=3) for s in range(5)])
    assert sorted(epoch.tolist()) == list(range(40))
    assert torch.equal(batch_indices(7, 40, 8, 3), batch_indices(7, 40, 8, 3))
    assert not torch.equal(batch_indices(5, 40, 8, 3), batch_indices(0, 40, 8, 3))  # next epoch, new order
    assert not torch.equal(batch_indices(0, 40, 8, 3), batch_indices(0, 40, 8, 4))


def test_loop_logs_evaluates_and_checkpoints(tmp_path):
    log = ListLog()
    model, final = _train(tmp_path, _square, log=log)
    evals = [s for s, m in log.records if "eval/loss" in m]
    assert evals == [0, 4, 8, 12]
    assert [s for s, m in log.records if "train/loss" in m] == list(range(1, 13))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000003", "step_0000006", "step_0000009", "step_0000012"]
    assert final["loss"] < log.records[0][1]["eval/loss"]  # training reduced the loss


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    calls = []

    def poisoned(model, batch):
        calls.append(1)
        loss = _square(model, batch)
        return loss * math.nan if len(calls) == 8 else loss

    with pytest.raises(TrainingDiverged) as err:
        _train(tmp_path, poisoned)
    message = str(err.value)
    assert "toy step 8: loss became nan" in message and "step_0000006" in message and "training.lr" in message
    kept = list_checkpoints(tmp_path)
    assert kept[-1].name == "step_0000006"
    model = torch.nn.Linear(3, 1)
    load_checkpoint(kept[-1], model, Backprop(model, CFG, torch.device("cpu")))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_infinite_gradient_is_caught(tmp_path):
    with pytest.raises(TrainingDiverged, match="gradient norm became"):
        _train(tmp_path, _inf_grad)


class _InfGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.inf


def _inf_grad(model, batch):
    return _InfGrad.apply(model(batch["x"])).pow(2).mean()


def test_resume_from_checkpoint_matches_uninterrupted(tmp_path):
    full_log = ListLog()
    full, _ = _train(tmp_path / "full", _square, log=full_log)
    short = CFG.model_copy(update={"steps": 7})  # a constant schedule does not depend on steps
    partial_log = ListLog()
    _train(tmp_path / "cut", _square, cfg=short, log=partial_log)  # stops at 7, checkpoint at 6 and 7
    shutil.rmtree(list_checkpoints(tmp_path / "cut")[-1])  # as if killed after step 7, before its checkpoint
    resumed, _ = _train(tmp_path / "cut", _square, log=partial_log)
    assert torch.equal(resumed.weight, full.weight)
    assert [s for s, _ in partial_log.records] == [s for s, _ in full_log.records]


def test_stop_ends_training_after_the_first_evaluation_that_meets_it(tmp_path):
    log = ListLog()
    _, first = _train(tmp_path / "full", _square, log=log)
    losses = {s: m["eval/loss"] for s, m in log.records if "eval/loss" in m}  # at steps 0, 4, 8, 12
    bar = (losses[4] + losses[8]) / 2  # met at step 8, not at 4
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    log = ListLog()
    final = train(model, Backprop(model, CFG, torch.device("cpu")), _square, DATA, CFG, seed=0, evaluate=_evaluate,
                  checkpoint_dir=tmp_path / "stop", log=log, stop=lambda m, step: m["loss"] <= bar)
    assert max(s for s, _ in log.records) == 8 and final["loss"] == pytest.approx(losses[8])
    assert list_checkpoints(tmp_path / "stop")[-1].name == "step_0000008"
    again = ListLog()  # resuming a stopped run does not train on
    train(model, Backprop(model, CFG, torch.device("cpu")), _square, DATA, CFG, seed=0, evaluate=_evaluate,
          checkpoint_dir=tmp_path / "stop", log=again, stop=lambda m, step: m["loss"] <= bar)
    assert [s for s, m in again.records if "train/loss" in m] == []


def test_eval_every_budget_measures_at_equal_budget_points(tmp_path):
    class Costly(Backprop):
        def step(self, model, batch, loss_fn):
            return {**super().step(model, batch, loss_fn), "forward_equivalents": 7}

    torch.manual_seed(0)
    model, log = torch.nn.Linear(3, 1), ListLog()
    train(model, Costly(model, CFG, torch.device("cpu")), _square, DATA, CFG, seed=0, evaluate=_evaluate,
          checkpoint_dir=tmp_path, log=log, budget=100, eval_every_budget=25)
    spent = [m["budget/forward_equivalents"] for _, m in log.records if "eval/loss" in m]
    assert spent == [0, 28, 56, 77, 105]  # the first step past each multiple of 25, and the last


def test_one_stop_request_arriving_twice_is_still_one_request(monkeypatch):
    """A job's SIGTERM and the --workers parent's copy of it, a moment apart: the step still finishes and
    checkpoints; a second signal sent later (REPEAT_SECONDS on) stops at once."""
    import os
    import signal

    from whitebox.training import loop

    monkeypatch.setattr(loop, "REPEAT_SECONDS", 0.3)
    with loop._interrupt_at_step_boundary() as interrupted:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupted()
        loop.time.sleep(0.4)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            loop.time.sleep(0.1)  # the handler runs at the next bytecode boundary


def test_a_stop_left_by_an_earlier_interrupted_run_does_not_stop_a_later_loop(tmp_path):
    """lanes.STOP tells the other lanes to stop; the main thread's own loop stops only on its own signal."""
    from whitebox.runtime import lanes

    lanes.STOP.set()
    log = ListLog()
    try:
        _train(tmp_path, _square, log=log)
    except KeyboardInterrupt:
        pytest.fail("a STOP left from an earlier run stopped the main thread's loop")
    finally:
        lanes.STOP.clear()
    assert max(step for step, _ in log.records) == CFG.steps
