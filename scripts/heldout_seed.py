"""Does a seed that no report used land inside the headline's intervals? Held-out cells against the committed records.

    python scripts/heldout_seed.py docs/results/data/headline docs/results/data/headline_heldout

The reported directory's records give, per endpoint row (every regime, condition, trigger kind),
the per-seed log R; the held-out directory's records (the same config, other seeds) give each
held-out seed's log R. Printed and written (<held-out>/check.json) per row: the seed's R, the 95%
interval of the mean R, the 95% prediction interval for one new seed (t with n - 1 degrees of
freedom, scale s * sqrt(1 + 1/n)), whether the seed lies in each, and the seed's verdict-relevant
per-seed class (within 1.5x / below 2/3), with the leak's share of its planted value beside it where
a leak was planted. The same config is checked: the held-out records must differ from the reported
ones in grid.seeds, run.name and grid.results only.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from whitebox.grid.records import computed_settings, read_record
from whitebox.report.endpoint import SUPPRESSED_BELOW, aware_row, endpoint
from whitebox.runtime.artifacts import ArtifactError, write_json
from whitebox.runtime.rundir import split_row, treat_key

SAME_BUT = ("grid.seeds", "grid.results", "run.name", "run.seed")  # what a held-out seed changes


def records(results: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """(trigger kind, seed) -> summary of every intact record in `results`."""
    out = {}
    for path in sorted(results.glob("*-s*.json")):
        try:
            data = read_record(results, path.stem)
        except ArtifactError as err:  # edited, truncated or another format: one line, no traceback
            sys.exit(f"error: {err}")
        kind, seed = path.stem.rsplit("-s", 1)
        out[(kind, int(seed))] = data["summary"] | {"_config": data["config"]}
    if not out:
        sys.exit(f"error: {results} holds no cell records (<kind>-s<seed>.json); give a grid.results directory")
    return out


def check_same_config(reported: dict, held_out: dict) -> None:
    a = computed_settings(next(iter(reported.values()))["_config"])
    b = computed_settings(next(iter(held_out.values()))["_config"])
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in SAME_BUT)
    if differ:
        sys.exit(f"error: the held-out cells ran another config ({', '.join(differ[:6])} differ); run the reported "
                 "config with only grid.seeds, grid.results and run.name changed")
    overlap = {s for _, s in reported} & {s for _, s in held_out}
    if overlap:
        sys.exit(f"error: seeds {sorted(overlap)} are in both directories; a held-out seed must be one never reported")


def rows_of(cells: dict) -> list[str]:
    """The endpoint rows the records measure: every treated row that has a trigger-aware yardstick."""
    keys = next(iter(cells.values())).keys()
    kind = next(iter(cells))[0]
    rows = {k.split(".")[1] + "." + k.split(".")[2] for k in keys if k.startswith("treat.") and k.endswith(".revival_steps")}
    return [r for r in sorted(rows) if aware_row(r) in rows and not split_row(r)[0].endswith(("_aware", "_noise"))
            and treat_key(r, kind, "revival_steps") in keys]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reported", type=Path)
    parser.add_argument("held_out", type=Path)
    args = parser.parse_args(argv)
    reported, held_out = records(args.reported), records(args.held_out)
    check_same_config(reported, held_out)
    out: dict[str, Any] = {"reported": str(args.reported), "held_out": str(args.held_out), "rows": {}}
    print(f"{'row':<44} {'seed':>4} {'R':>6}  {'95% CI of mean':>16}  {'95% prediction':>16}  in CI  in PI  class")
    for kind in sorted({k for k, _ in reported}):
        own = {c: v for c, v in reported.items() if c[0] == kind}
        rows = rows_of(own)
        found = endpoint(own, kind, rows)
        for row, e in found.items():
            log_r = np.asarray(e["log_r"])
            n, mean, sd = len(log_r), float(log_r.mean()), float(log_r.std(ddof=1))
            ci = (math.log(e["ratio"].low), math.log(e["ratio"].high))  # the report's 95% interval of the mean
            half = stats.t.ppf(0.975, n - 1) * sd * math.sqrt(1 + 1 / n)  # one new seed: the mean's spread plus its own
            pi = (mean - half, mean + half)
            for (k, seed), summary in sorted(held_out.items()):
                if k != kind:
                    continue
                new = endpoint({(kind, seed): summary}, kind, [row]).get(row)
                if new is None:
                    continue
                value = new["log_r"][0]
                cls = ("within 1.5x" if abs(value) < math.log(1.5) else "below 2/3" if value < math.log(SUPPRESSED_BELOW)
                       else "above 1.5x")
                leak = summary.get(treat_key(row, kind, "leak"))
                planted = summary.get("plant.leak")
                entry = {"seed": seed, "R": math.exp(value), "mean_R": math.exp(mean), "ci95_R": [math.exp(v) for v in ci],
                         "pi95_R": [math.exp(v) for v in pi], "in_ci": bool(ci[0] <= value <= ci[1]),
                         "in_pi": bool(pi[0] <= value <= pi[1]), "class": cls, "reported_seeds": n,
                         "leak_share": leak / planted if leak is not None and planted else None}
                out["rows"][f"{kind}/{row}/s{seed}"] = entry
                print(f"{kind + '/' + row:<44} {seed:>4} {entry['R']:>6.3f}  {ci_text(entry['ci95_R']):>16}  "
                      f"{ci_text(entry['pi95_R']):>16}  {'yes' if entry['in_ci'] else 'no':>5}  "
                      f"{'yes' if entry['in_pi'] else 'no':>5}  {cls}")
    entries = list(out["rows"].values())
    out["in_ci"], out["in_pi"], out["n"] = sum(e["in_ci"] for e in entries), sum(e["in_pi"] for e in entries), len(entries)
    print(f"held-out rows inside the 95% interval of the mean: {out['in_ci']} of {out['n']}; inside the 95% prediction "
          f"interval: {out['in_pi']} of {out['n']}")
    write_json(args.held_out / "check.json", out)
    print(f"wrote {args.held_out / 'check.json'}")
    return 0


def ci_text(bounds: list[float]) -> str:
    return f"{bounds[0]:.3f}-{bounds[1]:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
