"""A damaged run directory is one line naming the file and what to do, never a traceback, a hang or a changed file:
every file a resume or `whitebox report` reads, edited into many wrong shapes."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY, one_thread
from tests.reliability.interrupted import IN_SECOND_CELL, copy_of, files, killed_run, refused, treat_config
from whitebox.cli.main import main
from whitebox.runtime.artifacts import ArtifactError, sha256_json
from whitebox.runtime.env import expected_config, owner, read_env
from whitebox.runtime.records import read_records, read_summary, results

NOT_UTF8 = b'{"status": "running\xff\xfe"}'


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """The tiny treat run killed in es-present: plant, locate and sft-present finished (and their records)."""
    return killed_run(tmp_path_factory.mktemp("interrupted"), treat_config(), IN_SECOND_CELL)


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    return killed_run(tmp_path_factory.mktemp("complete"), treat_config(), None)


@pytest.fixture(scope="module")
def plant_run(tmp_path_factory):
    """The tiny plant run killed at step 15: step_0000006 and step_0000012 kept."""
    return killed_run(tmp_path_factory.mktemp("plant"), TINY, 15)


def _lines(edit: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        path.write_text("".join(line + "\n" for line in edit(path.read_text().splitlines())))
    return apply


def _insert(line: str) -> Callable[[Path], None]:
    return _lines(lambda lines: [*lines[:3], line, *lines[3:]])


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _env_config_edited(path: Path) -> None:
    env = json.loads(path.read_text())
    env["config"]["run"]["seed"] = 7
    path.write_text(json.dumps(env))


def _remove(path: Path) -> None:
    path.unlink()


METRICS = {
    "line-5": _insert("5"), "line-null": _insert("null"), "line-list": _insert("[]"), "step-string": _insert('{"step": "x"}'),
    "stage-step-string": _insert('{"stage": "plant", "step": "x"}'), "negative-step": _insert('{"stage": "plant", "step": -1}'),
    "value-string": _insert('{"stage": "plant", "step": 1, "eval/asr": "x"}'), "blank-line": _insert(""),
    "not-utf8": lambda p: p.write_bytes(p.read_bytes().replace(b'"stage"', b'"st\xffage"', 1)),
    "truncated": _lines(lambda lines: lines[:10]), "plant-record-gone": _lines(lambda lines: lines[:4] + lines[5:]),
    "plant-record-edited": _lines(lambda lines: [lines[0].replace('"step": 0', '"step": 1'), *lines[1:]]),
    "locate-record-gone": _lines(lambda lines: [line for line in lines if '"stage": "locate"' not in line]),
    "interrupted-stage-record-gone": _lines(  # es-present's record of step 4, before its checkpoint step_0000012
        lambda lines: [line for line in lines if not ('"treat/es-present"' in line and '"step": 4,' in line)]),
    "missing": _remove,
}
RESUME = {
    **{f"summary-{k}": ("summary.json", v) for k, v in {
        "list": _bytes(b"[]"), "list-1": _bytes(b"[1]"), "string": _bytes(b'"x"'), "status-number": _bytes(b'{"status": 5}'),
        "nested": _bytes(b'{"plant.asr": [1]}'), "not-utf8": _bytes(NOT_UTF8), "cut": _bytes(b'{"stat'),
        "treat-text": _bytes(b'{"status": "running", "treat.start.token.asr": "high"}')}.items()},
    **{f"env-{k}": ("env.json", v) for k, v in {
        "list": _bytes(b"[]"), "empty": _bytes(b"{}"), "list-1": _bytes(b"[1]"), "id-number": _bytes(b'{"wandb_id": 5, "seed": 0}'),
        "not-utf8": _bytes(NOT_UTF8), "config-edited": _env_config_edited, "missing": _remove,
        "amendment-bad": lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "amendments": [
            {"changes": {"training.lr": 5}, "config_sha256": "x"}]})),
        "amendment-of-seed": lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "amendments": [
            {"changes": {"run.seed.x": {"from": 0, "to": 1}}, "config_sha256": "x"}]}))}.items()},
    **{f"located-{k}": ("located.json", v) for k, v in {
        "list-1": _bytes(b"[1]"), "empty": _bytes(b"{}"), "list": _bytes(b"[]"), "nested": _bytes(b'{"locate.x": [1]}'),
        "foreign-key": _bytes(b'{"x": 1}'), "not-utf8": _bytes(NOT_UTF8)}.items()},
    **{f"result-{k}": ("treat/sft-present/result.json", v) for k, v in {
        "empty": _bytes(b"{}"), "list": _bytes(b"[]"), "final-empty": _bytes(b'{"final": {}}'),
        "final-text": _bytes(b'{"final": {"asr": "x"}}'), "final-list": _bytes(b'{"final": [1]}')}.items()},
    **{f"metrics-{k}": ("metrics.jsonl", v) for k, v in METRICS.items()},
    "index-list": ("metrics.stages.json", _bytes(b"[]")), "index-number": ("metrics.stages.json", _bytes(b'{"plant": 5}')),
    "checkpoint-cut": ("treat/es-present/checkpoints", lambda d: _cut(next(d.glob("step_*")) / "model.safetensors")),
    "checkpoint-json-list": ("treat/es-present/checkpoints", lambda d: _bytes(b"[]")(next(d.glob("step_*")) / "checkpoint.json")),
}


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _kept(run_dir: Path) -> dict[str, bytes]:
    """The run's files but its plots (a resume may draw the same figure again before it reaches the damage)."""
    return {k: v for k, v in files(run_dir).items() if not k.startswith("plots/")}


