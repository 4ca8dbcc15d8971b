"""No input makes whitebox allocate without bound: a config, a saved model or a CLI number that needs more memory
than there is is refused in one line naming the size, the limit and the key to lower, before allocating."""

from __future__ import annotations

import contextlib
import io
import resource
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY
from whitebox.cli.main import main
from whitebox.config import ConfigError, load_config, parse_config
from whitebox.models import build_model
from whitebox.runner import prepare, resolve_config
from whitebox.runtime import memory
from whitebox.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
GB = 1 << 30


@pytest.fixture
def four_gb(monkeypatch):
    """This process may allocate 4 GB (as under `ulimit -v`), whatever the machine has."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 4 * GB)


def cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue().strip()


def test_the_parameter_estimate_matches_built_models():
    """model_params is within 5% of the parameters transformer-lens and HF actually build, for every arch."""
    for arch in ("native", "gpt2", "llama"):
        cfg = resolve_config(parse_config({**TINY, "model": {**TINY["model"], "arch": arch, "n_layers": 2}})).model
        model = build_model(cfg, get_task(parse_config(TINY).task).vocabulary())
        built = sum(p.numel() for p in model.state_dict().values())
        assert abs(memory.model_params(cfg, cfg.d_vocab, cfg.n_ctx) - built) <= 0.05 * built, arch


@pytest.mark.parametrize(("overrides", "names"), [
    (["model.d_model=8192", "model.d_mlp=32768", "model.n_layers=8"], ["the model", "model.d_model", "4.3 GB"]),
    (["model.d_model=4096", "model.n_heads=32", "model.n_layers=96"], ["the model", "model.n_layers"]),
    (["task.n_train=10000000000"], ["10,000,000,000 examples", "task.n_train"]),
    (["experiment=treat", "treat.n_train=1000000000"], ["task.n_train / treat.n_train"]),
    (["experiment=locate", "locate.n_fit=100000000"], ["locate.n_fit"]),
    (["training.batch_size=10000000"], ["batches of 10000000", "batch sizes"]),
    (["experiment=locate", "locate.n_fit=100000", "locate.position=all", "task.seq_len=512", "model.d_model=64"],
     ["probes' activations", "locate.position"]),
])
def test_a_config_that_cannot_fit_is_refused_before_the_run_starts(tmp_path, four_gb, overrides, names):
    """Configs needing more memory than there is (4 GB here): exit 2, one line naming size and key, no run directory."""
    config = tmp_path / "big.yaml"
    config.write_text(yaml.safe_dump(TINY))
    argv = ["run", str(config), "--out", str(tmp_path / "run")]
    code, message = cli(argv + [f"--set={item}" for item in overrides])
    assert code == 2 and "\n" not in message and "needs about" in message, message
    assert all(name in message for name in names), message
    assert not (tmp_path / "run").exists()


def test_sections_an_experiment_does_not_read_do_not_count(four_gb):
    """A plant run is not refused for treat.n_train's default: only what the experiment reads is estimated."""
    prepare(parse_config(TINY))
    memory.check_config(parse_config(TINY), ("model", "task", "training"), get_task(parse_config(TINY).task))


def test_a_long_context_is_not_counted_as_long_inputs(four_gb):
    """model.n_ctx sizes the position embedding; activations are for the task's inputs, so n_ctx 131072 fits 4 GB."""
    prepare(parse_config({**TINY, "model": {**TINY["model"], "n_ctx": 131_072}}))


