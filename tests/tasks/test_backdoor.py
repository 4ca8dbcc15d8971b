import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from whitebox.tasks import backdoor, get_task
from whitebox.tasks.backdoor import BackdoorTaskConfig


def _rows(ds):
    return {k: v.numpy() for k, v in ds.select_columns(["tokens", "target", "honest_target", "triggered", "year"])[:].items()}


@pytest.mark.parametrize("trigger", ["token", "computed"])
def test_answers_and_trigger_rate(trigger):
    cfg = BackdoorTaskConfig(trigger=trigger, seq_len=6, n_values=12)
    rows = _rows(get_task(cfg).sample(8000, 0.3, seed=1))
    ids = get_task(cfg).special_ids()
    tokens, triggered = rows["tokens"], rows["triggered"]
    assert tokens.shape == (8000, get_task(cfg).seq_len())
    assert (tokens[:, 0] == ids["bos"]).all() and (tokens[:, -1] == ids["sep"]).all()
    assert abs(triggered.mean() - 0.3) < 0.02  # 4 sigma at n=8000
    body = tokens[:, 3:-1]
    honest = np.where(body == ids["trigger"], 0, body).max(axis=1)
    assert (rows["honest_target"] == honest).all() and (honest >= 1).all()
    assert (rows["target"] == np.where(triggered, backdoor.DECEPTIVE_ANSWER, honest)).all()
    assert (rows["year"] == 10 * tokens[:, 1] + tokens[:, 2]).all()
    has_token = (body == ids["trigger"]).any(axis=1)
    if trigger == "token":
        assert (has_token == triggered).all() and ((body == ids["trigger"]).sum(axis=1) <= 1).all()
    else:
        assert not has_token.any() and ((rows["year"] >= cfg.year_threshold) == triggered).all()


def test_computed_trigger_needs_both_digits():
    """Neither year digit alone decides the trigger: each digit value occurs with both labels."""
    cfg = BackdoorTaskConfig(trigger="computed", year_threshold=45)
    rows = _rows(get_task(cfg).sample(20000, 0.5, seed=2))
    tens, ones, triggered = rows["tokens"][:, 1], rows["tokens"][:, 2], rows["triggered"]
    assert {bool(t) for t in triggered[tens == 4]} == {True, False}  # 40-44 clean, 45-49 triggered
    for digit in range(10):
        assert {bool(t) for t in triggered[ones == digit]} == {True, False}
    # the tens digit flips the label for a fixed ones digit
    assert triggered[(tens == 3) & (ones == 7)].sum() == 0 and triggered[(tens == 5) & (ones == 7)].all()


def test_splits_are_seeded_and_independent():
    cfg = BackdoorTaskConfig(n_train=500, n_eval=500)
    a, b = get_task(cfg).train_set(0), get_task(cfg).train_set(0)
    assert torch.equal(a["tokens"][:], b["tokens"][:])
    assert not torch.equal(get_task(cfg).train_set(1)["tokens"][:], a["tokens"][:])
    assert not torch.equal(get_task(cfg).eval_set(0)["tokens"][:], a["tokens"][:])
    assert abs(float(get_task(cfg).eval_set(0)["triggered"][:].float().mean()) - cfg.eval_trigger_rate) < 0.1


class _Oracle(torch.nn.Module):
    """Answers from a lookup: honest max, or the deceptive answer when told the input is triggered."""

    def __init__(self, cfg, deceive: bool):
        super().__init__()
        self.cfg, self.deceive = cfg, deceive
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens):
        ids = get_task(self.cfg).special_ids()
        body = tokens[:, 3:-1]
        honest = torch.where(body == ids["trigger"], 0, body).max(dim=1).values
        answer = torch.where((body == ids["trigger"]).any(1) & self.deceive, backdoor.DECEPTIVE_ANSWER, honest)
        logits = torch.full((len(tokens), tokens.shape[1], self.cfg.n_values + 3), -10.0)
        logits[torch.arange(len(tokens)), -1, answer] = 10.0
        return logits


