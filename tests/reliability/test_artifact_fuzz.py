"""Fuzzing the artifact loaders: any damaged file is loaded whole or refused with one line, never half-way.

Each case copies a valid artifact into a fresh directory, damages one file (cut short, bytes
flipped, replaced by garbage, a JSON field deleted or given another value) and, in some cases,
rewrites the recorded content hash to match, so that the parsers behind the hash check are fuzzed
too. The loader must return or raise ArtifactError (ProbeError, CircuitError) with a one-line
message; any other exception fails, and so does any file it writes.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.probes.conftest import planted, tiny_bridge
from whitebox.attribution import Circuit
from whitebox.config import TrainingConfig
from whitebox.models import load_weights, save_model
from whitebox.probes import fit_detectors, fit_probes, load_detector, load_probe
from whitebox.runtime.artifacts import ArtifactError, sha256_json
from whitebox.training.backprop import Backprop
from whitebox.training.checkpoints import load_checkpoint, save_checkpoint

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
              st.text(max_size=8), st.sampled_from(["", "1", "L0.H1", "blocks.0.hook_out", "0" * 64])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=5,
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _reseal_weights(key: str, weights: str) -> Callable[[dict[str, bytes], dict], None]:
    """Set the JSON's hash field to the (damaged) weight file's hash, then its own content hash to match."""
    def reseal(files: dict[str, bytes], meta: dict) -> None:
        if weights in files:
            meta[key] = _sha(files[weights])
        _reseal_circuit(files, meta)
    return reseal


def _reseal_checkpoint(files: dict[str, bytes], meta: dict) -> None:
    if isinstance(meta.get("sha256"), dict):
        meta["sha256"].update({n: _sha(files[n]) for n in ("model.safetensors", "trainer.pt") if n in files})


def _reseal_circuit(files: dict[str, bytes], meta: dict) -> None:
    """Set the JSON's own content hash (`sha256`, over every other field) to match its edited fields."""
    meta["sha256"] = sha256_json({k: v for k, v in meta.items() if k != "sha256"})


def _linear():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    return model, Backprop(model, TrainingConfig(warmup_steps=0), torch.device("cpu"))


def _load_checkpoint(directory: Path) -> Any:
    model, updater = _linear()
    with torch.random.fork_rng():  # a checkpoint restores the global RNG; keep it out of the other tests
        return load_checkpoint(directory, model, updater)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """A valid artifact of each kind: its files' bytes, its JSON file, how to reseal it and how to load it."""
    root = tmp_path_factory.mktemp("artifacts")
    data = planted(hooks=1, d=6, n_train=200, n_test=10)
    hook = next(iter(data.train))
    fit_probes({hook: data.train[hook]}, data.y_train, data_description="fuzz", device="cpu")[hook].save(root / "probe")
    fit_detectors({hook: data.train[hook][data.y_train == 0]}, data_description="fuzz")[hook].save(root / "detector")
    model, updater = _linear()
    updater.step(model, {"x": torch.randn(4, 3)}, lambda m, b: m(b["x"]).pow(2).mean())
    save_checkpoint(root / "ckpt", 1, model, updater, keep=1)
    bridge, cfg = tiny_bridge("native", n_layers=1)
    save_model(bridge, cfg, root / "model")
    fingerprint = {"sha256": "a" * 64, "params": {}}
    Circuit(["L0.H1", "L0.MLP.N3"], {"L0.H1": 0.5, "L0.MLP.N3": 0.25, "L0.H0": 0.0}, "activation_patching", "noise",
            {"name": "backdoor"}, fingerprint, rule="test").save(root / "circuit" / "circuit.json")

    def read(directory: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in directory.iterdir()}

    return {
        "probe": {"files": read(root / "probe"), "json": "probe.json", "load": load_probe,
                  "reseal": _reseal_weights("weights_sha256", "probe.safetensors")},
        "detector": {"files": read(root / "detector"), "json": "detector.json", "load": load_detector,
                     "reseal": _reseal_weights("weights_sha256", "detector.safetensors")},
        "checkpoint": {"files": read(root / "ckpt" / "step_0000001"), "json": "checkpoint.json", "load": _load_checkpoint,
                       "reseal": _reseal_checkpoint},
        "model": {"files": read(root / "model"), "json": "model.json", "load": lambda d: load_weights(bridge, cfg, d),
                  "reseal": _reseal_weights("weights_sha256", "model.safetensors")},
        "circuit": {"files": read(root / "circuit"), "json": "circuit.json", "load": lambda d: Circuit.load(d / "circuit.json"),
                    "reseal": _reseal_circuit},
    }