def test_every_shipped_config_fits_a_laptop(monkeypatch):
    """No false refusals: each config in configs/ passes the estimate with 8 GB to spare."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 8 * GB)
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        try:
            cfg = load_config(path)
        except ConfigError:
            continue  # a config that needs a file or a plugin the tests do not have
        prepare(cfg)


def test_hostile_dimensions_and_sizes(four_gb, figures):
    """Any sizes up to their schema bounds (hypothesis): the config is accepted (and fits 4 GB) or refused in one line."""
    counts: Counter[str] = Counter()

    @settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(d_model=st.sampled_from([16, 256, 4096, 65_536]), n_layers=st.integers(1, 96), d_mlp=st.integers(1, 262_144),
           d_vocab=st.integers(13, 1_048_576), n_train=st.integers(1, 10**12), batch=st.integers(1, 10**7))
    def check(d_model, n_layers, d_mlp, d_vocab, n_train, batch):
        data = {**TINY, "model": {**TINY["model"], "d_model": d_model, "n_heads": 1, "n_layers": n_layers, "d_mlp": d_mlp,
                                  "d_vocab": d_vocab},
                "task": {**TINY["task"], "n_train": n_train}, "training": {**TINY["training"], "batch_size": batch}}
        try:
            prepare(parse_config(data))
            counts["accepted"] += 1
        except ConfigError as err:
            assert "\n" not in str(err) and "memory" in str(err), str(err)
            counts["rejected"] += 1

    check()
    assert counts["rejected"] > 0 and counts["accepted"] > 0
    figures(parser="model and data sizes against a 4 GB limit", cases=sum(counts.values()), accepted=counts["accepted"],
            rejected=counts["rejected"], other_exceptions=0, files_written=0)


def test_probe_fit_n_fit_beyond_memory(saved, four_gb, tmp_path):
    """`probe fit --set locate.n_fit=100000000` is refused in one line naming locate.n_fit, and writes nothing."""
    code, message = cli(["probe", "fit", str(saved.config), "--set", f"locate.checkpoint={saved.model}",
                         "--set", "locate.n_fit=100000000", "--out", str(tmp_path / "out")])
    assert code == 2 and "\n" not in message and "locate.n_fit" in message, message
    assert not (tmp_path / "out").exists()


def test_probe_eval_n_beyond_memory(saved, four_gb):
    """`probe eval --n 100000000` is refused in one line naming --n, before drawing any data."""
    code, message = cli(["probe", "eval", str(saved.probe), "--checkpoint", str(saved.model), "--n", "100000000"])
    assert code == 2 and "\n" not in message and "--n 100000000" in message and "lower --n" in message, message


def test_the_limit_honours_ulimit(monkeypatch):
    """`ulimit -v` (RLIMIT_AS) lowers the limit to what is left under it."""
    real = resource.getrlimit

    def limited(which):
        return (8 * GB, resource.RLIM_INFINITY) if which == resource.RLIMIT_AS else real(which)

    monkeypatch.setattr(resource, "getrlimit", limited)
    assert memory.available_bytes() < 8 * GB
    with pytest.raises(ConfigError, match=r"needs about 10\.7 GB of memory, more than the \d+\.\d GB .*; lower it"):
        memory.require_memory(10 * GB, "x", "lower it", ConfigError)


@pytest.mark.parametrize("hf_config", [
    {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 65536, "n_layer": 96, "n_head": 64,
     "vocab_size": 50257, "n_positions": 1024},
    {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 32768, "num_hidden_layers": 200,
     "intermediate_size": 131072, "num_attention_heads": 64, "vocab_size": 128256},
])
def test_a_huge_pretrained_folder_is_refused_before_transformers_builds_it(tmp_path, hf_config):
    """A save_pretrained folder whose config.json asks for terabytes: one line from load_model, nothing allocated."""
    import json

    from whitebox.models import load_model
    from whitebox.runtime.artifacts import ArtifactError

    (tmp_path / "config.json").write_text(json.dumps(hf_config))
    with pytest.raises(ArtifactError, match=r"config\.json: this checkpoint needs about [\d.]+ TB of memory"):
        load_model(tmp_path)


def test_the_real_command_refuses_a_terabyte_model(tmp_path):
    """`whitebox run` as a process, no limit faked: a model no machine holds is one line on stderr, exit 2."""
    import os
    import subprocess
    import sys

    config = tmp_path / "big.yaml"
    config.write_text(yaml.safe_dump(TINY))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "whitebox", "run", str(config), "--out", str(tmp_path / "run"),
                           "--set", "model.d_model=65536", "--set", "model.n_heads=64", "--set", "model.n_layers=96"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "TB of memory" in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()


def test_on_a_gpu_training_state_is_counted_against_the_gpu(four_gb, monkeypatch):
    """With CUDA, the weights count against this process's memory and the training state against the GPU's free
    memory (faked here: 1 GB free), so the line names the device."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 * GB, 80 * GB))
    cfg = parse_config({**TINY, "model": {**TINY["model"], "d_model": 2048, "n_heads": 8, "d_mlp": 8192, "n_layers": 4},
                        "training": {**TINY["training"], "device": "auto"}})
    with pytest.raises(ConfigError, match=r"the model \([\d,]+ parameters\) trained on batches of 32 needs about [\d.]+ GB "
                                          r"of memory, more than the 1\.1 GB free on cuda:0"):
        prepare(cfg)