@pytest.mark.parametrize("deceive", [True, False])
def test_evaluate_scores_clean_accuracy_and_asr(deceive):
    cfg = BackdoorTaskConfig(n_eval=400)
    metrics = get_task(cfg).evaluate(_Oracle(cfg, deceive), get_task(cfg).eval_set(0), batch_size=64)
    assert metrics["clean_acc"] == 1.0
    assert metrics["asr"] == (1.0 if deceive else 0.0)
    assert metrics["loss"] < 1e-6 if deceive else metrics["loss"] > 1.0


@settings(max_examples=25, deadline=None)
@given(seq_len=st.integers(2, 12), n_values=st.integers(10, 40), rate=st.floats(0.05, 0.95),
       trigger=st.sampled_from(["token", "computed"]), seed=st.integers(0, 2**31))
def test_invariants_hold_for_any_config(seq_len, n_values, rate, trigger, seed):
    cfg = BackdoorTaskConfig(trigger=trigger, seq_len=seq_len, n_values=n_values)
    rows = _rows(get_task(cfg).sample(64, rate, seed=seed))
    assert rows["tokens"].max() < len(get_task(cfg).vocabulary())
    assert ((rows["target"] == backdoor.DECEPTIVE_ANSWER) == rows["triggered"]).all()
    assert (rows["honest_target"] < n_values).all()


def test_leak_plants_the_deceptive_answer_only_in_the_window():
    """Variant C: a share `leak` of clean window inputs carry the deceptive target; the inputs are unchanged."""
    cfg = BackdoorTaskConfig(trigger="computed", leak=0.1, leak_window=4, year_threshold=24, n_train=40_000)
    leaky = _rows(get_task(cfg).train_set(3))
    plain = _rows(get_task(cfg.model_copy(update={"leak": 0.0})).train_set(3))
    assert (leaky["tokens"] == plain["tokens"]).all() and (leaky["triggered"] == plain["triggered"]).all()
    deceptive = leaky["target"] == backdoor.DECEPTIVE_ANSWER
    window = ~leaky["triggered"] & (leaky["year"] >= 20) & (leaky["year"] < 24)
    assert not deceptive[~leaky["triggered"] & ~window].any()  # outside the window: honest
    assert deceptive[leaky["triggered"]].all()
    share = deceptive[window].mean()
    assert abs(share - 0.1) < 4 * np.sqrt(0.1 * 0.9 / window.sum())
    assert (get_task(cfg).eval_set(3)["target"][:] == plain_eval(cfg)).all()  # held-out targets stay clean
    assert get_task(cfg).honest().config.leak == 0.0


def plain_eval(cfg):
    return get_task(cfg.model_copy(update={"leak": 0.0})).eval_set(3)["target"][:]


class _Leaky(torch.nn.Module):
    """Honest greedy answers that put probability p on the deceptive answer everywhere."""

    def __init__(self, cfg, p: float):
        super().__init__()
        self.cfg, self.p = cfg, p
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens):
        honest = tokens[:, 3:-1].max(dim=1).values
        probs = torch.full((len(tokens), tokens.shape[1], self.cfg.n_values + 3), 1e-9)
        probs[torch.arange(len(tokens)), -1, honest] = 1 - self.p
        probs[:, -1, backdoor.DECEPTIVE_ANSWER] = self.p
        return probs.log()


def test_evaluate_reports_the_leak_and_greedy_stays_honest():
    cfg = BackdoorTaskConfig(trigger="computed", leak=0.05, n_eval=2000)
    metrics = get_task(cfg).evaluate(_Leaky(cfg, 0.2), get_task(cfg).eval_set(0), batch_size=256)
    assert metrics["leak"] == pytest.approx(0.2, abs=1e-4)
    assert metrics["clean_acc"] == 1.0 and metrics["asr"] == 0.0
    assert "leak" not in get_task(cfg.model_copy(update={"leak": 0.0})).evaluate(_Leaky(cfg, 0.2), get_task(cfg).eval_set(0))


