"""Reading a run directory's own records back (summary.json, result files, metrics.jsonl), checked for shape.

A resume or `whitebox report` trusts nothing it reads: a file edited into another shape, cut short
or holding bytes that are not UTF-8 is one ArtifactError naming the file and what to do, never a
traceback later in the code that uses it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from whitebox.runtime.artifacts import ArtifactError, read_json

SCALARS = (str, int, float, bool, type(None))
RESTORE = "restore it from a backup or start the run again in a new directory"
_METRICS_FIX = f"the file was edited or damaged: {RESTORE}"


def read_object(path: Path, fix: str = RESTORE) -> dict[str, Any]:
    """A JSON file that must hold an object; anything else names the file and `fix`."""
    try:
        data = read_json(path)
    except ArtifactError as err:
        raise ArtifactError(f"{err}: {fix}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {_shape(data)}; the file is damaged: {fix}")
    return data


TIMING = "timing."  # summary keys of wall time (whitebox.runtime.context): they differ run to run, results do not


def results(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary without its timing.* keys: what two runs of the same config must agree on."""
    return {k: v for k, v in summary.items() if not k.startswith(TIMING)}


def read_summary(path: Path) -> dict[str, Any]:
    """summary.json: an object of flat keys to numbers, strings, booleans or null; the treat.* keys reports use, numbers."""
    summary = read_flat(path, _summary_fix(path))
    if "status" in summary and not isinstance(summary["status"], str):
        raise ArtifactError(f"{path}: key 'status' must be a string, got {summary['status']!r}; {_summary_fix(path)}")
    bad = next((k for k, v in summary.items() if k.startswith("treat.") and type(v) not in (int, float)), None)
    if bad is not None:  # the reports compute with these
        raise ArtifactError(f"{path}: key {bad!r} must be a number, got {summary[bad]!r}; {_summary_fix(path)}")
    return summary


def read_step_summary(path: Path, step: str) -> dict[str, Any]:
    """A step's saved summary keys (located.json): `step`.<measure> only, at least one."""
    fix = f"delete it and resume, and the {step} step runs again"
    summary = read_flat(path, fix)
    bad = next((k for k in summary if not k.startswith(f"{step}.")), None)
    if not summary or bad is not None:
        what = "no results" if not summary else f"key {bad!r}, not a {step}.* result"
        raise ArtifactError(f"{path}: holds {what}; the file is damaged: {fix}")
    return summary


def read_flat(path: Path, fix: str) -> dict[str, Any]:
    """An object of flat keys to numbers, strings, booleans or null; anything else names the key and `fix`."""
    data = read_object(path, fix)
    bad = next((k for k, v in data.items() if not isinstance(v, SCALARS)), None)
    if bad is not None:
        raise ArtifactError(f"{path}: key {bad!r} holds {_shape(data[bad])}, not a number or a string; the file is "
                            f"damaged: {fix}")
    return data


def read_numbers(path: Path, keys: Iterable[str] = (), field: str | None = None) -> dict[str, Any]:
    """A stage's result file whose values (or whose `field`) are numbers, with every key in `keys` present."""
    fix = f"delete it and resume, and that stage runs again ({RESTORE.split(' or ')[0]} to keep it)"
    data = read_object(path, fix)
    numbers = data if field is None else data.get(field)
    where = "" if field is None else f"field {field!r}: "
    if not isinstance(numbers, dict):
        raise ArtifactError(f"{path}: {where}expected an object of numbers, got {_shape(numbers)}; {fix}")
    missing = [k for k in keys if k not in numbers] or ([] if numbers else ["any measure"])
    bad = next((k for k, v in numbers.items() if type(v) not in (int, float)), None)
    if missing or bad is not None:
        problem = f"missing {', '.join(missing)}" if missing else f"{bad!r} is {numbers[bad]!r}, not a number"
        raise ArtifactError(f"{path}: {where}{problem}; the file is damaged: {fix}")
    return data


