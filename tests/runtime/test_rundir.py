from pathlib import Path

from whitebox.runtime.rundir import (
    SEED_STREAMS,
    RunDir,
    cell_label,
    seed_stream,
    split_row,
    step_keys,
    treat_key,
    treat_row,
    treat_stage,
)


def test_every_stream_is_distinct_and_starts_with_the_run_seed():
    streams = [tuple(seed_stream(name, 7)) for name in SEED_STREAMS]
    assert len(set(streams)) == len(streams) and all(s[0] == 7 for s in streams)
    assert seed_stream("probe_fit", 3) == [3, 2, 0] and seed_stream("treatment", 3) == [3, 3]  # the streams runs used before


def test_paths_are_the_run_directory_layout(tmp_path):
    run = RunDir(tmp_path)
    assert run.config == tmp_path / "config.yaml" and run.summary == tmp_path / "summary.json"
    assert run.model("planted") == tmp_path / "models" / "planted"
    assert run.probe("blocks.1.hook_out") == tmp_path / "probes" / "blocks.1.hook_out"
    cell = run.stage(treat_stage("sft", "present"))
    assert cell.path == tmp_path / "treat" / "sft-present" and cell.result == cell.path / "result.json"
    assert run.revival("fresh").checkpoints == tmp_path / "revive" / "fresh" / "checkpoints"
    assert run.cell(cell_label("token", 2)) == tmp_path / "cells" / "token-s2"
    assert RunDir(str(tmp_path)).root == Path(tmp_path)


def test_summary_keys_are_built_and_parsed_by_the_same_functions():
    row = treat_row("probe_penalty", "absent")
    assert treat_key(row, "computed", "asr") == "treat.probe_penalty.absent.computed.asr"
    assert split_row(row) == ("probe_penalty", "absent")
    assert step_keys("plant", {"asr": 1.0}) == {"plant.asr": 1.0}
