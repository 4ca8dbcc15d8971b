"""experiment: circuit on your own contrast pairs: a saved GPT-2 and a JSONL of text pairs of unequal lengths."""

import json

import pytest
import torch

import whitebox
from tests.attribution.conftest import plant_secret_word, secret_texts
from tests.conftest import one_thread
from whitebox.attribution import Circuit
from whitebox.attribution.padding import attending
from whitebox.config import ConfigError
from whitebox.models import load_model
from whitebox.probes import load_probe
from whitebox.tasks import get_task
from whitebox.tasks.pairs import tokenized_pairs

TASK = {"name": "text_pairs", "path": "pairs.jsonl", "a": ["cat"], "b": ["dog"]}
BASE = {"experiment": "circuit", "model": {"source": "pretrained", "name_or_path": "my_model"}, "task": TASK,
        "tracking": {"wandb_mode": "disabled"}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("circuit_experiment")
    with one_thread():
        plant_secret_word(root / "my_model")
    triggered, untriggered = secret_texts(64, seed=7)
    with open(root / "pairs.jsonl", "w") as f:
        for t, u in zip(triggered, untriggered, strict=True):
            f.write(json.dumps({"triggered": t, "untriggered": u}) + "\n")
    return root


def run(folder, monkeypatch, out: str, cfg: dict):
    monkeypatch.chdir(folder)
    with one_thread():
        return whitebox.run(whitebox.parse_config(cfg), out=folder / out)


def test_a_circuit_is_located_and_checked_on_text_pairs_through_the_config(folder, monkeypatch):
    summary = run(folder, monkeypatch, "circuit", {**BASE, "locate": {"circuit_pairs": 64, "ig_steps": 0}})
    # measured: logit difference 8.32 on the pairs; the circuit (both L0 heads and the L0 MLP at the answer) removes 1.01 of it
    assert summary["locate.circuit_found"] == 1 and summary["locate.base_logit_diff"] > 5
    assert summary["locate.base_asr"] == 1 and summary["locate.base_clean_acc"] == 1
    assert summary["locate.ablation_asr"] <= 0.1 and summary["locate.complement_ablation_asr"] >= 0.9
    assert summary["locate.ablation_logit_diff_removed"] > 0.9 and summary["locate.patching_spearman"] > 0.8
    circuit = Circuit.load(folder / "circuit" / "circuit" / "circuit.json")
    assert circuit.task["name"] == "text_pairs" and len(circuit.components) == summary["locate.circuit_size"]
    assert (folder / "circuit" / "plots" / "circuit_scores.png").is_file()
    # the saved circuit ablates by itself as the run did: its default reference is the untriggered side of the pairs
    model, _ = load_model(folder / "my_model")
    monkeypatch.chdir(folder)
    pairs = tokenized_pairs(get_task(TASK), 64, 0, model)
    with circuit.ablate(model, "mean"), torch.no_grad(), attending(model, pairs.triggered_mask):
        ablated = float(pairs.mean_metric(model(pairs.triggered)))
    assert ablated == pytest.approx(summary["locate.ablation_logit_diff"], abs=1e-4)


def test_the_same_pairs_are_a_probe_task_and_feed_ccs(folder, monkeypatch):
    cfg = {**BASE, "experiment": "probe", "locate": {"n_fit": 64, "n_test": 64, "probes": "all"}}
    summary = run(folder, monkeypatch, "probes", cfg)
    # the planted model reads `secret` at the last position: measured AUROC 1.0, its shuffled-label control ~0.5
    assert summary["locate.probe_auroc_best"] > 0.95 and summary["locate.probe_selectivity_best_hook"] > 0.3
    # CCS on the pairs, never shown a label: measured 1.0 (its random-direction control too: the pairs differ along
    # the trigger), 0.54-0.70 on the untrained copy
    assert summary["locate.probe_ccs_auroc_best"] > 0.95 > 0.8 > summary["locate.fresh_probe_ccs_auroc_best"]
    assert summary["locate.probe_kinds_skipped"] == "readout"
    probe = load_probe(folder / "probes" / "probes" / "ccs" / summary["locate.probe_ccs_hook_best"])
    assert probe.kind == "ccs" and probe.metrics["auroc"] == summary["locate.probe_ccs_auroc_best"]
    assert probe.hf_location is not None and probe.prompt_format == {"chat_template": False, "template_sha256": None}
    assert probe.training_data["n"] == 32  # 32 pairs fit, 32 held out


@pytest.mark.parametrize(("cfg", "message"), [
    ({**BASE, "task": {"name": "text", "path": "pairs.jsonl"}}, "task 'text' has no contrast pairs; experiment 'circuit' "
     "needs it (for your own texts use task: {name: text_pairs"),
    ({**BASE, "locate": {"n_fit": 100}}, "locate.n_fit: experiment 'circuit' does not read it; it locates a circuit "
     "only; to fit probes use experiment: probe"),
    ({k: v for k, v in BASE.items() if k != "model"}, "experiment 'circuit' needs a trained model"),
    ({**BASE, "task": {**TASK, "b": ["cat"]}}, "a and b both list ['cat']"),
    ({**BASE, "task": {**TASK, "untriggered_column": "without"}}, "has no column 'without'"),
])
def test_bad_circuit_configs_are_one_line_errors(folder, monkeypatch, cfg, message):
    monkeypatch.chdir(folder)
    with pytest.raises(ConfigError) as err:
        whitebox.run(whitebox.parse_config(cfg), out=folder / "refused")
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_text_pairs_read_in_a_chat_template_when_asked(folder, monkeypatch):
    from tests.test_inputs import TEMPLATE

    monkeypatch.chdir(folder)
    model, _ = load_model(folder / "my_model")
    chat = get_task({**TASK, "chat_template": True})
    with pytest.raises(ConfigError, match=r"^task.chat_template: chat_template=True but this model's tokenizer has no "
                       r"chat template.* \(data: .*pairs.jsonl\)$"):
        tokenized_pairs(chat, 8, 0, model)
    model.tokenizer.chat_template = TEMPLATE
    pairs, texts = tokenized_pairs(chat, 8, 0, model), chat.contrast_pairs(8, 0)
    prompt = model.tokenizer.apply_chat_template([{"role": "user", "content": texts.triggered[0]}], tokenize=False,
                                                 add_generation_prompt=True)
    expected = model.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert pairs.triggered[0][pairs.triggered_mask[0].bool()].tolist() == expected
    assert len(expected) > len(model.tokenizer(texts.triggered[0])["input_ids"])  # the template's words are there