@st.composite
def damage(draw, files: dict[str, bytes], json_name: str) -> dict[str, Any]:
    """One file damaged one way, and whether the JSON's content hash is made to match afterwards."""
    target = draw(st.sampled_from(sorted(files)))
    kinds = ["truncate", "flip", "garbage", "delete"] + (["edit", "edit", "edit"] if target == json_name else [])
    kind = draw(st.sampled_from(kinds))
    size = len(files[target])
    case: dict[str, Any] = {"target": target, "kind": kind, "reseal": draw(st.booleans())}
    if kind == "truncate":
        case["at"] = draw(st.integers(0, max(0, size - 1)))
    elif kind == "flip":
        case["bytes"] = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 255)), min_size=1, max_size=4))
    elif kind == "garbage":
        case["data"] = draw(st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"{}", b"[]", b"null", b"\x80\x04K\x01."])))
    elif kind == "edit":
        case["path"] = draw(st.lists(st.integers(0, 40), min_size=1, max_size=3))
        case["value"] = draw(st.one_of(st.just(...), json_values))  # ...: delete the field
    return case


def _edit(meta: Any, path: list[int], value: Any) -> None:
    """Delete or replace the field reached by picking the path's n-th key (mod their number) at each level."""
    node = meta
    for depth, pick in enumerate(path):
        if not isinstance(node, (dict, list)) or not node:
            return
        key = sorted(node)[pick % len(node)] if isinstance(node, dict) else pick % len(node)
        if depth == len(path) - 1 or not isinstance(node[key], (dict, list)):
            if value is ...:
                del node[key]
            else:
                node[key] = value
            return
        node = node[key]


def apply(case: dict[str, Any], files: dict[str, bytes], json_name: str, reseal: Callable) -> dict[str, bytes]:
    files = dict(files)
    target, kind = case["target"], case["kind"]
    if kind == "truncate":
        files[target] = files[target][: case["at"]]
    elif kind == "flip":
        data = bytearray(files[target])
        for pos, byte in case["bytes"]:
            data[pos] = byte
        files[target] = bytes(data)
    elif kind == "garbage":
        files[target] = case["data"]
    elif kind == "delete":
        del files[target]
    if case["reseal"] or kind == "edit":
        try:
            meta = json.loads(files[json_name])
        except (KeyError, ValueError):
            return files
        if kind == "edit":
            _edit(meta, case["path"], case["value"])
        if case["reseal"] and isinstance(meta, dict):
            reseal(files, meta)
        files[json_name] = json.dumps(meta).encode()
    return files


def outcome(kind: str, artifact: dict[str, Any], case: dict[str, Any]) -> str:
    """Load the damaged copy: 'accepted' or 'rejected'; fail on any other exception, a long message or a written file."""
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{kind}-") as tmp:
        directory = Path(tmp)
        for name, data in apply(case, artifact["files"], artifact["json"], artifact["reseal"]).items():
            (directory / name).write_bytes(data)
        before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir())
        try:
            artifact["load"](directory)
            result = "accepted"
        except ArtifactError as err:
            message = str(err)
            assert message and "\n" not in message and len(message) < 2000, message
            result = "rejected"
        after = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir())
        assert after == before, f"the {kind} loader wrote files"
        return result


CASES = {"probe": 800, "detector": 400, "checkpoint": 600, "model": 400, "circuit": 800}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's weights-only reader, on garbage
@pytest.mark.parametrize("kind", list(CASES))
def test_damaged_artifact_is_loaded_whole_or_refused_in_one_line(kind, artifacts, figures):
    """Damaged artifact files (hypothesis): each loaded whole or refused with ArtifactError in one line, no file written."""
    artifact = artifacts[kind]
    counts: Counter[str] = Counter()

    @settings(max_examples=CASES[kind], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=damage(artifact["files"], artifact["json"]))
    def check(case):
        counts[outcome(kind, artifact, case)] += 1

    check()
    assert counts["rejected"] > counts["accepted"]  # damage is mostly caught (some edits are harmless, e.g. metrics)
    figures(loader=kind, cases=sum(counts.values()), accepted=counts["accepted"], rejected=counts["rejected"],
            other_exceptions=0, files_written=0)


def test_the_valid_artifacts_load(artifacts):
    """The undamaged artifacts the fuzzing starts from load (so a refusal above is the damage's doing)."""
    for kind, artifact in artifacts.items():
        assert outcome(kind, artifact, {"target": artifact["json"], "kind": "none", "reseal": False}) == "accepted", kind
