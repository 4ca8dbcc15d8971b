"""Your own model and data: tiny GPT-2, Llama and GPT-NeoX checkpoints saved with save_pretrained, a JSONL of texts.

No hub: every model is built here and saved to a temporary folder.
"""

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

import whitebox
from tests.conftest import one_thread
from whitebox.capture import capture
from whitebox.config import ConfigError, ModelConfig
from whitebox.fingerprint import model_identity
from whitebox.models import load_model, load_pretrained
from whitebox.probes import ProbeError, fit_probes, load_probe

README = Path(__file__).resolve().parents[1] / "README.md"
WORDS = ["<pad>", "<bos>", "the", "secret", "is", "a", "cat", "dog", "word", "yes", "no", "?"]
ARCHS = {
    "gpt2": lambda v: GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=v, n_positions=32)),
    "llama": lambda v: LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                                                    num_key_value_heads=2, intermediate_size=64, vocab_size=v,
                                                    max_position_embeddings=32)),
    "neox": lambda v: GPTNeoXForCausalLM(GPTNeoXConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                                                       intermediate_size=64, vocab_size=v, max_position_embeddings=32)),
}


def save_tiny(folder: Path, arch: str, seed: int) -> Path:
    """A randomly initialised tiny causal LM and a word-level tokenizer, saved the Hugging Face way."""
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<bos>", pad_token="<pad>",
                                        unk_token="<pad>")
    torch.manual_seed(seed)
    ARCHS[arch](len(WORDS)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_texts(path: Path, n: int = 400) -> Path:
    """Sentences of 3-8 words; label 1 where one of them is `secret`."""
    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(n):
            words = [rng.choice(WORDS[2:3] + WORDS[4:]) for _ in range(rng.randint(3, 8))]
            if i % 2:
                words.insert(rng.randint(0, len(words)), "secret")
            f.write(json.dumps({"text": " ".join(words), "label": i % 2}) + "\n")
    return path


ARCH_OF: dict[Path, str] = {}  # workdir -> the architecture its my_model has


@pytest.fixture(params=list(ARCHS))
def workdir(request, tmp_path, monkeypatch):
    save_tiny(tmp_path / "my_model", request.param, seed=0)
    write_texts(tmp_path / "secret.jsonl")
    monkeypatch.chdir(tmp_path)
    ARCH_OF[tmp_path] = request.param
    return tmp_path


def test_the_readme_section_runs_verbatim_on_a_saved_model(workdir, capsys):
    code = re.search(r"<!-- own-model-example:start -->\n```python\n(.*?)```", README.read_text(), flags=re.S).group(1)
    with one_thread():
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_own_model"})
    summary = json.loads((workdir / "runs" / "my_model_probes" / "summary.json").read_text())
    # an untrained model mixes the `secret` token's embedding into the last position: readable, well above its control
    assert summary["locate.probe_auroc_best"] > 0.75 and summary["locate.probe_selectivity_best_hook"] > 0.2
    scores = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"tensor\(\[-?\d+\.\d+\]\)", scores)


def test_a_plain_hf_model_and_its_bridge_score_alike_and_hidden_states_follow_the_mapping(workdir):
    bridge, model_cfg = load_model(workdir / "my_model")
    rows = [json.loads(line) for line in (workdir / "secret.jsonl").read_text().splitlines()][:200]
    probes = fit_probes(capture(bridge, [r["text"] for r in rows], "resid", labels=[r["label"] for r in rows],
                                cfg=model_cfg), seed=0)
    hf_model = AutoModelForCausalLM.from_pretrained(workdir / "my_model").eval()
    tokens = bridge.tokenizer(["the secret is a cat", "a dog"], return_tensors="pt", padding=True)["input_ids"][:1]
    for hook, probe in probes.items():
        probe.save(workdir / "probes" / hook)
        loaded = load_probe(workdir / "probes" / hook)
        with torch.no_grad(), loaded.attach(bridge) as on_bridge:
            bridge(tokens)
        with torch.no_grad(), loaded.attach(hf_model) as on_hf:
            out = hf_model(tokens, output_hidden_states=True)
        assert torch.allclose(on_bridge.last, on_hf.last, atol=1e-5), hook
        index = loaded.hf_location["hidden_states_index"]
        if index is not None:
            assert torch.allclose(loaded.score(out.hidden_states[index][:, -1]), on_bridge.last, atol=1e-5)
    last = f"blocks.{bridge.cfg.n_layers - 1}.hook_out"
    assert probes[last].hf_location["hidden_states_index"] is None  # HF's last hidden state is after the final norm


