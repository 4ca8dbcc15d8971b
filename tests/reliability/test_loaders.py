"""Every loader checks every field it uses: probe.json, model.json and circuit.json, damaged and resealed.

The hostile cases edit one field and recompute the file's content hash (so the hash cannot be what
catches them): each must load and work, or be refused by `whitebox probe eval` with one line and
exit 2, never a traceback, a silent AUROC of 0.5 or a model built before its file was checked.
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.reliability.saved import copy_of, edit_json
from whitebox.attribution import Circuit
from whitebox.attribution.circuit import CircuitError
from whitebox.cli.main import main
from whitebox.config import ModelConfig
from whitebox.fingerprint import fingerprint, fingerprint_of
from whitebox.models import load_model
from whitebox.report.suppression import derived
from whitebox.runtime import memory
from whitebox.runtime.artifacts import ArtifactError, sha256_file
from whitebox.runtime.rundir import treat_key

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True), st.text(max_size=6),
              st.sampled_from(["", "last", "all", "mask", "blocks.9.hook_out", "logistic", "readout", "ccs", "L9.H0"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=4,
)


def cli(argv: list[str]) -> tuple[int, str]:
    """Exit code and stderr of an in-process `whitebox` call; any exception escaping main fails the test."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue().strip()


def eval_probe(probe: Path, model: Path) -> tuple[int, str]:
    return cli(["probe", "eval", str(probe), "--checkpoint", str(model), "--n", "64"])


def one_line_refusal(code: int, message: str, *names: str) -> None:
    assert code == 2 and message.startswith("whitebox: error: ") and "\n" not in message, message
    assert "Traceback" not in message and all(name in message for name in names), message


def set_tensor(directory: Path, stem: str, name: str, change: Callable[[torch.Tensor], None]) -> None:
    """Damage one tensor of `<stem>.safetensors` and record the new file's hash, resealed, in `<stem>.json`."""
    weights = directory / f"{stem}.safetensors"
    tensors = load_file(str(weights))
    change(tensors[name])
    save_file(tensors, str(weights))
    edit_json(directory / f"{stem}.json", lambda m: m.update(weights_sha256=sha256_file(weights)))


@pytest.mark.parametrize(("field", "value", "names"), [
    ("hook", "blocks.7.hook_out", ["'hook'", "blocks.7.hook_out"]),
    ("hook", "nonsense", ["'hook'"]),
    ("position", 999, ["'position'", "999"]),
    ("position", -999, ["'position'", "-999"]),
    ("position", 8, ["'position'"]),
    ("probe_type", "readout", ["readout"]),
    ("probe_type", "svm", ["'probe_type'", "svm"]),
    ("d_model", 8, ["'d_model'"]),
])
def test_probe_field_that_does_not_fit_the_model(saved, tmp_path, field, value, names):
    """probe.json with a hook the model lacks, a position outside its inputs, another probe type (hash resealed)."""
    probe = copy_of(saved.probe, tmp_path)
    edit_json(probe / "probe.json", lambda m: m.update({field: value}))
    one_line_refusal(*eval_probe(probe, saved.model), *names)


@pytest.mark.parametrize(("name", "value"), [("weight", math.nan), ("std", math.inf), ("std", 0.0), ("mean", -math.inf),
                                             ("bias", math.nan), ("std", -1.0)])
def test_probe_tensors_must_be_finite_and_std_positive(saved, tmp_path, name, value):
    """NaN, infinite or non-positive probe tensors (hash recomputed) are refused, not scored at AUROC 0.5."""
    probe = copy_of(saved.probe, tmp_path)
    set_tensor(probe, "probe", name, lambda t: t.fill_(value))
    one_line_refusal(*eval_probe(probe, saved.model), f"'{name}'")


@pytest.mark.parametrize("field", ["probe_type", "position", "hyperparameters", "training_data", "model"])
def test_any_edit_without_resealing_fails_the_hash(saved, tmp_path, field):
    """Every metadata field is covered by the content hash: an edit, even to a valid value, is refused."""
    probe = copy_of(saved.probe, tmp_path)
    valid = {"probe_type": "lda", "position": 1, "hyperparameters": {}, "training_data": None, "model": None}
    edit_json(probe / "probe.json", lambda m: m.update({field: valid[field]}), reseal=False)
    code, message = eval_probe(probe, saved.model)
    one_line_refusal(code, message, "probe.json")
    assert "content hash" in message or f"'{field}'" in message


