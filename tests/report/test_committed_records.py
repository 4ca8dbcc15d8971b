"""The committed headline reports are what `whitebox report` makes of the committed records today."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from whitebox.cli import main

DATA = Path(__file__).resolve().parents[2] / "docs" / "results" / "data"


@pytest.mark.parametrize("name", ["headline", "headline_long"])
def test_the_committed_report_is_rebuilt_byte_identically_from_the_committed_records(name, tmp_path, capsys):
    records = tmp_path / name
    records.mkdir()
    for path in [*sorted((DATA / name).glob("*-s*.json")), DATA / name / "config.yaml"]:
        shutil.copy(path, records)
    assert main(["report", str(records)]) == 0
    assert (records / "report.md").read_text() == (DATA / name / "report.md").read_text(), (
        f"docs/results/data/{name}/report.md is stale: run `whitebox report docs/results/data/{name}` and commit it")