def test_a_fresh_process_that_imports_only_the_loader_scores_what_the_live_hook_scores(workdir):
    bridge, model_cfg = load_model(workdir / "my_model")
    rows = [json.loads(line) for line in (workdir / "secret.jsonl").read_text().splitlines()][:100]
    captured = capture(bridge, [r["text"] for r in rows], ["blocks.0.hook_out"], labels=[r["label"] for r in rows])
    probe = fit_probes(captured, seed=0)["blocks.0.hook_out"]
    probe.save(workdir / "probe")
    torch.save(captured.acts["blocks.0.hook_out"][:5].clone(), workdir / "acts.pt")
    script = ("import sys, torch; from whitebox.probes.probe import load_probe; "
              "p = load_probe('probe'); print(p.score(torch.load('acts.pt')).tolist()); "
              "print(sorted(m for m in ('transformer_lens', 'wandb', 'captum', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=workdir)
    scores, heavy = out.stdout.strip().splitlines()
    assert torch.allclose(torch.tensor(json.loads(scores)), probe.score(captured.acts["blocks.0.hook_out"][:5]), atol=1e-6)
    assert heavy == "[]"


def test_another_checkpoint_of_the_same_shape_is_refused_naming_both(workdir):
    other = save_tiny(workdir / "other_model", "gpt2", seed=1)
    save_tiny(workdir / "first_model", "gpt2", seed=0)
    bridge, model_cfg = load_model(workdir / "first_model")
    rows = [json.loads(line) for line in (workdir / "secret.jsonl").read_text().splitlines()][:100]
    probe = fit_probes(capture(bridge, [r["text"] for r in rows], ["blocks.1.hook_out"], labels=[r["label"] for r in rows],
                               cfg=model_cfg), seed=0)["blocks.1.hook_out"]
    stranger, stranger_cfg = load_model(other)
    with pytest.raises(ProbeError, match=r"other weights \(fitted on '.*first_model' .*, applied to '.*other_model'"):
        with probe.attach(stranger, cfg=stranger_cfg):
            pass
    with pytest.raises(ProbeError, match=r"other weights \(fitted on '.*first_model' .*, applied to '.*other_model'"):
        with probe.attach(AutoModelForCausalLM.from_pretrained(other)):
            pass


def test_config_errors_for_models_and_text_are_one_line(workdir, tmp_path):
    base = {"task": {"name": "text", "path": "secret.jsonl"}, "tracking": {"wandb_mode": "disabled"}}
    cases = [
        ({"experiment": "probe", "model": {"source": "pretrained", "name_or_path": "my_model", "n_layers": 3}, **base},
         "n_layers: a pretrained model's architecture and dimensions come from its checkpoint; remove it"),
        ({"experiment": "probe", **base}, "experiment 'probe' needs a trained model"),
        ({"experiment": "plant", "model": {"source": "pretrained", "name_or_path": "my_model"}},
         "a pretrained model reads text with its own tokenizer, but task 'backdoor'"),
        ({"experiment": "treat", "model": {"source": "pretrained", "name_or_path": "my_model"}, **base},
         "task 'text' has no labelled samples carrying its hidden label; treatment"),
        ({"experiment": "locate", "locate": {"checkpoint": "my_model"}}, "locate.checkpoint: experiment 'locate' does not read it"),
        ({"experiment": "probe", "model": {"source": "pretrained", "name_or_path": "my_model"},
          "task": {"name": "text", "path": "secret.jsonl", "label_column": "nope"}}, "has no column 'nope'"),
        ({"experiment": "probe", "model": {"source": "pretrained", "name_or_path": "my_model"}, **base,
          "locate": {"position": {"match": "secret"}}},
         "does not contain 'secret'; choose a string every input contains"),
        ({"experiment": "probe", "model": {"source": "pretrained", "name_or_path": "my_model"}, **base,
          "locate": {"position": 5}}, "locate.position: position 5 lies outside some input (lengths 4-10)"),
    ]
    for i, (cfg, message) in enumerate(cases):
        with pytest.raises(ConfigError) as err:
            whitebox.run(whitebox.parse_config(cfg), out=tmp_path / f"run{i}")
        assert message in str(err.value) and "\n" not in str(err.value), (message, str(err.value))
        if "position" in message:  # a problem with the data names the setting and the file
            assert str(err.value).startswith("locate.position: ")
            assert str(err.value).endswith(f"(data: {workdir / 'secret.jsonl'})")


def test_probe_fit_on_the_command_line_takes_a_pretrained_model_and_a_text_task(workdir, capsys):
    from whitebox.cli.main import main

    (workdir / "probe.yaml").write_text("model: {source: pretrained, name_or_path: my_model}\n"
                                        "task: {name: text, path: secret.jsonl}\n"
                                        "locate: {n_fit: 100, n_test: 100, probes: all}\n")
    with one_thread():
        assert main(["probe", "fit", str(workdir / "probe.yaml"), "--out", str(workdir / "fitted")]) == 0
    out = capsys.readouterr().out
    assert "probe_auroc_best" in out and "every probe kind" in out and "skipped readout: needs class labels" in out
    assert load_probe(workdir / "fitted" / "probes" / "lda" / "blocks.0.hook_out").kind == "lda"
    probe = load_probe(workdir / "fitted" / "probes" / "blocks.0.hook_out")
    assert probe.model["checkpoint"] == str(workdir / "my_model") and probe.hf_location["io"] == "output"


def test_the_command_line_scores_a_probe_on_a_hugging_face_folder_given_labelled_texts(workdir, capsys):
    from whitebox.cli.main import main

    (workdir / "probe.yaml").write_text("model: {source: pretrained, name_or_path: my_model}\n"
                                        "task: {name: text, path: secret.jsonl}\nlocate: {n_fit: 100, n_test: 100}\n")
    with one_thread():
        assert main(["probe", "fit", str(workdir / "probe.yaml"), "--out", str(workdir / "fitted")]) == 0
    capsys.readouterr()
    probe_dir = str(workdir / "fitted" / "probes" / "blocks.0.hook_out")
    assert main(["probe", "eval", probe_dir, "--checkpoint", "my_model", "--data", "secret.jsonl", "--n", "300"]) == 0
    scored = capsys.readouterr().out
    # 300 seeded rows of the file, half of which the probe was fitted on: as readable as at fitting
    assert re.search(r"\bn\s+300\b", scored) and float(re.search(r"auroc\s+([0-9.]+)", scored).group(1)) > 0.75
    assert main(["probe", "eval", probe_dir, "--checkpoint", "my_model"]) == 2
    assert "--data: my_model is a Hugging Face folder with no task of its own; give --data FILE" in capsys.readouterr().err
    assert main(["probe", "eval", probe_dir, "--checkpoint", "my_model", "--label-column", "y"]) == 2
    assert "--label-column: names columns of --data; give --data FILE or drop it" in capsys.readouterr().err
    assert main(["probe", "eval", probe_dir, "--checkpoint", "my_model", "--data", "secret.jsonl",
                 "--label-column", "nope"]) == 2
    assert f"--data: {workdir / 'secret.jsonl'} has no column 'nope' (its columns: text, label); set --text-column" in \
        capsys.readouterr().err
    save_tiny(workdir / "other_model", ARCH_OF[workdir], seed=1)
    assert main(["probe", "eval", probe_dir, "--checkpoint", "other_model", "--data", "secret.jsonl"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"other weights \(fitted on '.*my_model' .*applied to '.*other_model'.*; pass "
                     r"--allow-fingerprint-mismatch to use it anyway", err)


def test_a_local_folder_named_like_a_hub_model_is_loaded_from_the_folder(tmp_path, monkeypatch):
    save_tiny(tmp_path / "neox", "neox", seed=0)  # transformer-lens reads a bare "neox" as EleutherAI/gpt-neox-20b
    monkeypatch.chdir(tmp_path)
    model, cfg = load_model("neox")
    assert type(model.original_model).__name__ == "GPTNeoXForCausalLM" and model.cfg.d_model == 32
    assert cfg.name_or_path == str(tmp_path / "neox")  # saved absolute: a resumed run finds it from anywhere


def test_one_checkpoint_keeps_its_identity_in_bfloat16_and_under_a_device_map(workdir):
    bridge, model_cfg = load_model(workdir / "my_model")
    rows = [json.loads(line) for line in (workdir / "secret.jsonl").read_text().splitlines()][:100]
    probe = fit_probes(capture(bridge, [r["text"] for r in rows], ["blocks.0.hook_out"], labels=[r["label"] for r in rows],
                               cfg=model_cfg), seed=0)["blocks.0.hook_out"]
    half_cfg = ModelConfig(source="pretrained", name_or_path=str(workdir / "my_model"), dtype="bfloat16", device_map="cpu")
    half = load_pretrained(half_cfg)
    assert next(half.parameters()).dtype == torch.bfloat16
    assert model_identity(half, half_cfg) == model_identity(bridge, model_cfg)  # how it was loaded is not which model
    tokens = bridge.tokenizer(["the secret is a cat"], return_tensors="pt")["input_ids"]
    with torch.no_grad(), probe.attach(bridge) as full_scores:
        bridge(tokens)
    hf_half = AutoModelForCausalLM.from_pretrained(workdir / "my_model", dtype=torch.bfloat16)
    with torch.no_grad(), probe.attach(hf_half) as half_scores:  # the same checkpoint: no refusal
        hf_half(tokens)
    assert half_scores.last.dtype == torch.float32  # scored in float32, not rounded to bf16 precision
    assert torch.allclose(half_scores.last, full_scores.last, rtol=0.05, atol=0.05)