def test_hostile_probe_fields(saved, tmp_path, figures):
    """Any JSON value in any probe.json field, resealed (hypothesis): probe eval succeeds or refuses in one line."""
    counts: Counter[str] = Counter()
    fields = ["hook", "position", "probe_type", "d_model", "model", "hf_location", "training_data", "hyperparameters",
              "metrics", "created", "whitebox_version", "weights_sha256"]

    @settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(field=st.sampled_from(fields), value=JSON)
    def check(field, value):
        probe = copy_of(saved.probe, tmp_path)
        edit_json(probe / "probe.json", lambda m: m.update({field: value}))
        code, message = eval_probe(probe, saved.model)
        if code != 0:
            one_line_refusal(code, message)
        counts["accepted" if code == 0 else "rejected"] += 1
        shutil.rmtree(probe)

    check()
    assert counts["rejected"] > counts["accepted"]
    figures(parser="probe eval of a probe.json with any field resealed", cases=sum(counts.values()),
            accepted=counts["accepted"], rejected=counts["rejected"], other_exceptions=0, files_written=0)


def _refingerprint(directory: Path) -> Callable[[dict[str, Any]], None]:
    """After editing model_config: make 'fingerprint' agree with it and the weights' header, as a forger would."""
    def change(meta: dict[str, Any]) -> None:
        with safe_open(str(directory / "model.safetensors"), "pt") as f:
            params = {n: list(f.get_slice(n).get_shape()) for n in f.keys()}
        cfg = ModelConfig.model_validate(meta["model_config"])
        meta["fingerprint"] = fingerprint_of(cfg.arch, cfg, params)
    return change


@pytest.mark.parametrize(("change", "names"), [
    (lambda m: m.update(vocab="abc"), ["'vocab'"]),
    (lambda m: m.update(vocab={"a": 1}), ["'vocab'"]),
    (lambda m: m.update(vocab=list(range(len(m["vocab"])))), ["'vocab'"]),
    (lambda m: m.update(vocab=m["vocab"] + [f"extra{i}" for i in range(99)]), ["'vocab'", "d_vocab"]),
    (lambda m: m.update(vocab=[m["vocab"][0]] * len(m["vocab"])), ["'vocab'", "twice"]),
    (lambda m: m.update(metrics="high"), ["'metrics'"]),
    (lambda m: m.update(task=[1]), ["'task'"]),
    (lambda m: m.update(task={"name": "backdoor", "seq_len": "x"}), ["'task'"]),
    (lambda m: m["model_config"].update(d_model=24), ["model_config"]),
    (lambda m: m["model_config"].update(d_vocab=10**9), ["model_config"]),
    (lambda m: m.update(format_version="1"), ["format_version"]),
])
def test_model_json_field(saved, tmp_path, change, names):
    """model.json's vocab, metrics, task, model_config and version (hash resealed): refused naming the field."""
    model = copy_of(saved.model, tmp_path)
    edit_json(model / "model.json", change)
    one_line_refusal(*eval_probe(saved.probe, model), *names)


