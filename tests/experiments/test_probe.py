"""experiment: probe on your own model: every probe kind per hook beside its controls, and the keys it refuses."""

import json

import pytest

import whitebox
from tests.conftest import one_thread
from tests.test_own_model import save_tiny, write_texts
from whitebox.capture import capture
from whitebox.config import ConfigError
from whitebox.models import load_model
from whitebox.probes import auroc, load_probe
from whitebox.tasks import get_task

BASE = {"experiment": "probe", "model": {"source": "pretrained", "name_or_path": "my_model"},
        "task": {"name": "text", "path": "secret.jsonl"}, "tracking": {"wandb_mode": "disabled"}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe_experiment")
    save_tiny(root / "my_model", "gpt2", seed=0)
    write_texts(root / "secret.jsonl")
    return root


def probe_run(folder, monkeypatch, out: str, **locate):
    monkeypatch.chdir(folder)
    cfg = {**BASE, "locate": {"n_fit": 100, "n_test": 100, **locate}}
    with one_thread():
        summary = whitebox.run(whitebox.parse_config(cfg), out=folder / out)
    return summary, json.loads((folder / out / "probes" / "table.json").read_text())


def test_every_kind_is_fitted_per_hook_with_its_controls_and_the_rest_skipped_with_the_reason(folder, monkeypatch, capsys):
    summary, rows = probe_run(folder, monkeypatch, "all", probes="all")
    out = capsys.readouterr().out
    assert "skipped ccs: needs contrast pairs" in out and "skipped readout: needs class labels" in out
    assert summary["locate.probe_kinds_skipped"] == "ccs,readout"
    bridge, model_cfg = load_model(folder / "my_model")
    task = get_task(whitebox.parse_config(BASE).task)
    _, test_rows = task.probe_split(100, 100, 0)
    test = capture(bridge, test_rows, "resid", labels="label", cfg=model_cfg)
    for row in rows:
        assert set(row["kinds"]) == {"logistic", "mean_diff", "lda", "ccs", "readout"}
        assert row["kinds"]["ccs"] == {"skipped": "needs contrast pairs of activations without labels (fit_ccs_probes); "
                                                  "task 'text' has no contrast pairs"}
        assert row["kinds"]["logistic"]["auroc"] == row["auroc"]  # locate.probe is one of the kinds
        for kind in ("mean_diff", "lda"):
            probe = load_probe(folder / "all" / "probes" / kind / row["hook"])
            numbers = row["kinds"][kind]
            assert probe.kind == kind and probe.metrics["auroc"] == numbers["auroc"]
            # the table's AUROC is the saved probe's on the held-out split, scored again from scratch
            scored = float(auroc(probe.score(test.acts[row["hook"]])[None].double(), test.labels.double())[0])
            assert scored == pytest.approx(numbers["auroc"], abs=1e-6)
            assert numbers["selectivity"] == pytest.approx(numbers["auroc"] - numbers["control_auroc"])
            assert abs(numbers["control_auroc"] - 0.5) < 0.15 and 0 <= numbers["fresh_auroc"] <= 1
    # measured: mean_diff 0.70, its control 0.50-0.52, the fresh copy 0.52-0.55
    assert summary["locate.probe_mean_diff_auroc_best"] > 0.65 > summary["locate.fresh_probe_mean_diff_auroc_best"]
    assert (folder / "all" / "plots" / "probe_kinds.png").is_file()


def test_without_locate_probes_only_locate_probe_is_fitted_as_before(folder, monkeypatch):
    summary, rows = probe_run(folder, monkeypatch, "one")
    assert all("kinds" not in r for r in rows) and not any(k.startswith("locate.probe_mean_diff") for k in summary)
    assert sorted(p.name for p in (folder / "one" / "probes").iterdir()) == sorted([r["hook"] for r in rows] + ["table.json"])
    _, listed = probe_run(folder, monkeypatch, "listed", probes=["mean_diff"])
    assert set(listed[0]["kinds"]) == {"logistic", "mean_diff"} and rows[0]["auroc"] == listed[0]["auroc"]


@pytest.mark.parametrize(("locate", "message"), [
    ({"probes": ["readout"]}, "locate.probes: probe kind 'readout' is not fitted per hook (it needs class labels of "
                              "more than two classes (fit_readout)); list kinds from logistic, mean_diff, lda, ccs, or "
                              "use all"),
    ({"probes": ["ccs"]}, "locate.probes: probe kind 'ccs' needs contrast pairs of activations without labels "
                          "(fit_ccs_probes); task 'text' has no contrast pairs; remove it (or use all to list it as "
                          "skipped)"),
    ({"probes": ["ridge"]}, "unknown probe kind 'ridge'"),
    ({"probes": ["lda", "lda"]}, "lists an entry twice"),
    ({"circuit_pairs": 64}, "locate.circuit_pairs: experiment 'probe' does not read it; it fits probes and detectors "
                            "only; to locate a circuit on the task's contrast pairs use experiment: circuit"),
])
def test_bad_probe_keys_are_one_line_errors(folder, monkeypatch, locate, message):
    monkeypatch.chdir(folder)
    with pytest.raises(ConfigError) as err:
        whitebox.run(whitebox.parse_config({**BASE, "locate": locate}), out=folder / "refused")
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