@pytest.mark.parametrize("case", list(RESUME))
def test_resume_of_a_damaged_run_is_one_line_and_changes_nothing(interrupted, tmp_path, capsys, case):
    """Each damaged file: --resume exits 2 with one line naming the file; every file is as it was."""
    name, damage = RESUME[case]
    run_dir = copy_of(interrupted, tmp_path)
    damage(run_dir / name)
    before = _kept(run_dir)
    refused(capsys, ["run", "--resume", str(run_dir)], str(run_dir / Path(name).parts[0]))
    assert _kept(run_dir) == before


REPORT = {
    **{f"summary-{k}": ("summary.json", v) for k, v in {
        "list": _bytes(b"[]"), "list-1": _bytes(b"[1]"), "not-utf8": _bytes(NOT_UTF8),
        "treat-text": _bytes(b'{"status": "complete", "treat.start.token.asr": "x"}'),
        "treat-null": _bytes(b'{"status": "complete", "treat.start.token.asr": null}')}.items()},
    **{f"metrics-{k}": ("metrics.jsonl", METRICS[k]) for k in ("line-5", "step-string", "not-utf8", "missing", "value-string")},
}


@pytest.mark.parametrize("case", list(REPORT))
def test_report_of_a_damaged_run_is_one_line(complete, tmp_path, capsys, case):
    """`whitebox report` on a complete treat run with one damaged file: exit 2, one line naming it, nothing written."""
    name, damage = REPORT[case]
    run_dir = copy_of(complete, tmp_path)
    damage(run_dir / name)
    before = files(run_dir)
    refused(capsys, ["report", str(run_dir)], str(run_dir / name))
    assert files(run_dir) == before


@pytest.mark.parametrize("case", ["list", "not-utf8", "status-number"])
def test_report_of_a_grid_run_with_a_damaged_cell_summary_is_one_line(complete, tmp_path, capsys, case):
    """A suppression run whose one cell's summary.json is damaged: `whitebox report` names the cell's file."""
    run_dir = tmp_path / "grid"
    config = {**treat_config(), "experiment": "suppression", "grid": {"triggers": ["token"], "seeds": [0]}}
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    cell = run_dir / "cells" / "token-s0"
    shutil.copytree(complete, cell)
    RESUME[f"summary-{case}"][1](cell / "summary.json")
    refused(capsys, ["report", str(run_dir)], str(cell / "summary.json"))


def test_report_works_on_the_undamaged_copy(complete, tmp_path, capsys):
    """The control: the same copy, undamaged, reports."""
    assert main(["report", str(copy_of(complete, tmp_path))]) == 0