def read_records(path: Path, stage: str | None = None) -> list[dict[str, Any]]:
    """metrics.jsonl's records (of `stage`), every line checked; a last line cut short by a kill is left out."""
    return [record for _, record in read_lines(path) if stage is None or record["stage"] == stage]


def stage_digest(path: Path, stage: str, through: int | None = None) -> dict[str, Any]:
    """How many records `stage` has in metrics.jsonl (up to step `through`) and their hash: kept at each checkpoint
    and when the stage finishes, checked on resume."""
    lines = [line for line, record in read_lines(path) if record["stage"] == stage
             and (through is None or record["step"] <= through)] if path.is_file() else []
    return {"records": len(lines), "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest(), "through": through}


def check_digests(path: Path, digests: dict[str, Any], index: Path) -> None:
    """Every stage's records, up to its newest checkpoint or all of a finished one, are still in metrics.jsonl as they
    were written; else one line saying which."""
    for stage, kept in digests.items():
        now = stage_digest(path, stage, kept.get("through"))
        if now == {"through": None, **kept}:
            continue
        lost = kept["records"] - now["records"]
        what = f"{lost} of its {kept['records']} records are missing" if lost > 0 else "its records were edited"
        which = "finished stage" if kept.get("through") is None else f"up to step {kept['through']}, stage"
        raise ArtifactError(f"{path}: {which} {stage!r}: {what} (recorded in {index.name}); the file was cut "
                            f"or edited: restore it from a backup, or start the run again in a new directory")


def read_digests(index: Path) -> dict[str, Any]:
    """The stages' record digests ({} before the first checkpoint)."""
    if not index.is_file():
        return {}
    data = read_object(index, f"delete it to resume without checking {index.parent / 'metrics.jsonl'}")
    for stage, kept in data.items():
        if not (isinstance(kept, dict) and type(kept.get("records")) is int and isinstance(kept.get("sha256"), str)
                and (kept.get("through") is None or type(kept["through"]) is int)):
            raise ArtifactError(f"{index}: stage {stage!r} has no record count and hash; the file is damaged: delete it "
                                "to resume without checking metrics.jsonl")
    return data


def read_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, record) for every complete line of metrics.jsonl, or one ArtifactError naming the bad line."""
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found; the run's metrics are gone: restore it from a backup, or start "
                            "the run again in a new directory")
    data = path.read_bytes()
    try:
        text = data.decode()
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ArtifactError(f"{path}: line {line} holds bytes that are not UTF-8; {_METRICS_FIX}") from None
    lines = text.split("\n")[:-1]  # after the last newline: nothing, or a record cut short by a kill (dropped on start)
    if lines and lines[-1].startswith("{") and not _parses(lines[-1]):
        lines.pop()  # the last record, cut short by a kill in a whitebox older than drop_cut_line
    return [(line, _record(path, number, line)) for number, line in enumerate(lines, 1)]


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _record(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        raise ArtifactError(f"{path}: line {number} is not a JSON record ({line[:40]!r}); {_METRICS_FIX}")
    stage, step = record.get("stage"), record.get("step")
    if not isinstance(stage, str) or type(step) is not int or step < 0:
        raise ArtifactError(f"{path}: line {number} needs a 'stage' name and a whole 'step' >= 0, got stage {stage!r}, "
                            f"step {step!r}; {_METRICS_FIX}")
    bad = next((k for k, v in record.items() if k not in ("stage", "step") and type(v) not in (int, float)), None)
    if bad is not None:
        raise ArtifactError(f"{path}: line {number}: {bad!r} is {record.get(bad)!r}, not a number; {_METRICS_FIX}")
    return record



def _summary_fix(path: Path) -> str:
    return f"delete it and run `whitebox run --resume {path.parent}` to rebuild it from the finished stages"


def _shape(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {json.dumps(value)[:40]}"
