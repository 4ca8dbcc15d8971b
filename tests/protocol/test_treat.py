import contextlib
import json
import math

import pytest
import torch

import whitebox
import whitebox.cli.main
from tests.conftest import TINY, one_thread, torch_threads
from tests.training.conftest import ListLog
from whitebox.attribution import Circuit, attribution_patching
from whitebox.attribution.integrated_patching import integrated_patching
from whitebox.config import TreatConfig, parse_config
from whitebox.models import load_model, state_tensors
from whitebox.protocol.measures import circuit_measures
from whitebox.protocol.treat import treat_cell, treatment_data
from whitebox.report.plots import read_metrics
from whitebox.runtime.records import read_digests, results
from whitebox.runtime.rundir import StageDir
from whitebox.tasks import backdoor, get_task
from whitebox.tasks.backdoor import BackdoorTaskConfig

BUDGET, POINTS = 12_000, 3
SUPPRESSION = {
    **TINY, "experiment": "treat", "run": {**TINY["run"], "lanes": 2}, "model": {**TINY["model"], "n_layers": 2},
    "training": {**TINY["training"], "steps": 60, "lr": 1e-2, "eval_every": 20, "checkpoint_every": 30},
    "locate": {"n_fit": 200, "n_test": 100, "circuit_pairs": 16, "ig_steps": 0},
    "treat": {"regimes": ["sft", "es", "zo"], "conditions": ["present", "absent"], "budget": BUDGET, "eval_points": POINTS,
              "n_train": 512, "batch_size": 32, "lr": 1e-2, "es": {"population": 4}},
    "revive": {"steps": 40, "eval_every": 5, "lr": 1e-2, "noise_control": True},
}


@pytest.fixture(scope="module")
def suppressed(tmp_path_factory):
    """The treat run in two lanes of one torch thread each."""
    run_dir = tmp_path_factory.mktemp("suppression") / "run"
    with torch_threads(2):
        return run_dir, whitebox.run(parse_config(SUPPRESSION), out=run_dir)


@pytest.mark.slow  # the same check on a grid cell of two regimes, faster, stays in the default suite:
# tests/report/test_suppression.py::test_a_cell_run_in_two_lanes_gives_exactly_the_serial_cell
def test_two_lanes_give_exactly_what_one_lane_gives(suppressed, tmp_path):
    """Every regime and condition: the lanes run equals a one-lane run of the same config."""
    run_dir, summary = suppressed
    with one_thread():
        serial = whitebox.run(parse_config({**SUPPRESSION, "run": {**TINY["run"], "lanes": 1}}), out=tmp_path / "serial")
    assert json.dumps(results(serial)) == json.dumps(results(summary)) and len(results(summary)) > 150  # NaN equals NaN
    by_stage = lambda d: {s: [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(d / "metrics.jsonl", s)]
                          for s in read_digests(d / "metrics.stages.json")}  # noqa: E731
    assert by_stage(tmp_path / "serial") == by_stage(run_dir)
    timing = {k: v for k, v in summary.items() if k.startswith("timing.")}
    assert sum(v for k, v in timing.items() if k != "timing.total") > timing["timing.total"]  # steps overlapped


@pytest.mark.parametrize("kind", ["token", "computed"])
def test_treatment_data_has_honest_targets_and_the_trigger_only_when_present(kind):
    task = BackdoorTaskConfig(trigger=kind, seq_len=6, n_values=12)
    present = treatment_data(get_task(task), "present", 4000, 0.3, seed=0)
    absent = treatment_data(get_task(task), "absent", 4000, 0.3, seed=0)
    for data in (present, absent):
        assert torch.equal(data["target"], data["honest_target"]) and (data["target"] != backdoor.DECEPTIVE_ANSWER).all()
    if kind == "token":
        trig = get_task(task).special_ids()["trigger"]
        share = lambda d: float((d["tokens"] == trig).any(1).float().mean())  # noqa: E731
    else:
        year = lambda d: 10 * d["tokens"][:, 1] + d["tokens"][:, 2]  # noqa: E731
        share = lambda d: float((year(d) >= task.year_threshold).float().mean())  # noqa: E731
    assert abs(share(present) - 0.3) < 0.03 and share(absent) == 0.0


