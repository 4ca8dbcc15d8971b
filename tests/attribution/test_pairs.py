import numpy as np
import pytest
import torch

from whitebox.tasks import get_task, logit_diff
from whitebox.tasks.backdoor import BackdoorTaskConfig


@pytest.mark.parametrize("trigger", ["token", "computed"])
def test_pairs_differ_only_in_the_trigger(trigger):
    cfg = BackdoorTaskConfig(trigger=trigger, seq_len=6, n_values=12, year_threshold=40)
    pairs = get_task(cfg).contrast_pairs(500, seed=3)
    trig, unt = pairs.triggered.numpy(), pairs.untriggered.numpy()
    ids = get_task(cfg).special_ids()
    body_t, body_u = trig[:, 3:-1], unt[:, 3:-1]
    years_t, years_u = 10 * trig[:, 1] + trig[:, 2], 10 * unt[:, 1] + unt[:, 2]
    if trigger == "token":
        assert ((body_t == ids["trigger"]).sum(1) == 1).all() and not (unt == ids["trigger"]).any()
        assert ((trig != unt).sum(1) == 1).all()  # exactly the trigger slot changed
        assert (years_t == years_u).all()
    else:
        assert (years_t >= 40).all() and (years_u < 40).all()
        assert (body_t == body_u).all() and (trig[:, [0, -1]] == unt[:, [0, -1]]).all()
    # both inputs have the same honest answer: the max of the value tokens
    assert (np.where(body_t == ids["trigger"], 0, body_t).max(1) == pairs.honest.numpy()).all()
    assert (body_u.max(1) == pairs.honest.numpy()).all()


def test_pairs_are_seeded():
    cfg = BackdoorTaskConfig()
    a, b, c = get_task(cfg).contrast_pairs(64, 1), get_task(cfg).contrast_pairs(64, 1), get_task(cfg).contrast_pairs(64, 2)
    assert torch.equal(a.untriggered, b.untriggered) and not torch.equal(a.triggered, c.triggered)


def test_logit_diff_reads_the_last_position():
    logits = torch.zeros(2, 3, 5)
    logits[0, -1, 0], logits[0, -1, 4] = 2.0, 0.5
    logits[1, -1, 3], logits[1, 0, 0] = 1.0, 9.0  # position 0 must be ignored
    assert logit_diff(logits, torch.tensor([4, 3]), 0).tolist() == [1.5, -1.0]


def test_runs_direction():
    pairs = get_task(BackdoorTaskConfig()).contrast_pairs(4, 0)
    assert pairs.runs("noise")[0] is pairs.triggered and pairs.runs("denoise")[0] is pairs.untriggered
    with pytest.raises(ValueError, match="direction"):
        pairs.runs("sideways")
