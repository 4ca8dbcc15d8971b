import math

import numpy as np
import pytest
import torch

from tests.conftest import TINY
from whitebox.capture import Captured, capture
from whitebox.config import LocateConfig, parse_config
from whitebox.models import build_model
from whitebox.probes.metrics import recall_at_fpr
from whitebox.protocol.locate import probe_data
from whitebox.runner import resolve_config
from whitebox.studies import detection
from whitebox.studies.detection import (
    best_summary,
    detection_rows,
    format_detection_table,
    lie_rows,
    score_methods,
)
from whitebox.tasks import get_task

LOCATE = LocateConfig(n_fit=80, n_test=60)


@pytest.fixture(scope="module")
def tiny_model():
    cfg = resolve_config(parse_config(TINY))
    torch.manual_seed(0)
    return build_model(cfg.model, get_task(cfg.task).vocabulary(), "cpu").eval(), cfg


def captured(x: torch.Tensor, y: torch.Tensor) -> Captured:
    n = len(y)
    return Captured({"h": x}, y, torch.arange(n), torch.zeros(n, dtype=torch.long), "last")


def test_recall_at_1pct_fpr_on_a_hand_computed_case():
    neg = torch.arange(200, dtype=torch.float64)  # 0..199: 1% of 200 allows 2 false positives, so cut = 197
    pos = torch.tensor([198.0, 197.5, 250.0, 197.0, 10.0], dtype=torch.float64)  # 3 strictly above 197
    scores, labels = torch.cat([neg, pos]), torch.cat([torch.zeros(200), torch.ones(5)])
    assert float(recall_at_fpr(scores[None], labels)[0]) == pytest.approx(3 / 5)


def test_detector_recall_matches_a_hand_computation_from_its_scores():
    gen = torch.Generator().manual_seed(0)
    x_fit = torch.randn(300, 4, generator=gen)
    y_fit = (torch.arange(300) % 3 == 0).long()
    x_fit[y_fit == 1] += 1.5
    x_test = torch.randn(400, 4, generator=gen)
    y_test = (torch.arange(400) % 2 == 0).long()
    x_test[y_test == 1] += 1.5
    got = score_methods(captured(x_fit, y_fit), captured(x_test, y_test), LOCATE, seed=0)["detector"]["h"]
    assert got["auroc"] > 0.7
    det = detection.fit_detectors({"h": x_fit[y_fit == 0]})["h"]  # the same fit the pipeline makes, on clean rows
    d = det.score(x_test.double()).numpy()
    neg = np.sort(d[y_test.numpy() == 0])[::-1]
    cut = neg[math.floor(0.01 * len(neg))]  # 200 negatives: 2 may be flagged, the threshold is the 3rd highest
    hand = float((d[y_test.numpy() == 1] > cut).mean())
    assert 0 < hand < 1 and got["recall_at_1pct_fpr"] == pytest.approx(hand)


def test_detector_is_fitted_only_on_clean_rows(tiny_model, monkeypatch):
    model, cfg = tiny_model
    seen = []
    fit_detectors = detection.fit_detectors

    def spy(clean, **kwargs):
        seen.append(clean)
        return fit_detectors(clean, **kwargs)

    monkeypatch.setattr(detection, "fit_detectors", spy)
    rows = detection_rows(model, cfg.model, get_task(cfg.task), LOCATE, 0, "backdoor_token")
    fit_rows, _ = probe_data(get_task(cfg.task), LOCATE, 0)
    fit = fit_rows.select_columns(["tokens", "triggered"])[:]
    clean = capture(model, fit["tokens"][~fit["triggered"].bool()], "resid").acts
    assert len(seen) == 2  # the planted model and the fresh one, each on its own clean activations
    assert list(seen[0]) == list(clean)
    for hook in clean:
        assert torch.equal(seen[0][hook], clean[hook])
        assert len(seen[1][hook]) == len(clean[hook])
    assert {(r["hook"], r["method"]) for r in rows} == {(h, m) for h in clean for m in ("probe", "detector")}


def test_rows_summary_and_table_cover_every_hook_and_method(tiny_model):
    model, cfg = tiny_model
    rows = detection_rows(model, cfg.model, get_task(cfg.task), LOCATE, 0, "b")
    assert len(rows) == 2 * 3  # 1 layer: L0.pre, L0.mid, L0.post
    for r in rows:
        assert 0 <= r["auroc"] <= 1 and 0 <= r["recall_at_1pct_fpr"] <= 1 and 0 <= r["baseline_auroc"] <= 1
        assert (r["control_auroc"] is None) == (r["method"] == "detector")
    summary = best_summary(rows)
    assert summary["detect.b.probe.auroc_best"] == max(r["auroc"] for r in rows if r["method"] == "probe")
    assert set(summary) == {f"detect.b.{m}.{k}" for m in ("probe", "detector")
                            for k in ("auroc_best", "recall_best", "baseline_auroc_best", "hook_best")}
    assert format_detection_table(rows).count("\n| b | ") == len(rows)


@pytest.fixture(scope="module")
def rater_models():
    """Two differently initialised models of the flawed_rater task and its config."""
    cfg = resolve_config(parse_config({**TINY, "task": {"name": "flawed_rater", "seq_len": 4, "n_values": 10}}))
    vocab = get_task(cfg.task).vocabulary()
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(build_model(cfg.model, vocab, "cpu").eval())
    return models, cfg


def test_lie_rows_of_a_model_against_itself_are_chance_and_a_changed_model_is_told_apart(rater_models):
    (a, b), cfg = rater_models
    same = lie_rows(a, a, a, get_task(cfg.task), LOCATE, 0)
    assert {(r["name"], r["method"]) for r in same} == {(h, m) for h in ("L0.pre", "L0.mid", "L0.post")
                                                       for m in ("probe", "detector")}
    for r in same:  # identical activations and scores under both labels: exactly chance, for deceived and baseline
        assert r["auroc"] == 0.5 and r["baseline_auroc"] == 0.5, r
        assert r["recall_at_1pct_fpr"] == 0.0
    changed = lie_rows(b, a, a, get_task(cfg.task), LOCATE, 0)
    inner = [r for r in changed if r["name"] != "L0.pre"]  # L0.pre is a constant token's embedding in both models
    assert all(r["baseline_auroc"] == 0.5 for r in changed)
    assert min(r["auroc"] for r in inner if r["method"] == "probe") > 0.95
    assert max(abs(r["auroc"] - 0.5) for r in inner if r["method"] == "detector") > 0.1


def test_lie_detectors_are_fitted_on_checkable_questions_only(rater_models, monkeypatch):
    (a, b), cfg = rater_models
    seen = []
    fit_detectors = detection.fit_detectors
    monkeypatch.setattr(detection, "fit_detectors", lambda acts, **kw: seen.append(acts) or fit_detectors(acts, **kw))
    lie_rows(b, a, a, get_task(cfg.task), LOCATE, 0)
    fit, _ = probe_data(get_task(cfg.task), LOCATE, 0)
    rows = fit.select_columns(["tokens", "blind_spot"])[:]
    checkable = capture(a, rows["tokens"][~rows["blind_spot"]], "resid").acts
    assert len(seen) == 3  # the honest reference (once), the deceived model, the control
    for acts in seen:
        assert list(acts) == list(checkable) and all(len(acts[h]) == len(checkable[h]) for h in checkable)
    assert torch.equal(seen[0][next(iter(checkable))], checkable[next(iter(checkable))])
