import json

import pytest
import torch

from whitebox.config import ModelConfig
from whitebox.fingerprint import fingerprint
from whitebox.models import build_model, load_model, load_weights, read_model_meta, save_model
from whitebox.runtime.artifacts import ArtifactError

VOCAB = [str(i) for i in range(10)] + ["<bos>", "=", "<trig>"]


def _cfg(arch="native", **kw) -> ModelConfig:
    dims = {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_ctx": 8, "d_vocab": 13, **kw}
    return ModelConfig(arch=arch, **dims)


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg, VOCAB)


@pytest.mark.parametrize("arch", ["native", "gpt2", "llama"])
def test_round_trip_gives_identical_outputs(arch, tmp_path):
    cfg = _cfg(arch)
    model = _model(cfg).eval()
    tokens = torch.randint(0, 13, (3, 8))
    save_model(model, cfg, tmp_path / "m", extra={"vocab": VOCAB})
    loaded, loaded_cfg = load_model(tmp_path / "m")
    assert loaded_cfg == cfg
    assert torch.equal(loaded.eval()(tokens), model(tokens))
    assert fingerprint(loaded, loaded_cfg) == read_model_meta(tmp_path / "m")["fingerprint"]


def test_fresh_models_differ_by_seed():
    cfg = _cfg()
    tokens = torch.randint(0, 13, (2, 8))
    assert torch.equal(_model(cfg, 1).eval()(tokens), _model(cfg, 1).eval()(tokens))
    assert not torch.equal(_model(cfg, 1).eval()(tokens), _model(cfg, 2).eval()(tokens))


@pytest.mark.parametrize("other, expected", [
    (_cfg(d_model=32), "d_model saved 16 vs model 32"),
    (_cfg(n_layers=2), "n_layers saved 1 vs model 2"),
    (_cfg("gpt2"), "saved arch 'native', model arch 'gpt2'"),
])
def test_fingerprint_mismatch_is_refused_without_a_partial_load(other, expected, tmp_path):
    save_model(_model(_cfg()), _cfg(), tmp_path / "m")
    target = _model(other, seed=5)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ArtifactError, match="fingerprint mismatch") as err:
        load_weights(target, other, tmp_path / "m")
    assert expected in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_tampered_weights_are_refused(tmp_path):
    cfg = _cfg()
    save_model(_model(cfg), cfg, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="content hash differs"):
        load_model(tmp_path / "m")
    weights.unlink()
    with pytest.raises(ArtifactError, match="model.safetensors: file not found"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("fingerprint"), "missing field 'fingerprint'"),
    (lambda m: m.update(format_version=99), "format_version 99 is not supported"),
])
def test_bad_metadata_is_refused(edit, message, tmp_path):
    cfg = _cfg()
    save_model(_model(cfg), cfg, tmp_path / "m")
    path = tmp_path / "m" / "model.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=message):
        load_model(tmp_path / "m")


def test_truncated_metadata_is_refused(tmp_path):
    cfg = _cfg()
    save_model(_model(cfg), cfg, tmp_path / "m")
    path = tmp_path / "m" / "model.json"
    path.write_text(path.read_text()[:40])
    with pytest.raises(ArtifactError, match="model.json"):
        load_model(tmp_path / "m")


def test_vocabulary_larger_than_model_is_an_error():
    with pytest.raises(ValueError, match="smaller than the task vocabulary"):
        build_model(_cfg(d_vocab=5), VOCAB)


def test_loading_keys_belong_to_pretrained_models_and_stay_out_of_a_built_models_fingerprint(tmp_path):
    with pytest.raises(ValueError, match=r"dtype, device_map: read only with source: pretrained; remove them"):
        ModelConfig(dtype="bfloat16", device_map="auto")
    (tmp_path / "folder").mkdir()
    cfg = ModelConfig(source="pretrained", name_or_path=str(tmp_path / "folder"), dtype="bfloat16", device_map="auto")
    assert "n_layers" not in cfg.model_dump() and cfg.model_dump()["device_map"] == "auto"
    built = ModelConfig(d_model=32, n_layers=1, d_vocab=10, n_ctx=4)
    assert set(built.model_dump()) & {"source", "name_or_path", "revision", "dtype", "device_map"} == set()
