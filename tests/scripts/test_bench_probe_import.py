import importlib.util
import json

import pytest

from tests.scripts.conftest import ROOT


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_probe_import", ROOT / "scripts" / "bench_probe_import.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_floor_and_the_documented_loader_print_the_same_scores_and_the_loader_imports_nothing_heavy(tmp_path):
    bench = bench_module()
    bench.prepare(tmp_path, d_model=16, n=5)
    _, floor = bench.run(bench.VARIANTS["floor"], tmp_path, 1)
    _, probe = bench.run(bench.VARIANTS["probe"], tmp_path, 1)
    scores = json.loads(floor[0])
    assert len(scores) == 5 and len(set(scores)) == 5  # five different activations, five different scores
    assert json.loads(probe[0]) == pytest.approx(scores, abs=1e-5)
    assert json.loads(probe[1]) == []  # none of transformer_lens, transformers, datasets, wandb, captum