def test_a_forged_huge_model_is_refused_before_it_is_built(saved, tmp_path, monkeypatch):
    """model_config edited to 8192 x 32768 x 8 layers (25.8 GB), with fingerprint and hash forged to agree: refused
    by the memory estimate (limit set to 4 GB here) before anything is allocated."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 4 << 30)
    model = copy_of(saved.model, tmp_path)

    def grow(meta: dict[str, Any]) -> None:
        meta["model_config"].update(d_model=8192, d_mlp=32768, n_layers=8)
        _refingerprint(model)(meta)

    edit_json(model / "model.json", grow)
    with pytest.raises(ArtifactError, match=r"model\.json: this model needs about 2\d\.\d GB of memory, more than the "
                                            r"4\.3 GB"):
        load_model(model)
    plain = copy_of(saved.model, tmp_path)
    edit_json(plain / "model.json", lambda m: m["model_config"].update(d_model=8192, d_mlp=32768, n_layers=8))
    with pytest.raises(ArtifactError, match=r"does not match model\.safetensors"):  # not forged: refused by the fingerprint
        load_model(plain)


@pytest.fixture
def circuit(saved) -> tuple[Circuit, torch.nn.Module]:
    model, cfg = load_model(saved.model)
    task = {"name": "backdoor", "seq_len": 4, "n_values": 10}
    return Circuit(["L0.H1", "L0.MLP.N3"], {"L0.H1": 0.5, "L0.MLP.N3": 0.25}, "activation_patching", "noise", task,
                   fingerprint(model, cfg), rule="test"), model


@pytest.mark.parametrize("component", ["L99.H0", "L0.H2", "L0.MLP.N99999999", "L0.MLP.N32", "L1.MLP", "L0.H0.P99",
                                       "L0.MLP.P8", "L5.MLP.N0.P1"])
def test_circuit_component_outside_the_model(circuit, tmp_path, component):
    """circuit.json naming a layer, head, neuron or position the model does not have (hash resealed): one line."""
    circ, model = circuit
    path = circ.save(tmp_path / "circuit.json")
    edit_json(path, lambda c: c.update(components=[component]))
    loaded = Circuit.load(path)
    with pytest.raises(CircuitError, match=rf"field 'components': {component.replace('.', '[.]')} is not in this model"):
        loaded.check_model(model)


@pytest.mark.parametrize(("change", "field"), [
    (lambda c: c.update(task={"name": "nope"}), "task"),
    (lambda c: c.update(task={"name": "backdoor", "seq_len": -1}), "task"),
    (lambda c: c.update(task={}), "task"),
    (lambda c: c.update(components=["L0.H1", "L0.H1"]), "components"),
    (lambda c: c.update(components=[5]), "components"),
    (lambda c: c.update(components=["L0.RESID.P0"]), "components"),
    (lambda c: c.update(threshold=7), "threshold"),
    (lambda c: c.update(scores={"L0.H1": float("nan")}), "scores"),
])
def test_circuit_fields(circuit, tmp_path, change, field):
    """circuit.json with an invalid task, repeated or malformed components, a threshold or scores out of range."""
    path = circuit[0].save(tmp_path / "circuit.json")
    edit_json(path, change)
    with pytest.raises(CircuitError) as err:
        Circuit.load(path)
    assert f"field '{field}'" in str(err.value) and "\n" not in str(err.value)


def test_circuit_edit_without_resealing_is_refused(circuit, tmp_path):
    path = circuit[0].save(tmp_path / "circuit.json")
    edit_json(path, lambda c: c.update(components=["L0.H0"]), reseal=False)
    with pytest.raises(CircuitError, match="content hash differs"):
        Circuit.load(path)


@pytest.mark.parametrize("start", [0, 0.0, None, "x", math.nan])
def test_suppression_ratios_survive_an_empty_circuit_or_a_zero_start(start):
    """A start value of 0 (an empty circuit) or a damaged one gives NaN ratios, never ZeroDivisionError."""
    summary = {treat_key("start", "token", m): start for m in ("circuit_mass", "circuit_ablation_effect", "circuit_weight_norm")}
    summary |= {treat_key("sft.present", "token", "circuit_mass"): 0.0, treat_key("fresh", "token", "revival_steps"): 0}
    out = derived(summary, "token", ["sft.present"])
    assert math.isnan(out[treat_key("sft.present", "token", "circuit_mass_rel")])


def test_a_run_probe_naming_another_hook_is_refused(saved, tmp_path):
    """probes/<hook>/probe.json edited (and resealed) to name another hook: the treat step refuses it in one line."""
    from whitebox.protocol.locate import Located
    from whitebox.runtime.artifacts import ProbeError
    from whitebox.runtime.rundir import RunDir

    run = RunDir(tmp_path / "run")
    shutil.copytree(saved.probe, run.probe("blocks.0.hook_out"))
    located = Located(run, {})
    assert located.probe("blocks.0.hook_out").hook == "blocks.0.hook_out"
    edit_json(run.probe("blocks.0.hook_out") / "probe.json", lambda m: m.update(hook="blocks.0.hook_resid_mid"))
    with pytest.raises(ProbeError, match=r"field 'hook' is 'blocks.0.hook_resid_mid' but the file is the one for"):
        located.probe("blocks.0.hook_out")


def test_hostile_circuit_components(circuit, tmp_path, figures):
    """Any component ids, numbers up to 10^12 (hypothesis, resealed): the circuit fits the model or is refused in one
    line, and an accepted one ablates without an IndexError or AssertionError."""
    circ, model = circuit
    path = circ.save(tmp_path / "circuit.json")
    number = st.one_of(st.integers(0, 3), st.integers(0, 10**12))
    component = st.one_of(
        st.builds("L{}.H{}".format, number, number), st.builds("L{}.MLP".format, number),
        st.builds("L{}.MLP.N{}".format, number, number), st.builds("L{}.RESID.P{}".format, number, number),
        st.builds("L{}.H{}.P{}".format, number, number, number), st.text(max_size=8))
    counts: Counter[str] = Counter()

    @settings(max_examples=80, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(components=st.lists(component, max_size=3))
    def check(components):
        edit_json(path, lambda c: c.update(components=components))
        try:
            loaded = Circuit.load(path)
            loaded.check_model(model)
            with loaded.ablate(model, "zero"):
                model(torch.zeros(2, 8, dtype=torch.long))
            counts["accepted"] += 1
        except CircuitError as err:
            assert "\n" not in str(err), str(err)
            counts["rejected"] += 1

    check()
    assert counts["rejected"] > counts["accepted"] > 0
    figures(parser="circuit.json components (resealed) on a model", cases=sum(counts.values()),
            accepted=counts["accepted"], rejected=counts["rejected"], other_exceptions=0, files_written=0)


@pytest.mark.parametrize("name", ["probe.json", "model.json"])
@pytest.mark.parametrize("content", ["[" * 200_000 + "]" * 200_000, '{"a": ' * 100_000 + "1" + "}" * 100_000],
                         ids=["lists", "objects"])
def test_json_nested_without_bound(saved, tmp_path, name, content):
    """A JSON file nested 100,000 deep (a parser bomb): one line, not RecursionError."""
    directory = copy_of(saved.probe if name == "probe.json" else saved.model, tmp_path)
    (directory / name).write_text(content)
    code, message = eval_probe(*((directory, saved.model) if name == "probe.json" else (saved.probe, directory)))
    one_line_refusal(code, message, name, "nested too deeply")


def test_a_json_file_larger_than_any_whitebox_writes(saved, tmp_path, monkeypatch):
    """A probe.json over the size limit (lowered to 1 kB here) is refused by its size, before it is read."""
    from whitebox.runtime import artifacts

    monkeypatch.setattr(artifacts, "MAX_JSON_BYTES", 1000)
    one_line_refusal(*eval_probe(saved.probe, saved.model), "probe.json", "bytes, more than any JSON file")


def test_hostile_capture_manifest(saved, tmp_path, figures):
    """An on-disk capture whose capture.json has any field replaced, or a .npy file damaged (hypothesis):
    load_capture returns it whole or refuses in one line."""
    import json

    from whitebox.capture import capture, load_capture
    from whitebox.tasks import get_task

    model, cfg = load_model(saved.model)
    task = get_task(json.loads((saved.model / "model.json").read_text())["task"])
    capture(model, task.sample(12, 0.5, seed=0), "resid", positions="all", cfg=cfg, out_dir=tmp_path / "cap")
    files = {p.name: p.read_bytes() for p in (tmp_path / "cap").iterdir()}
    counts: Counter[str] = Counter()

    @settings(max_examples=80, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(field=st.sampled_from(["files", "positions", "format_version", "hooks", "rows", None]), value=JSON,
           npy=st.sampled_from(sorted(n for n in files if n.endswith(".npy"))), cut=st.integers(0, 200))
    def check(field, value, npy, cut):
        directory = tmp_path / "damaged"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
        for name, data in files.items():
            (directory / name).write_bytes(data)
        if field is None:
            (directory / npy).write_bytes(files[npy][:cut])
        else:
            edit_json(directory / "capture.json", lambda m: m.update({field: value}), reseal=False)
        try:
            load_capture(directory)
            counts["accepted"] += 1
        except ArtifactError as err:
            assert "\n" not in str(err), str(err)
            counts["rejected"] += 1

    check()
    assert counts["rejected"] > 0
    figures(parser="load_capture of a damaged on-disk capture", cases=sum(counts.values()), accepted=counts["accepted"],
            rejected=counts["rejected"], other_exceptions=0, files_written=0)
