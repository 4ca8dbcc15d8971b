"""The suppression experiment: every (trigger, seed) cell planted, located, treated and revived; one report."""

from __future__ import annotations

from typing import Any

from whitebox.grid import run_cells
from whitebox.runner import RunContext
from whitebox.suppression_report import aggregate, report_rows, write_report


def run(ctx: RunContext) -> dict[str, Any]:
    cells = run_cells(ctx.cfg, ctx.run_dir, experiment="treat")
    rows = report_rows(ctx.cfg)
    summary = aggregate(cells, rows)
    report = write_report(ctx.run_dir, ctx.cfg, cells, summary, rows)
    ctx.tracker.log_images({p.stem: p for p in sorted((ctx.run_dir / "plots").glob("treat_*.png"))})
    print(report.read_text())
    return summary
