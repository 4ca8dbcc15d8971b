"""SIGKILL a real `whitebox run` at seeded points, `--resume` it until done, and check nothing was lost or redone.

Each trial starts the tiny treat experiment below (plant, locate, two treatment cells, six revivals)
in a child process and kills it with SIGKILL at 1-3 seeded points, then resumes it until it
finishes. A kill point is the n-th I/O event of the child: a file renamed into place (the kill
lands between writing a temporary and renaming it), a metrics record appended (the kill lands
half-way through the line: a torn write), a directory removed, or a training step ended. Checks:
the final summary.json and metrics.jsonl equal an uninterrupted run's (times aside), no stage
whose completion marker was on disk trains or locates again, and no step is redone beyond the
checkpoint interval. Children are forked from this process after the imports, so a trial costs
the run, not the interpreter start.

    python scripts/fault_injection.py --trials 24 --out docs/reliability/fault_injection.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG: dict[str, Any] = {
    "experiment": "treat",
    "run": {"name": "faults", "seed": 0},
    "model": {"arch": "native", "n_layers": 1, "d_model": 16, "n_heads": 2, "d_mlp": 32},
    "task": {"seq_len": 4, "n_values": 10, "trigger_rate": 0.2, "n_train": 256, "n_eval": 64},
    "training": {"steps": 24, "batch_size": 32, "lr": 1e-2, "warmup_steps": 4, "log_every": 2, "eval_every": 6,
                 "checkpoint_every": 6, "keep_checkpoints": 2, "device": "cpu"},
    "locate": {"n_fit": 100, "n_test": 60, "circuit_pairs": 8, "ig_steps": 0},
    "treat": {"regimes": ["sft", "es"], "conditions": ["present"], "budget": 6000, "eval_points": 2, "n_train": 256,
              "batch_size": 32, "lr": 1e-2, "es": {"population": 4}},
    "revive": {"steps": 12, "eval_every": 4, "lr": 1e-2},
    "tracking": {"wandb_mode": "disabled"},
}
KINDS = ("rename", "append", "rmtree", "step")
MAX_ATTEMPTS = 12
STOP_BOUND = 60.0  # seconds a signalled --workers job may take to stop (a training step, a checkpoint, the exits)


def child(argv: list[str], kill_at: int | None, ledger: Path, log: Path, signum: int, points: tuple[str, ...],
          fsize: int | None, uid: int | None) -> None:
    """In the forked child: count I/O events, signal ourselves at event `kill_at`, record each training step.

    SIGKILL ends the child at the event (mid-write for an append); any other signal (SIGINT) is sent
    at the start of a training step, which then goes on. `fsize` caps the size of any file the child
    writes (the kernel refuses the write, as on a full disk); `uid` runs it as another user.
    """
    import resource

    import torch

    import whitebox.cli.main
    import whitebox.protocol.locate
    import whitebox.runtime.tracking
    import whitebox.training.loop as loop

    torch.set_num_threads(1)
    fd = os.open(os.devnull if fsize is not None else log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - not whatever capture the parent had
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    book = os.open(ledger, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    state: dict[str, Any] = {"events": 0, "stage": "?"}
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    if fsize is not None:  # the cap is lifted only while the harness itself writes
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))
        sys.stderr = LastLines(sys.stderr)
    if uid is not None:
        os.setgid(uid)
        os.setuid(uid)

    def record(line: str) -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, unlimited)
        os.write(book, (line + "\n").encode())
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))

    def event(kind: str, where: str = "") -> bool:
        """Count an event; True when this one is the kill point (and the signal is SIGKILL)."""
        if kind not in points:
            return False
        state["events"] += 1
        if state["events"] != kill_at:
            return False
        record(f"kill {kind} {where}".strip())
        if signum != signal.SIGKILL:
            os.kill(os.getpid(), signum)
            return False
        return True

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    real_replace, real_rmtree, real_append = os.replace, shutil.rmtree, whitebox.runtime.tracking.append_line
    real_indices, real_tqdm, real_locate = loop.batch_indices, loop.tqdm, whitebox.protocol.locate.locate_probes

    def replace(src: Any, dst: Any) -> None:
        if event("rename"):
            die()
        real_replace(src, dst)

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if event("rmtree"):
            die()
        real_rmtree(path, *args, **kwargs)

    def append_line(path: Path, line: str) -> None:
        if event("append"):
            with open(path, "ab") as f:  # a torn write: half the record, no newline
                f.write((line + "\n").encode()[: len(line) // 2])
            die()
        real_append(path, line)

    def batch_indices(step: int, *args: Any) -> Any:
        if event("step", f"{state['stage']} {step}"):
            die()
        record(f"step {state['stage']} {step}")
        return real_indices(step, *args)

    class tqdm(real_tqdm):  # the loop's progress bar names the stage
        def __init__(self, *args: Any, desc: str = "", **kwargs: Any) -> None:
            state["stage"] = desc.replace(" ", "_")
            super().__init__(*args, desc=desc, **{**kwargs, "disable": True})

    def locate_probes(*args: Any, **kwargs: Any) -> Any:
        record("locate")
        return real_locate(*args, **kwargs)

    os.replace, shutil.rmtree, whitebox.runtime.tracking.append_line = replace, rmtree, append_line
    loop.batch_indices, loop.tqdm, whitebox.protocol.locate.locate_probes = batch_indices, tqdm, locate_probes
    try:
        code = whitebox.cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException as err:  # noqa: BLE001 - what escaped the CLI is a finding; name it in the ledger
        import traceback

        traceback.print_exc()
        record(f"escaped {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        code = 70
    if isinstance(sys.stderr, LastLines):
        record(f"stderr {sys.stderr.last}")
    record(f"events {state['events']}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class LastLines:
    """stderr that keeps its last non-empty line (the CLI's error), for a child whose log could not be written."""

    def __init__(self, stream: Any):
        self.stream, self.last = stream, ""

    def write(self, text: str) -> int:
        lines = [line for line in text.splitlines() if line.strip()]
        self.last = lines[-1] if lines else self.last
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def attempt(argv: list[str], kill_at: int | None, ledger: Path, log: Path, *, signum: int = signal.SIGKILL,
            points: tuple[str, ...] = KINDS, fsize: int | None = None, uid: int | None = None) -> int:
    """Fork a child running `whitebox <argv>`; its exit code, or -9 when it was killed."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            child(argv, kill_at, ledger, log, signum, points, fsize, uid)
        finally:
            os._exit(70)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def markers(run_dir: Path) -> dict[str, Path]:
    """Per stage name (as the loop's progress bar calls it), the file whose presence says it is finished."""
    out = {"plant": run_dir / "models/planted/model.json", "plant_honest": run_dir / "models/honest/model.json",
           "locate": run_dir / "located.json"}
    for regime in CONFIG["treat"]["regimes"]:
        for condition in CONFIG["treat"]["conditions"]:
            out[f"{regime}-{condition}"] = run_dir / "treat" / f"{regime}-{condition}" / "result.json"
    for name in ["start", "fresh", "honest", *(f"{r}.{c}" for r in CONFIG["treat"]["regimes"] for c in CONFIG["treat"]["conditions"])]:
        out[f"revive_{name}"] = run_dir / "revive" / name / "result.json"
    return out


def read_ledger(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def records(run_dir: Path) -> list[str]:
    """metrics.jsonl without its wall-clock times; a line that does not parse is kept as text (and differs)."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            out.append(json.dumps({k: v for k, v in json.loads(line).items() if k != "time"}))  # NaN equals NaN
        except json.JSONDecodeError:
            out.append(f"unparsable: {line}")
    return out


def reference(work: Path, config: Path) -> dict[str, Any]:
    """The uninterrupted run: its summary, records, steps per stage and event count."""
    run_dir, ledger = work / "reference", work / "reference.ledger"
    code = attempt(["run", str(config), "--out", str(run_dir)], None, ledger, work / "reference.log")
    if code != 0:
        raise SystemExit(f"the uninterrupted run failed (exit {code}); see {work / 'reference.log'}")
    lines = read_ledger(ledger)
    steps: dict[str, int] = {}
    for line in lines:
        if line.startswith("step "):
            steps[line.split()[1]] = steps.get(line.split()[1], 0) + 1
    return {"summary": json.loads((run_dir / "summary.json").read_text()), "records": records(run_dir),
            "steps": steps, "events": int(lines[-1].split()[1]),
            "largest_file": max(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())}


def checkpoint_dir(run_dir: Path, stage: str) -> Path:
    """Where the loop stage named `stage` (as in the ledger) keeps its checkpoints."""
    if stage.startswith("plant"):
        return run_dir / "checkpoints" / stage
    if stage.startswith("revive_"):
        return run_dir / "revive" / stage.removeprefix("revive_") / "checkpoints"
    return run_dir / "treat" / stage / "checkpoints"


def intact(run_dir: Path) -> list[str]:
    """Problems with the files a failed attempt left: every JSON parses, every record parses, every checkpoint hash holds."""
    from whitebox.runtime.artifacts import ArtifactError, read_json, sha256_file
    from whitebox.training.checkpoints import list_checkpoints

    problems = []
    for path in run_dir.rglob("*.json"):
        try:
            read_json(path)
        except ArtifactError as err:
            problems.append(str(err))
    for line in (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").is_file() else []:
        try:
            json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"metrics.jsonl: a cut line {line[:40]!r}")
    for done in {c for path in run_dir.rglob("step_*") for c in list_checkpoints(path.parent)}:
        meta = read_json(done / "checkpoint.json")
        problems += [f"{done / n}: hash differs" for n, h in meta["sha256"].items() if sha256_file(done / n) != h]
    return problems


def trial(index: int, seed: int, work: Path, config: Path, ref: dict[str, Any], fault: str = "sigkill") -> dict[str, Any]:
    """One run hit by `fault` at seeded points, then resumed to the end; what happened and what broke.

    sigkill: 1-3 SIGKILLs at I/O events; sigint: one Ctrl-C at a training step (exit 130, a checkpoint
    of the step); disk_full: every write past a seeded file size refused (exit 1, one line, files intact).
    """
    rng = random.Random(seed * 1_000_003 + index + {"sigkill": 0, "sigint": 10_000, "disk_full": 20_000}[fault])
    if fault == "sigkill":
        faults = [rng.randint(1, ref["events"]) for _ in range(rng.randint(1, 3))]
    elif fault == "sigint":
        faults = [rng.randint(1, sum(ref["steps"].values()))]
    else:
        faults = [int(math.exp(rng.uniform(math.log(200), math.log(ref["largest_file"]))))]
    name = f"{fault}{index:03d}"
    run_dir, ledger, log = work / name, work / f"{name}.ledger", work / f"{name}.log"
    problems: list[str] = []
    delivered, kinds, attempts = 0, [], 0
    while attempts < MAX_ATTEMPTS:
        fresh = not (run_dir / "config.yaml").is_file()
        argv = ["run", str(config), "--out", str(run_dir)] if fresh else ["run", "--resume", str(run_dir)]
        finished = {stage: path.stat().st_mtime_ns for stage, path in markers(run_dir).items() if path.is_file()}
        start = len(read_ledger(ledger))
        at = faults[delivered] if delivered < len(faults) else None
        if at is None:
            code = attempt(argv, None, ledger, log)
        elif fault == "sigkill":
            code = attempt(argv, at, ledger, log)
        elif fault == "sigint":
            code = attempt(argv, at, ledger, log, signum=signal.SIGINT, points=("step",))
        else:
            code = attempt(argv, None, ledger, log, fsize=at)
        attempts += 1
        new = read_ledger(ledger)[start:]
        for words in (line.split() for line in new):
            stage = words[1] if words[0] == "step" else "locate" if words[0] == "locate" else None
            if stage in finished:
                problems.append(f"attempt {attempts}: finished stage {stage} ran again")
        for stage, mtime in finished.items():
            if markers(run_dir)[stage].stat().st_mtime_ns != mtime:
                problems.append(f"attempt {attempts}: finished stage {stage}'s marker was rewritten")
        if at is not None:  # delivered, or beyond this (shorter, resumed) attempt's events
            delivered += 1
        hits = [line.split() for line in new if line.startswith("kill ")]
        kinds += [words[1] for words in hits]
        if fault == "sigint" and hits:
            stage, step = hits[0][2], int(hits[0][3])
            from whitebox.training.checkpoints import list_checkpoints

            newest = list_checkpoints(checkpoint_dir(run_dir, stage))
            if code != 130 or not newest or newest[-1].name != f"step_{step + 1:07d}":
                problems.append(f"Ctrl-C at {stage} step {step + 1}: exit {code}, newest checkpoint "
                                f"{newest[-1].name if newest else None}")
            continue
        if fault == "disk_full" and at is not None and code != 0:
            last = next((line[7:] for line in reversed(new) if line.startswith("stderr ")), "")
            if code != 1 or not last.startswith("whitebox: error: ") or "cannot write" not in last:
                problems.append(f"a refused write ended with exit {code} and {last!r}")
            kinds.append("write_refused")
            problems += intact(run_dir)
            continue
        if code == -signal.SIGKILL:
            continue
        if code != 0:
            problems.append(f"attempt {attempts}: exit code {code} (see {log})")
        break
    else:
        problems.append(f"not finished after {MAX_ATTEMPTS} attempts")
    steps: dict[str, int] = {}
    for line in read_ledger(ledger):
        if line.startswith("step "):
            steps[line.split()[1]] = steps.get(line.split()[1], 0) + 1
    redone = sum(steps.get(s, 0) - n for s, n in ref["steps"].items())
    more, lost, extra = compare(run_dir, ref)
    problems += more
    return {"trial": name, "fault": fault, "fault_points": faults, "faults_delivered": len(kinds), "faulted_at": kinds,
            "attempts": attempts, "steps_redone": redone, "records_lost": lost, "records_extra": extra,
            "survived": not problems, "problems": problems}


def spawn(argv: list[str], ledger: Path, log: Path) -> int:
    """Fork a child running `whitebox <argv>` (no fault) and return its pid at once, for writers running together."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            child(argv, None, ledger, log, signal.SIGKILL, KINDS, None, None)
        finally:
            os._exit(70)
    return pid


def reap(pid: int, timeout: float = 600) -> int:
    """The exit code of forked child `pid` (negative: the signal that killed it); SIGKILLed after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()] if log.is_file() else []
    return next((line for line in reversed(lines) if line.startswith("whitebox:")), "")


def compare(run_dir: Path, ref: dict[str, Any]) -> tuple[list[str], int, int]:
    """Problems of a finished run against the uninterrupted one: (problems, records lost, records extra)."""
    if not (run_dir / "summary.json").is_file():
        return ["no summary.json"], len(ref["records"]), 0
    from whitebox.runtime.records import results

    summary, expected = results(json.loads((run_dir / "summary.json").read_text())), results(ref["summary"])
    differ = sorted(k for k in set(summary) | set(expected)  # compared as JSON text: NaN equals NaN
                    if json.dumps(summary.get(k)) != json.dumps(expected.get(k)))
    got = records(run_dir)
    lost = sum(1 for r in ref["records"] if r not in got)
    extra = len(got) - len(ref["records"]) + lost
    problems = [f"summary differs from the uninterrupted run at {', '.join(differ[:5])}"] if differ else []
    if got != ref["records"]:
        problems.append(f"metrics.jsonl differs: {lost} records lost, {extra} extra or duplicated")
    return problems, lost, extra


def writers_trial(index: int, seed: int, work: Path, config: Path, ref: dict[str, Any]) -> dict[str, Any]:
    """Two writers on one run directory at once: two `run --out D` (seeded head start), or a `--resume D` sent
    while the run is going. The second must exit 2 with the lock's one line; the run ends equal to the reference."""
    rng = random.Random(seed * 1_000_003 + index + 30_000)
    kind, delay = rng.choice(["two runs", "run and resume"]), round(rng.uniform(0, 1.5), 2)
    name = f"writers{index:03d}"
    run_dir, problems = work / name, []
    first = spawn(["run", str(config), "--out", str(run_dir)], work / f"{name}.ledger", work / f"{name}-a.log")
    deadline = time.monotonic() + 60
    while kind == "run and resume" and not (run_dir / "config.yaml").is_file() and time.monotonic() < deadline:
        time.sleep(0.02)  # the resume is sent once there is a run to resume
    time.sleep(delay)
    second_argv = ["run", "--resume", str(run_dir)] if kind == "run and resume" else ["run", str(config), "--out", str(run_dir)]
    second = spawn(second_argv, work / f"{name}-b.ledger", work / f"{name}-b.log")
    codes = [reap(first), reap(second)]
    if sorted(codes) != [0, 2]:
        problems.append(f"{kind}: exit codes {codes}, not one run and one refusal")
    refused = last_error(work / f"{name}-{'ab'[codes.index(2)]}.log") if 2 in codes else ""
    if 2 in codes and "is being run by process" not in refused and "already exists and holds a run" not in refused:
        problems.append(f"{kind}: the second writer said {refused!r}")
    more, lost, extra = compare(run_dir, ref)
    problems += more
    return {"trial": name, "fault": "writers", "fault_points": [kind, delay], "faults_delivered": 1, "faulted_at": [kind],
            "attempts": 2, "steps_redone": 0, "records_lost": lost, "records_extra": extra, "both_ran": codes == [0, 0],
            "survived": not problems, "problems": problems}


def grid_config(work: Path) -> Path:
    """The tiny treat experiment as a two-cell suppression grid, for trials of `--workers 2`."""
    path = work / "grid.yaml"
    if not path.is_file():
        path.write_text(yaml.safe_dump({**CONFIG, "experiment": "suppression", "run": {"name": "grid", "seed": 0},
                                        "grid": {"seeds": [0], "triggers": ["token", "computed"]}}))
    return path


def alive(pid: int) -> bool:
    """Running (a zombie left for an init that does not reap counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def parent_signal_trial(index: int, seed: int, work: Path, config: Path, ref: dict[str, Any]) -> dict[str, Any]:
    """A signal to the `--workers 2` parent alone while both cells train: SIGTERM or SIGINT (exit 130 within
    STOP_BOUND s, no worker left) or SIGKILL (no worker left within STOP_BOUND s); then at once
    `--resume --workers 2`, which must complete with every cell equal to the uninterrupted grid's."""
    rng = random.Random(seed * 1_000_003 + index + 40_000)
    signum = rng.choice([signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
    name = f"parent{index:03d}"
    run_dir, problems = work / name, []
    parent = spawn(["run", str(grid_config(work)), "--out", str(run_dir), "--workers", "2"], work / f"{name}.ledger",
                   work / f"{name}.log")
    pids = workers_training(run_dir, parent)
    sent = time.monotonic()
    os.kill(parent, signum)
    code = reap(parent, timeout=STOP_BOUND * 4)
    deadline = sent + STOP_BOUND
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    took, orphans = round(time.monotonic() - sent, 1), sum(alive(pid) for pid in pids)
    if orphans:
        problems.append(f"{signal.Signals(signum).name}: {orphans} workers still running {STOP_BOUND} s later")
    if signum != signal.SIGKILL and (code != 130 or "interrupted; continue with" not in last_error(work / f"{name}.log")):
        problems.append(f"{signal.Signals(signum).name} to the parent: exit {code}, {last_error(work / f'{name}.log')!r}")
    for pid in pids:  # what is still running is not ours to leave behind
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    resumed = reap(spawn(["run", "--resume", str(run_dir), "--workers", "2"], work / f"{name}.ledger", work / f"{name}.log"))
    if resumed != 0:  # at once, as a user would: the workers are gone, so nothing may hold the run
        problems.append(f"the immediate --resume --workers 2: exit {resumed}: {last_error(work / f'{name}.log')!r}")
    lost = 0
    for label, cell in grid_reference(work).items():
        more, missing, _ = compare(run_dir / "cells" / label, cell)
        problems += [f"cell {label}: {p}" for p in more]
        lost += missing
    return {"trial": name, "fault": "parent_signal", "fault_points": [signal.Signals(signum).name],
            "faults_delivered": 1, "faulted_at": [signal.Signals(signum).name], "attempts": 2,
            "steps_redone": 0, "records_lost": lost, "seconds_to_stop": took, "orphans": orphans,
            "survived": not problems, "problems": problems}


def workers_training(run_dir: Path, parent: int, timeout: float = 600) -> list[int]:
    """The pids of both workers once both cells have saved a plant checkpoint."""
    deadline = time.monotonic() + timeout
    locks = [run_dir / "cells" / f"{t}-s0.lock" for t in ("token", "computed")]
    while time.monotonic() < deadline:
        started = all(list((run_dir / "cells" / lock.stem / "checkpoints" / "plant").glob("step_*")) for lock in locks)
        if started and all(lock.is_file() for lock in locks):
            try:
                return [json.loads(lock.read_text())["pid"] for lock in locks]
            except (OSError, ValueError):
                pass
        if os.waitpid(parent, os.WNOHANG)[0]:
            raise SystemExit(f"the --workers parent exited before its cells trained; see {run_dir}.log")
        time.sleep(0.1)
    raise SystemExit(f"the cells of {run_dir} did not start within {timeout} s")


def grid_reference(work: Path) -> dict[str, dict[str, Any]]:
    """Each cell's summary and records in an uninterrupted `--workers 2` run of the grid (made once)."""
    run_dir = work / "grid-reference"
    if not (run_dir / "summary.json").is_file():
        code = reap(spawn(["run", str(grid_config(work)), "--out", str(run_dir), "--workers", "2"],
                          work / "grid-reference.ledger", work / "grid-reference.log"))
        if code != 0:
            raise SystemExit(f"the uninterrupted grid run failed (exit {code}); see {work / 'grid-reference.log'}")
    return {cell.name: {"summary": json.loads((cell / "summary.json").read_text()), "records": records(cell)}
            for cell in sorted((run_dir / "cells").iterdir()) if cell.is_dir()}


EXTRA_TRIALS = {"writers": writers_trial, "parent_signal": parent_signal_trial}  # faults with a trial of their own


TAMPER = ("config_edit", "foreign_checkpoint", "checkpoint_edit")  # what is done to a killed run before its resume
EDITABLE = {"run.seed": lambda v: v + 1, "task.n_train": lambda v: v // 2, "model.d_model": lambda v: v * 2,
            "training.steps": lambda v: v + 6, "treat.budget": lambda v: v + 1000, "locate.n_fit": lambda v: v - 10,
            "revive.steps": lambda v: v + 4, "training.lr": lambda v: v / 2, "treat.lr": lambda v: v * 2}


def tamper_trial(index: int, seed: int, work: Path, config: Path, ref: dict[str, Any], fault: str) -> dict[str, Any]:
    """A run SIGKILLed at a seeded step, then tampered with: its config.yaml edited, another run's checkpoint copied
    into the interrupted stage, or that stage's checkpoint.json edited. --resume must refuse in one line naming what
    changed, with every file left as it was; once the change is undone, the run resumes to the uninterrupted result."""
    rng = random.Random(seed * 1_000_003 + index + 30_000 + 1_000 * TAMPER.index(fault))
    name = f"{fault}{index:03d}"
    run_dir, ledger, log = work / name, work / f"{name}.ledger", work / f"{name}.log"
    argv = ["run", str(config), "--out", str(run_dir)]
    problems, kinds, attempts, at = [], [], 0, rng.randint(2, sum(ref["steps"].values()) - 20)
    while attempts < MAX_ATTEMPTS:  # kill until the interrupted stage has a checkpoint to tamper with
        attempts += 1
        if attempt(argv, at, ledger, log, points=("step",)) != -signal.SIGKILL:
            return _untampered(name, fault, at, attempts, f"attempt {attempts}: not killed at step {at} (see {log})")
        argv, at = ["run", "--resume", str(run_dir)], rng.randint(3, 12) * attempts  # further each time
        stage = next(line.split()[2] for line in reversed(read_ledger(ledger)) if line.startswith("kill "))
        kept = sorted(checkpoint_dir(run_dir, stage).glob("step_*/checkpoint.json"))
        if kept or fault != "checkpoint_edit":
            break
    else:
        return _untampered(name, fault, at, attempts, f"no checkpoint in the stage after {MAX_ATTEMPTS} attempts")
    expect, undo = tamper(run_dir, work / "reference", stage, fault, rng)
    kinds.append(f"{fault}:{expect}")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and "plots" not in p.parts
              and p.name != "run.lock"}  # the killed run's stale lock is taken over and let go
    seen = log.stat().st_size
    code = attempt(["run", "--resume", str(run_dir)], None, ledger, log)
    attempts += 1
    output = log.read_bytes()[seen:].decode(errors="replace")
    said = [line for line in output.splitlines() if line.startswith("whitebox: error")]
    if code != 2 or len(said) != 1 or expect not in said[0] or "Traceback" in output:
        problems.append(f"tampered resume: exit {code}, said {said[-3:]!r}, expected one line naming {expect!r}")
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and "plots" not in p.parts
             and p.name != "run.lock"}
    changed = sorted(str(p) for p in set(before) | set(after) if before.get(p) != after.get(p))
    if changed:
        problems.append(f"the refused resume changed {', '.join(changed[:3])}")
    undo()
    code = attempt(["run", "--resume", str(run_dir)], None, ledger, log)
    attempts += 1
    if code != 0:
        problems.append(f"resume after undoing the change: exit {code} (see {log})")
    more, lost, extra = compare(run_dir, ref)
    problems += more
    return {"trial": name, "fault": fault, "fault_points": [at], "faults_delivered": len(kinds), "faulted_at": kinds,
            "attempts": attempts, "steps_redone": 0, "records_lost": lost, "records_extra": extra,
            "survived": not problems, "problems": problems}


def _untampered(name: str, fault: str, at: int, attempts: int, problem: str) -> dict[str, Any]:
    """The result of a tamper trial that never got to tamper."""
    return {"trial": name, "fault": fault, "fault_points": [at], "faults_delivered": 0, "faulted_at": [],
            "attempts": attempts, "steps_redone": 0, "records_lost": 0, "records_extra": 0, "survived": False, "problems": [problem]}


def tamper(run_dir: Path, reference_dir: Path, stage: str, fault: str, rng: random.Random) -> tuple[str, Any]:
    """Apply `fault` to a run killed in `stage`: (what the refusal must name, a function that undoes it)."""
    stage_dir = checkpoint_dir(run_dir, stage)
    if fault == "config_edit":
        path = run_dir / "config.yaml"
        original = path.read_bytes()
        data = yaml.safe_load(original)
        key = rng.choice(sorted(EDITABLE))
        section, field = key.split(".")
        data[section][field] = EDITABLE[key](data[section][field])
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return f"{key} is", lambda: path.write_bytes(original)
    if fault == "foreign_checkpoint":
        theirs = sorted(checkpoint_dir(reference_dir, stage).glob("step_*"))
        target = stage_dir / theirs[-1].name
        backup = target.with_name(f".{target.name}.mine")
        if target.exists():
            os.replace(target, backup)
        shutil.copytree(theirs[-1], target)  # the uninterrupted run's: same config, another run

        def undo() -> None:
            shutil.rmtree(target)
            if backup.exists():
                os.replace(backup, target)
        return "field 'owner'", undo
    newest = max(stage_dir.glob("step_*/checkpoint.json"), key=lambda p: int(p.parent.name.removeprefix("step_")))
    original = newest.read_bytes()
    meta = json.loads(original)
    field = rng.choice(["step", "spent"])
    if field == "step":
        meta["step"] = rng.choice([10**20, meta["step"] + 6, 0 if meta["step"] else 1])
    else:
        meta["spent"] = {k: v * 2 + 1 for k, v in meta["spent"].items()}
    newest.write_text(json.dumps(meta))
    return newest.parent.name, lambda: newest.write_bytes(original)


def warm_up() -> None:
    """Import what a run imports and draw one figure here, once, so that forked children start warm."""
    import io
    from importlib import import_module

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name in ("whitebox.runner", "whitebox.experiments.treat", "whitebox.protocol.measures", "whitebox.attribution", "whitebox.report.plots",
                 "whitebox.report.suppression", "whitebox.probes", "whitebox.probes.mahalanobis"):
        import_module(name)
    fig, ax = plt.subplots()
    ax.plot([0, 1], label="x")
    ax.legend()
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)


def run_trials(trials: int, seed: int, work: Path, sigint: int = 0, disk_full: int = 0, tampered: int = 0,
               writers: int = 0, parent_signal: int = 0) -> dict[str, Any]:
    """Reference run plus killed, interrupted, disk-full, tampered, concurrently written and parent-signalled runs
    under `work`; the figures for docs/RELIABILITY.md."""
    started = time.perf_counter()
    warm_up()
    config = work / "faults.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    ref = reference(work, config)
    plan = [("sigkill", trials), ("sigint", sigint), ("disk_full", disk_full), *((fault, tampered) for fault in TAMPER)]
    results = [(tamper_trial if fault in TAMPER else trial)(i, seed, work, config, ref, fault) for fault, n in plan
               for i in range(n)]
    extra = [("writers", writers), ("parent_signal", parent_signal)]
    results += [EXTRA_TRIALS[fault](i, seed, work, config, ref) for fault, n in extra for i in range(n)]
    figures: dict[str, Any] = {
        "test": "faults at seeded points of `whitebox run` (tiny treat experiment), then --resume until complete",
        "seed": seed, "events_per_run": ref["events"], "steps_per_run": sum(ref["steps"].values()),
    }
    for fault, n in plan:
        ours = [r for r in results if r["fault"] == fault]
        kinds = [k for r in ours for k in r["faulted_at"]]
        figures[fault] = {
            "trials": n, "survived": sum(r["survived"] for r in ours), "faults": len(kinds),
            "faults_by_point": {k: kinds.count(k) for k in sorted(set(kinds))},
            "steps_redone": sum(r["steps_redone"] for r in ours),
            "finished_stages_recomputed": sum(1 for r in ours for p in r["problems"] if "ran again" in p or "rewritten" in p),
            "records_lost": sum(r["records_lost"] for r in ours),
            "summaries_differing": sum(1 for r in ours for p in r["problems"] if p.startswith("summary differs")),
        }
    for fault, n in extra:
        ours = [r for r in results if r["fault"] == fault]
        figures[fault] = {"trials": n, "survived": sum(r["survived"] for r in ours),
                          "faults": sum(r["faults_delivered"] for r in ours),
                          "faults_by_point": {k: sum(k in r["faulted_at"] for r in ours) for k in
                                              sorted({k for r in ours for k in r["faulted_at"]})},
                          "steps_redone": 0, "finished_stages_recomputed": 0,
                          "records_lost": sum(r["records_lost"] for r in ours),
                          "summaries_differing": sum(1 for r in ours for p in r["problems"] if "summary differs" in p),
                          "both_ran": sum(bool(r.get("both_ran")) for r in ours),
                          "orphans": sum(r.get("orphans", 0) for r in ours),
                          "seconds_to_stop_max": max((r["seconds_to_stop"] for r in ours if "seconds_to_stop" in r), default=None)}
    figures["seconds"] = round(time.perf_counter() - started, 1)
    figures["results"] = results
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="trials killed by 1-3 SIGKILLs")
    parser.add_argument("--sigint", type=int, default=6, help="trials interrupted by one Ctrl-C")
    parser.add_argument("--disk-full", type=int, default=6, help="trials whose writes are refused past a file size")
    parser.add_argument("--tampered", type=int, default=4,
                        help="trials per tampering of a killed run (config edited, foreign checkpoint, checkpoint edited)")
    parser.add_argument("--writers", type=int, default=4, help="trials with a second writer on the run directory")
    parser.add_argument("--parent-signal", type=int, default=3, help="trials signalling the --workers parent alone")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON file for the figures (default: print only)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="whitebox-faults-") as tmp:
        figures = run_trials(args.trials, args.seed, Path(tmp), args.sigint, args.disk_full, args.tampered, args.writers,
                             args.parent_signal)
    text = json.dumps(figures, indent=2) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    summary = {k: v for k, v in figures.items() if k != "results"}
    print(json.dumps(summary, indent=2))
    failed = [r for r in figures["results"] if not r["survived"]]
    for r in failed:
        print(f"trial {r['trial']} (faults at {r['fault_points']}): {'; '.join(r['problems'])}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