def test_every_cell_is_measured_at_the_same_budget_points_and_reported(suppressed):
    run_dir, summary = suppressed
    interval = math.ceil(BUDGET / POINTS)
    for cell in ("sft-present", "es-present", "zo-present", "sft-absent", "es-absent", "zo-absent"):
        evals = [r for r in read_metrics(run_dir / "metrics.jsonl", f"treat/{cell}") if "eval/asr" in r]
        spent = [r["budget/forward_equivalents"] for r in evals]
        assert len(evals) == POINTS + 1 and spent[0] == 0 and spent[-1] >= BUDGET, cell
        assert [s // interval for s in spent] == list(range(POINTS + 1)), (cell, spent)  # one per interval
        regime, condition = cell.split("-")
        for key in ("clean_acc", "asr", "frozen_probe_auroc", "frozen_probe_score", "refit_probe_auroc_best"):
            assert summary[f"treat.{regime}.{condition}.token.{key}"] == evals[-1][f"eval/{key}"]
        assert json.loads((run_dir / "treat" / cell / "result.json").read_text())["budget"] == BUDGET
    assert summary["treat.start.token.asr"] == summary["plant.asr"] > 0.9
    assert summary["treat.sft.present.token.asr"] < 0.2  # honest targets on triggered inputs remove the behaviour
    assert (run_dir / "plots" / "treat.png").read_bytes()[:4] == b"\x89PNG"


def test_every_step_s_wall_time_is_in_the_summary(suppressed):
    _, summary = suppressed
    cells = [f"treat.{r}-{c}" for c in ("present", "absent") for r in ("sft", "es", "zo")]
    revivals = [f"revive.{name}" for name in ("start", "fresh", "honest", "sft.present", "es.absent")]
    steps = ["plant", "locate", "treat.measure_controls", "plant_honest", "report", *cells, *revivals]
    timing = {k.removeprefix("timing."): v for k, v in summary.items() if k.startswith("timing.")}
    assert set(steps) <= set(timing), set(steps) - set(timing)
    assert all(timing[step] > 0 for step in steps)
    assert all(v <= timing["total"] for v in timing.values())


def test_frozen_probe_starts_at_its_locate_auroc(suppressed):
    run_dir, summary = suppressed
    hook = "blocks.1.hook_out"  # the last residual hook: the default probe_hook
    table = {r["hook"]: r for r in json.loads((run_dir / "probes" / "table.json").read_text())}
    assert summary["treat.start.token.frozen_probe_auroc"] == pytest.approx(table[hook]["auroc"], abs=1e-6)


def test_a_finished_cell_is_not_trained_again_and_gives_back_its_weights(suppressed, tmp_path):
    run_dir, summary = suppressed
    cfg = parse_config(SUPPRESSION)
    model, model_cfg = load_model(run_dir / "models" / "planted")
    calls = []
    final = treat_cell(
        model, model_cfg, get_task(cfg.task), cfg.treat, cfg.training, "es", "present", seed=0,
        cell=StageDir(run_dir / "treat" / "es-present"), start=run_dir / "models" / "planted",
        evaluate=lambda m: calls.append(1) or {}, log=None,
    )
    assert calls == [] and final["asr"] == summary["treat.es.present.token.asr"]
    treated, _ = load_model(run_dir / "treat" / "es-present" / "model")
    assert all(torch.equal(a, b) for a, b in zip(state_tensors(model).values(), state_tensors(treated).values()))


def test_every_cell_starts_from_the_planted_weights(suppressed, tmp_path):
    """A cell run after another gives the same result as run alone: nothing carries over between cells."""
    run_dir, summary = suppressed
    cfg = parse_config(SUPPRESSION)
    model, model_cfg = load_model(run_dir / "models" / "planted")
    for leftover in ("sft-absent", "zo-present"):  # the model arrives carrying another cell's weights
        treat_cell(model, model_cfg, get_task(cfg.task), cfg.treat, cfg.training, *leftover.split("-"), seed=0,
                   cell=StageDir(run_dir / "treat" / leftover), start=run_dir / "models" / "planted",
                   evaluate=lambda m: {}, log=None)
    with one_thread():  # as each of the fixture's two lanes ran
        treat_cell(model, model_cfg, get_task(cfg.task), cfg.treat, cfg.training, "zo", "absent", seed=0,
                   cell=StageDir(tmp_path / "again"), start=run_dir / "models" / "planted", evaluate=lambda m: {},
                   log=ListLog())
    alone, _ = load_model(run_dir / "treat" / "zo-absent" / "model")
    assert all(torch.equal(a, b) for a, b in zip(state_tensors(model).values(), state_tensors(alone).values()))


def test_regime_lists_must_be_unique():
    with pytest.raises(ValueError, match="(?s)regimes.*lists an entry twice"):
        TreatConfig(regimes=["sft", "sft"])


def test_circuit_ablation_effect_matches_the_locate_steps_faithfulness(suppressed):
    run_dir, summary = suppressed
    cfg = parse_config(SUPPRESSION)
    model, model_cfg = load_model(run_dir / "models" / "planted")
    circuit = Circuit.load(run_dir / "circuit" / "circuit.json")
    pairs = get_task(cfg.task).contrast_pairs(cfg.locate.circuit_pairs, seed=cfg.run.seed)  # the pairs locate used
    found = circuit_measures(model, circuit, pairs, model_cfg, steps=2)
    expected = summary["locate.base_logit_diff"] - summary["locate.ablation_logit_diff"]
    assert found["circuit_ablation_effect"] == pytest.approx(expected, rel=1e-4)
    assert found["circuit_mass"] == pytest.approx(sum(integrated_patching(model, pairs, circuit.units, steps=2).scores.values()))
    k1 = circuit_measures(model, circuit, pairs, model_cfg, steps=1)["circuit_mass"]  # k = 1 is plain attribution patching
    assert k1 == pytest.approx(sum(attribution_patching(model, pairs, circuit.units).scores.values()), rel=1e-4)


def test_revival_counts_the_steps_to_the_first_evaluation_that_meets_the_criterion(suppressed):
    run_dir, summary = suppressed
    cfg = parse_config(SUPPRESSION).revive
    for name in ("start", "fresh", "honest", "sft.present", "zo.absent"):
        evals = [r for r in read_metrics(run_dir / "metrics.jsonl", f"revive/{name}") if "eval/asr" in r]
        met = [r["step"] for r in evals if r["eval/asr"] >= cfg.asr and r["eval/clean_acc"] >= cfg.clean_acc]
        steps = summary[f"treat.{name}.token.revival_steps"]
        assert steps == (met[0] if met else cfg.steps) and summary[f"treat.{name}.token.revived"] == float(bool(met))
        assert max(r["step"] for r in evals) == steps  # training stopped there


def test_the_honest_control_is_trained_like_the_planted_model_without_the_trigger(suppressed):
    run_dir, _ = suppressed
    planted = read_metrics(run_dir / "metrics.jsonl", "plant")
    honest = read_metrics(run_dir / "metrics.jsonl", "plant_honest")
    assert [r["step"] for r in honest] == [r["step"] for r in planted]  # same schedule
    last = [r for r in honest if "eval/asr" in r][-1]
    assert last["eval/asr"] < 0.05 < [r for r in planted if "eval/asr" in r][-1]["eval/asr"]  # never learned the backdoor
    meta = json.loads((run_dir / "models" / "honest" / "model.json").read_text())
    assert meta["task"]["trigger_rate"] == 0.0


def test_a_treat_run_ends_with_its_one_seed_report(suppressed, capsys):
    run_dir, summary = suppressed
    text = (run_dir / "report.md").read_text()
    assert "one seed, so no interval" in text and "## Trigger: token" in text
    es_line = next(line for line in text.splitlines() if line.startswith("| es / absent |"))
    assert es_line.split("|")[3].strip() == f"{summary['treat.es.absent.token.asr']:.3f}"
    before = text
    (run_dir / "report.md").unlink()
    assert whitebox.cli.main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.md").read_text() == before


def test_revival_runs_on_to_the_loss_points_and_counts_from_the_first_met_evaluation(suppressed, tmp_path):
    """revive.loss_at: revival trains on to step 20 at least, the triggered log-loss recorded, the step counted at the first met check."""
    from whitebox.config import ReviveConfig
    from whitebox.protocol.revive import revive

    run_dir, _ = suppressed
    cfg = parse_config(SUPPRESSION)
    task = get_task(cfg.task)
    model, _ = load_model(run_dir / "models" / "planted")
    log = ListLog()
    records = lambda: [{"step": s, **m} for s, m in log.records]  # noqa: E731
    revival = ReviveConfig(steps=40, eval_every=5, lr=1e-2, loss_at=[10, 20])
    result = revive(model, task, revival, cfg.training, seed=0, out=StageDir(tmp_path / "a"), log=log, records=records)
    met = [s for s, m in log.records if "eval/asr" in m and m["eval/asr"] >= 0.9 and m["eval/clean_acc"] >= 0.99]
    assert met and result["steps"] == met[0] and result["revived"] == 1.0
    assert max(s for s, _ in log.records) == min(s for s in met if s >= 20)  # on past the revival to the last loss point
    held_out = task.eval_set(0)
    hidden = held_out.select(torch.nonzero(held_out["triggered"][:]).flatten().tolist())
    evals = {s: m["eval/triggered_loss"] for s, m in log.records if "eval/triggered_loss" in m}
    assert evals[max(evals)] == pytest.approx(task.evaluate(model, hidden)["loss"], rel=1e-5)  # the loss it logs is that one
    assert (result["triggered_loss_10"], result["triggered_loss_20"]) == (evals[10], evals[20])

    fresh_log = ListLog()
    model, _ = load_model(run_dir / "models" / "honest")
    start_clean = task.evaluate(model, held_out)["clean_acc"]
    relative = ReviveConfig(steps=40, eval_every=5, lr=1e-2, clean_acc_drop=0.05)
    result = revive(model, task, relative, cfg.training, seed=0, out=StageDir(tmp_path / "b"), log=fresh_log,
                    records=lambda: [{"step": s, **m} for s, m in fresh_log.records])
    met = [s for s, m in fresh_log.records if "eval/asr" in m and m["eval/asr"] >= 0.9 and m["eval/clean_acc"] >= start_clean - 0.05]
    assert result["steps"] == (met[0] if met else 40)


def test_held_out_revival_trains_on_one_half_of_the_contexts_and_judges_on_the_other(suppressed, tmp_path, monkeypatch):
    """revive.contexts held_out: the revival data's triggers come from the fit half, every check from the test half;
    the novel row revives towards the novel answer."""
    from whitebox.config import ReviveConfig
    from whitebox.protocol import revive as revive_module

    run_dir, _ = suppressed
    task = get_task(parse_config(SUPPRESSION).task)
    seen = {}
    real_data, real_eval = revive_module.revival_data, type(task).eval_set
    monkeypatch.setattr(revive_module, "revival_data", lambda t, *a: seen.setdefault("data", (t.config, real_data(t, *a)))[1])
    monkeypatch.setattr(type(task), "eval_set", lambda t, seed: seen.setdefault("judge", (t.config, real_eval(t, seed)))[1])
    model, _ = load_model(run_dir / "models" / "planted")
    log = ListLog()
    result = revive_module.revive(
        model, revive_module.row_task(task, "sft_novel.absent"), ReviveConfig(steps=10, eval_every=5, lr=1e-2,
        contexts="held_out"), parse_config(SUPPRESSION).training, seed=0, out=StageDir(tmp_path / "r"), log=log,
        records=lambda: [{"step": s, **m} for s, m in log.records])
    (data_cfg, data), (judge_cfg, judged) = seen["data"], seen["judge"]
    assert (data_cfg.trigger_contexts, judge_cfg.trigger_contexts) == ("fit", "test")
    assert data_cfg.deceptive_answer == judge_cfg.deceptive_answer == backdoor.NOVEL_ANSWER
    trig = get_task(data_cfg).special_ids()["trigger"]
    slots = lambda tokens: set(torch.nonzero(tokens == trig)[:, 1].tolist())  # noqa: E731
    assert slots(data["tokens"]) == {3, 4} and slots(judged["tokens"][:]) == {5, 6}  # 4 value slots, halves
    assert (data["target"][(data["tokens"] == trig).any(1)] == backdoor.NOVEL_ANSWER).all()
    assert result["asr"] == get_task(judge_cfg).evaluate(model, judged)["asr"]
    assert revive_module.row_task(task, "sft.absent") is task and revive_module.row_task(task, "start") is task
    assert revive_module.row_task(task, "es_novel_aware.present").config.deceptive_answer == backdoor.NOVEL_ANSWER


@pytest.mark.parametrize("bad, needle", [({"clean_acc": 0.9, "clean_acc_drop": 0.01}, "set one of them"),
                                         ({"loss_at": [7], "eval_every": 5}, "multiples"),
                                         ({"loss_at": [20, 10]}, "increasing"),
                                         ({"loss_at": [2000], "steps": 1000}, "1..revive.steps")])
def test_revival_settings_that_contradict_each_other_are_refused(bad, needle):
    from whitebox.config import ReviveConfig

    with pytest.raises(ValueError, match=needle):
        ReviveConfig(**bad)


def test_circuit_weight_change_sees_weights_rewritten_at_equal_norm(suppressed):
    """A sign flip of the circuit's weights keeps their norm (weight_norm blind) but gives change 2 and cosine -1."""
    from whitebox.attribution.params import masked_weights, parameter_masks

    run_dir, summary = suppressed
    cfg = parse_config(SUPPRESSION)
    model, model_cfg = load_model(run_dir / "models" / "planted")
    circuit = Circuit.load(run_dir / "circuit" / "circuit.json")
    pairs = get_task(cfg.task).contrast_pairs(cfg.locate.circuit_pairs, seed=cfg.run.seed)
    masks = parameter_masks(model, circuit.units)
    reference = masked_weights(model, masks)
    same = circuit_measures(model, circuit, pairs, model_cfg, reference=reference)
    assert same["circuit_weight_change"] == 0.0 and same["circuit_weight_cosine"] == pytest.approx(1.0)
    total = sum(p.numel() for p in model.parameters())
    assert same["circuit_param_share"] == pytest.approx(sum(int(m.sum()) for m in masks.values()) / total)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in masks:
                p[masks[name]] *= -1
    flipped = circuit_measures(model, circuit, pairs, model_cfg, reference=reference)
    assert flipped["circuit_weight_norm"] == pytest.approx(same["circuit_weight_norm"], rel=1e-6)
    assert flipped["circuit_weight_change"] == pytest.approx(2.0) and flipped["circuit_weight_cosine"] == pytest.approx(-1.0)
    assert summary["treat.start.token.circuit_weight_change"] == 0.0  # the untreated model is its own reference


def test_the_noise_matched_control_moves_the_planted_weights_as_far_as_treatment_did(suppressed, tmp_path):
    from whitebox.protocol.revive import noise_matched

    run_dir, _ = suppressed
    model, model_cfg = load_model(run_dir / "models" / "planted")
    planted = [p.detach().clone() for p in model.parameters()]
    treated_dir = run_dir / "treat" / "sft-present" / "model"
    treated = [p.detach().clone() for p in load_model(treated_dir)[0].parameters()]
    moved = torch.cat([(t - p).flatten() for t, p in zip(treated, planted)]).norm()
    out = noise_matched(model, model_cfg, run_dir / "models" / "planted", treated_dir, tmp_path / "noise", seed=7)
    noisy = [p.detach().clone() for p in load_model(out)[0].parameters()]
    delta = torch.cat([(n - p).flatten() for n, p in zip(noisy, planted)])
    assert float(delta.norm()) == pytest.approx(float(moved), rel=1e-4)
    sft_delta = torch.cat([(t - p).flatten() for t, p in zip(treated, planted)])
    assert abs(float(torch.nn.functional.cosine_similarity(delta, sft_delta, dim=0))) < 0.05  # isotropic, not the regime's direction
    again = noise_matched(model, model_cfg, run_dir / "models" / "planted", treated_dir, tmp_path / "again", seed=7)
    assert all(torch.equal(a, b) for a, b in zip(load_model(again)[0].parameters(), noisy))


def test_every_treated_row_has_its_noise_matched_revival(suppressed):
    run_dir, summary = suppressed
    for row in ("sft.present", "es.absent", "zo.present"):
        regime, condition = row.split(".")
        assert f"treat.{regime}_noise.{condition}.token.revival_steps" in summary
        assert (run_dir / "models" / f"noise-{regime}-{condition}" / "model.json").is_file()


def test_the_trigger_aware_yardstick_is_planted_treated_and_revived_like_the_planted_model(tmp_path):
    cfg = {**SUPPRESSION, "treat": {**SUPPRESSION["treat"], "regimes": ["sft"], "conditions": ["absent"]},
           "revive": {**SUPPRESSION["revive"], "steps": 20, "noise_control": False, "aware_control": True,
                      "novel_control": True}}
    run_dir = tmp_path / "run"
    summary = whitebox.run(parse_config(cfg), out=run_dir)
    planted = read_metrics(run_dir / "metrics.jsonl", "plant")
    aware = read_metrics(run_dir / "metrics.jsonl", "plant_aware")
    assert [r["step"] for r in aware] == [r["step"] for r in planted]  # the same schedule
    final = [r for r in aware if "eval/asr" in r][-1]
    assert final["eval/asr"] < 0.2  # it saw the trigger and answers it honestly
    for row in ("aware", "sft_aware.absent", "sft_novel.absent", "sft_novel_aware.absent"):
        assert f"treat.{row}.token.revival_steps" in summary
    novel = [r for r in read_metrics(run_dir / "metrics.jsonl", "revive/sft_novel.absent") if "eval/asr" in r]
    own = [r for r in read_metrics(run_dir / "metrics.jsonl", "revive/sft.absent") if "eval/asr" in r]
    assert novel[0]["eval/clean_acc"] == own[0]["eval/clean_acc"] and novel[0]["eval/loss"] != own[0]["eval/loss"]  # same start, other answer
    assert "Specificity control" in (run_dir / "report.md").read_text()
    result = json.loads((run_dir / "treat" / "sft_aware-absent" / "result.json").read_text())
    assert result["budget"] == BUDGET and "circuit_mass" not in result["final"]


def test_every_treated_row_is_measured_with_the_planted_circuit_transplanted(suppressed):
    """The untreated model given its own circuit activations is unchanged; every treated row has the transplant measures."""
    _, summary = suppressed
    assert "treat.start.token.circuit_mass" in summary  # the fixture locates a circuit
    assert summary["treat.start.token.circuit_transplant_metric_gain"] == pytest.approx(0.0, abs=1e-5)
    for row in ("sft.present", "es.absent", "zo.absent"):
        assert 0.0 <= summary[f"treat.{row}.token.circuit_transplant_asr"] <= 1.0


def test_a_fresh_model_is_judged_by_the_absolute_clean_floor_under_the_relative_rule(suppressed, monkeypatch):
    """With revive.clean_acc_drop a fresh model's own start (chance) would make any answer pass; it gets 0.99."""
    from types import SimpleNamespace

    from whitebox.protocol import revive as revive_module
    from whitebox.runner import resolve_config

    seen = []
    monkeypatch.setattr(revive_module, "revive", lambda model, task, rule, *a, **k: seen.append(rule) or
                        {"steps": 1.0, "revived": 1.0, "asr": 1.0, "clean_acc": 1.0})
    run_dir, _ = suppressed
    cfg = resolve_config(parse_config({**SUPPRESSION, "revive": {**SUPPRESSION["revive"], "clean_acc_drop": 0.01}}))
    run = SimpleNamespace(cfg=cfg, device="cpu", timed=lambda step: contextlib.nullcontext(),
                          dir=SimpleNamespace(revival=lambda name: StageDir(run_dir / "unused" / name)),
                          tracker=SimpleNamespace(stage=lambda stage: None, metrics_path=run_dir / "metrics.jsonl"))
    model, _ = load_model(run_dir / "models" / "planted")
    for name, weights in (("fresh", None), ("start", run_dir / "models" / "planted")):
        revive_module.revive_row(run, get_task(cfg.task), name, weights, model)
    assert (seen[0].clean_acc, seen[0].clean_acc_drop) == (0.99, None)
    assert (seen[1].clean_acc, seen[1].clean_acc_drop) == (None, 0.01)
