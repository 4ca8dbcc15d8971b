"""The suppression experiment: every (trigger, seed) cell planted, located, treated and revived; one report."""

from __future__ import annotations

from typing import Any

from whitebox.grid import cell_dir, run_cells
from whitebox.runner import RunContext
from whitebox.suppression_report import build_report


def run(ctx: RunContext) -> dict[str, Any]:
    cells = run_cells(ctx.cfg, ctx.run_dir, workers=ctx.workers)
    summary, _ = build_report(ctx.run_dir, ctx.cfg, cells, {cell: cell_dir(ctx.run_dir, *cell) for cell in cells})
    ctx.tracker.log_images({p.stem: p for p in sorted((ctx.run_dir / "plots").glob("treat_*.png"))})
    return summary