def test_a_damaged_newest_checkpoint_falls_back_to_the_older_one(plant_run, tmp_path, capsys):
    """step_0000012's weights cut: a warning naming it, resume from step_0000006, and the run ends like an intact one."""
    intact, damaged = copy_of(plant_run, tmp_path / "a"), copy_of(plant_run, tmp_path / "b")
    _cut(damaged / "checkpoints" / "plant" / "step_0000012" / "model.safetensors")
    with pytest.warns(UserWarning, match=r"step_0000012/model.safetensors: content hash differs.*older step_0000006"):
        assert main(["run", "--resume", str(damaged)]) == 0
    assert main(["run", "--resume", str(intact)]) == 0
    assert results(json.loads((damaged / "summary.json").read_text())) == results(json.loads((intact / "summary.json").read_text()))


def test_a_damaged_only_checkpoint_says_which_to_delete(plant_run, tmp_path, capsys):
    """Both kept checkpoints damaged: one line naming the newest and the way on (delete it)."""
    run_dir = copy_of(plant_run, tmp_path)
    for step in ("step_0000006", "step_0000012"):
        (run_dir / "checkpoints" / "plant" / step / "checkpoint.json").write_text("[]")
    with pytest.warns(UserWarning, match="step_0000012"):
        refused(capsys, ["run", "--resume", str(run_dir)], "step_0000006", "delete")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
LINES = st.one_of(JSON.map(json.dumps), st.text(max_size=30).filter(lambda t: "\n" not in t and "\r" not in t),
                  st.fixed_dictionaries({"stage": st.text(max_size=5), "step": JSON}, optional={"x": JSON}).map(json.dumps))


def _fuzz(figures, what: str, cases: int, strategy, read: Callable) -> None:
    """Run `read` on `cases` drawn values: each one read whole or refused with one ArtifactError line naming the file."""
    counts: Counter[str] = Counter()

    @settings(max_examples=cases, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(value=strategy)
    def check(value):
        try:
            read(value)
        except ArtifactError as err:
            assert "\n" not in str(err)
            counts["rejected"] += 1
            return
        counts["accepted"] += 1

    check()
    figures(parser=what, cases=sum(counts.values()), accepted=counts["accepted"], rejected=counts["rejected"],
            other_exceptions=0, files_written=0)


def test_any_line_in_metrics_is_a_record_or_one_line_naming_it(tmp_path, figures):
    """Any text or JSON value as a line of metrics.jsonl (hypothesis): read back as a well-formed record, or one
    ArtifactError naming the file and the line; never another exception."""
    path = tmp_path / "metrics.jsonl"
    good = [json.dumps({"stage": "plant", "step": s, "train/loss": 1.0}) for s in range(3)]

    def read(case):
        line, where = case
        path.write_text("\n".join([*good[:where], line, *good[where:]]) + "\n")
        try:
            records = read_records(path)
        except ArtifactError as err:
            assert str(path) in str(err) and f"line {where + 1}" in str(err)
            raise
        assert all(isinstance(r["stage"], str) and type(r["step"]) is int for r in records)

    _fuzz(figures, "metrics.jsonl line (resume, report)", 300, st.tuples(LINES, st.integers(0, 2)), read)


def test_any_summary_is_flat_or_one_line_naming_it(tmp_path, figures):
    """Any JSON value as summary.json (hypothesis): a flat object of numbers and strings, or one ArtifactError naming
    the file."""
    path = tmp_path / "summary.json"

    def read(data):
        path.write_text(json.dumps(data))
        try:
            summary = read_summary(path)
        except ArtifactError as err:
            assert str(path) in str(err)
            raise
        assert isinstance(summary, dict) and all(not isinstance(v, (dict, list)) for v in summary.values())

    _fuzz(figures, "summary.json (resume, report)", 300, JSON, read)


def test_any_env_is_checked_or_one_line_naming_it(tmp_path, figures):
    """Any JSON value as env.json, or a real one with a field replaced (hypothesis): read and used (the expected
    config, the checkpoint owner), or one ArtifactError naming the file."""
    path = tmp_path / "env.json"
    real = {"wandb_id": "abc", "seed": 0, "run_id": "abc", "config": {"training": {"lr": 0.1}},
            "config_sha256": sha256_json({"training": {"lr": 0.1}}), "amendments": []}
    fields = st.sampled_from(sorted(real))

    def read(case):
        path.write_text(json.dumps(case if not isinstance(case, tuple) else {**real, case[0]: case[1]}))
        env = read_env(path)
        expected_config(env)
        owner(env)

    _fuzz(figures, "env.json (resume)", 300, st.one_of(JSON, st.tuples(fields, JSON)), read)