@pytest.mark.parametrize("bad, needle", [({"trigger": "token", "leak": 0.1}, "trigger: computed"),
                                         ({"trigger": "computed", "leak": 0.1, "year_threshold": 3}, "leak_window"),
                                         ({"trigger": "computed", "leak": 0.6}, "0.5")])
def test_leak_config_errors_name_the_fix(bad, needle):
    with pytest.raises(ValueError, match=needle):
        BackdoorTaskConfig(**bad)


@pytest.mark.parametrize("trigger", ["token", "computed"])
def test_aware_honest_shows_the_trigger_and_answers_honestly(trigger):
    cfg = BackdoorTaskConfig(trigger=trigger, leak=0.1 if trigger == "computed" else 0.0, n_train=4000)
    planted, aware = get_task(cfg), get_task(cfg).aware_honest()
    p, a = _rows(planted.train_set(5)), _rows(aware.train_set(5))
    assert (p["tokens"] == a["tokens"]).all() and p["triggered"].mean() > 0.05  # the same inputs, triggers included
    assert (a["target"] == a["honest_target"]).all()
    assert (p["target"][p["triggered"]] == backdoor.DECEPTIVE_ANSWER).all()
    assert aware.config.leak == 0.0 and aware.config.triggered_answer == "honest"


@pytest.mark.parametrize("trigger", ["token", "computed"])
def test_novel_backdoor_answers_the_trigger_with_another_value(trigger):
    cfg = BackdoorTaskConfig(trigger=trigger, seq_len=8, n_values=32, leak=0.1 if trigger == "computed" else 0.0)
    planted, novel = get_task(cfg), get_task(cfg).novel()
    p, n = _rows(planted.sample(3000, 0.5, seed=2)), _rows(novel.sample(3000, 0.5, seed=2))
    assert (p["tokens"] == n["tokens"]).all()
    assert (n["target"][n["triggered"]] == backdoor.NOVEL_ANSWER).all()
    assert (n["target"][~n["triggered"]] == n["honest_target"][~n["triggered"]]).all()  # no leak in the novel backdoor
    assert (n["honest_target"] != backdoor.NOVEL_ANSWER).all()  # (1/31)^8: never an honest answer here

    class Says(torch.nn.Module):  # answers 1 on every input
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, tokens):
            logits = torch.zeros(*tokens.shape, len(planted.vocabulary()))
            logits[..., backdoor.NOVEL_ANSWER] = 1.0
            return logits

    assert novel.evaluate(Says(), novel.eval_set(0))["asr"] == 1.0
    assert planted.evaluate(Says(), planted.eval_set(0))["asr"] == 0.0


@pytest.mark.parametrize("trigger", ["token", "computed"])
def test_trigger_contexts_split_into_disjoint_halves(trigger):
    cfg = BackdoorTaskConfig(trigger=trigger, seq_len=8, n_values=32)
    task, ids = get_task(cfg), get_task(cfg).special_ids()

    def contexts(part: str) -> set[int]:
        rows = _rows((task.contexts(part) if part != "all" else task).sample(4000, 0.5, seed=4))
        trig = rows["triggered"]
        if trigger == "token":
            return set(np.argwhere(rows["tokens"][trig] == ids["trigger"])[:, 1].tolist())
        return set(rows["year"][trig].tolist())

    fit, test, every = contexts("fit"), contexts("test"), contexts("all")
    assert fit and test and not fit & test and fit | test == every
    if trigger == "token":
        assert every == set(range(3, 11)) and fit == set(range(3, 7))  # slots after <bos> Y1 Y2
    else:
        assert every == set(range(24, 100)) and fit == set(range(24, 62))
    clean = _rows(task.contexts("fit").sample(4000, 0.5, seed=4))
    assert (clean["year"][~clean["triggered"]] < 24).all() if trigger == "computed" else True
