"""`whitebox` on the command line: a thin layer over whitebox.run / whitebox.resume."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from whitebox import __version__
from whitebox.runtime import signals

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, signals.EXIT_INTERRUPTED
SUMMARY_LINES = 30  # a longer summary (a treatment run has hundreds of keys) is cut; summary.json has it all


def build_parser() -> argparse.ArgumentParser:
    from whitebox.cli.probe import add_commands as add_probe_commands

    parser = argparse.ArgumentParser(
        prog="whitebox",
        description="Plant hidden behaviours in small transformers, locate them, and test whether training removes them.",
    )
    parser.add_argument("--version", action="version", version=f"whitebox {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run an experiment from a YAML config, or resume one",
        description="Run an experiment from CONFIG into runs/<run.name> (or --out DIR), or continue one with --resume.",
    )
    run.add_argument("config", nargs="?", metavar="CONFIG", help="YAML config, e.g. configs/quickstart.yaml")
    _add_set_and_out(run)
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    run.add_argument(
        "--workers", type=int, default=1, metavar="K",
        help="run a grid experiment's cells in K processes, each with cores/K threads (default 1: in this process)",
    )
    report = commands.add_parser(
        "report",
        help="rebuild a suppression or treat run's report.md and plots from its files, without training",
        description="Rebuild RUN_DIR/report.md and RUN_DIR/plots from the finished cells' summaries and metrics.jsonl; "
        "a suppression run still going or interrupted is reported as partial, over the cells that finished.",
    )
    report.add_argument("run_dir", metavar="RUN_DIR", help="a suppression or treat run directory, e.g. runs/suppression")
    sweep = commands.add_parser(
        "sweep",
        help="write a W&B sweep that runs a grid experiment's cells, one per agent run",
        description="Create the run directory of a grid experiment (e.g. configs/suppression.yaml) with its config and "
        "sweep.yaml (method grid, one parameter: the cell), and print the wandb sweep / wandb agent commands.",
    )
    sweep.add_argument("config", metavar="CONFIG", help="YAML config of a grid experiment, e.g. configs/suppression.yaml")
    _add_set_and_out(sweep)
    cell = commands.add_parser(
        "cell",
        help="run (or resume, or read back) one cell of a grid run; what sweep agents and --workers call",
        description="Run one cell of the grid run in RUN_DIR into RUN_DIR/cells/<cell>, under a lock so that no other "
        "process runs it at the same time.",
    )
    cell.add_argument("run_dir", metavar="RUN_DIR", help="a grid run directory, e.g. one written by `whitebox sweep`")
    cell.add_argument("--cell", required=True, metavar="LABEL", help="the cell, <trigger>-s<seed>, e.g. token-s0")
    add_probe_commands(commands)
    return parser


def _add_set_and_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value by dotted key, e.g. --set training.lr=3e-4 (repeatable)",
    )
    parser.add_argument("--out", metavar="DIR", help="run directory (default: <run.out_dir>/<run.name>)")


def main(argv: Sequence[str] | None = None) -> int:
    with signals.starting():  # first: a Ctrl-C or SIGTERM while pydantic and torch load is one line and exit 130
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    from whitebox.config import ConfigError  # pydantic: after the signal handlers are in place

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        commands = {"report": _report, "sweep": _sweep, "cell": _cell, "probe": _probe}
        return commands[args.command](args) if args.command in commands else _run(args, parser)
    except ConfigError as err:
        print(f"whitebox: error: {err}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.resume and (args.config or args.overrides or args.out):
        parser.error("--resume RUN_DIR takes no CONFIG, --set or --out: the run's saved config is used")
    if not args.resume and not args.config:
        parser.error("give a CONFIG to run (e.g. configs/quickstart.yaml) or --resume RUN_DIR")
    from whitebox.config import parse_config, read_yaml

    target, cfg = args.resume or args.out, None
    if args.config:  # fail fast: the file before torch is imported, the keys before the pipelines are
        raw = read_yaml(args.config)
        import whitebox.variants  # noqa: F401  (every registered task, regime and probe kind)

        cfg = parse_config(raw, args.overrides, source=args.config)
    from whitebox.runner import prepare, resume, run
    from whitebox.runtime.rundir import RunDir

    if cfg is not None:
        prepare(cfg, args.workers)
        target = target or str(Path(cfg.run.out_dir) / cfg.run.name)

    workers = f" --workers {args.workers}" if args.workers > 1 else ""
    summary, code = _guarded(
        lambda: resume(args.resume, workers=args.workers) if args.resume else run(cfg, out=args.out, workers=args.workers),
        f"whitebox run --resume {target}{workers}",
        started=lambda: target is not None and RunDir(Path(target)).config.is_file(),
    )
    if summary is None:
        return code
    print(format_summary(summary, limit=SUMMARY_LINES, path=RunDir(Path(target)).summary))
    report = RunDir(Path(target)).report
    if report.is_file():  # the experiment wrote a report: end with its tables
        print(f"\n{report.read_text()}\nreport: {report}")
    return 0


def _guarded(
    call: Callable[[], dict[str, Any]], again: str | None = None, started: Callable[[], bool] = lambda: True
) -> tuple[dict[str, Any] | None, int]:
    """Run a run-like call; an expected failure becomes one line on stderr and an exit code: (summary or None, code).

    `again` is the command that continues the work (None: the same command again); `started()` says whether
    there is anything to continue yet.
    """
    from whitebox.grid.workers import CellFailed
    from whitebox.runtime import distributed
    from whitebox.runtime.artifacts import ArtifactError, WriteFailed
    from whitebox.runtime.locks import LockHeld
    from whitebox.training import TrainingDiverged

    try:
        with signals.working():
            summary = call()
        return (summary if distributed.is_main() else None), 0  # rank 0 prints for everyone
    except WriteFailed as err:
        print(f"whitebox: error: {err}, then run {f'`{again}`' if again and started() else 'the same command again'}",
              file=sys.stderr)
        return None, EXIT_FAILED
    except (ArtifactError, LockHeld) as err:
        print(f"whitebox: error: {err}", file=sys.stderr)
        return None, EXIT_USAGE
    except TrainingDiverged as err:
        print(f"whitebox: training diverged: {err}", file=sys.stderr)
        return None, EXIT_FAILED
    except CellFailed as err:
        print(f"whitebox: {err}", file=sys.stderr)
        return None, EXIT_FAILED
    except KeyboardInterrupt:
        print(f"\nwhitebox: interrupted; {f'continue with `{again}`' if again else 'run the same command again'}",
              file=sys.stderr)
        return None, EXIT_INTERRUPTED
    finally:
        distributed.shutdown()


def _sweep(args: argparse.Namespace) -> int:
    from whitebox.grid.sweep import instructions, write_sweep
    from whitebox.runner import grid_experiment, load_config, new_run_dir, prepare, resolve_config

    cfg = load_config(args.config, args.overrides)
    experiment = prepare(cfg)
    grid_experiment(experiment, "whitebox sweep")
    cfg = resolve_config(cfg)

    def create() -> dict[str, Any]:
        with new_run_dir(cfg, experiment, args.out) as run_dir:
            return {"run_dir": run_dir.root.resolve(), "sweep": write_sweep(cfg, run_dir.root.resolve())}

    made, code = _guarded(create)
    if made is not None:
        print(instructions(cfg, made["run_dir"], made["sweep"]))
    return code


def _cell(args: argparse.Namespace) -> int:
    from whitebox.config import ConfigError
    from whitebox.grid.cells import cell_dir, find_cell, run_cell
    from whitebox.runner import find_experiment, grid_experiment, load_config, run_or_resume
    from whitebox.runtime.rundir import RunDir

    run_dir = Path(args.run_dir)
    if not RunDir(run_dir).config.is_file():
        raise ConfigError(f"{run_dir}: no config.yaml here; `whitebox cell` takes a grid run directory, "
                          "e.g. one written by `whitebox sweep CONFIG`")
    cfg = load_config(RunDir(run_dir).config)
    cell = grid_experiment(find_experiment(cfg.experiment), "whitebox cell")
    trigger, seed = find_cell(cfg, args.cell)
    summary, code = _guarded(lambda: run_cell(cfg, run_dir, trigger, seed, cell, run_or_resume),
                             f"whitebox cell {run_dir} --cell {args.cell}")
    if summary is not None:
        print(format_summary(summary, limit=SUMMARY_LINES, path=RunDir(cell_dir(run_dir, trigger, seed)).summary))
    return code


def _probe(args: argparse.Namespace) -> int:
    from whitebox.cli.probe import run_probe_command

    result, code = _guarded(lambda: run_probe_command(args))
    if result is not None:
        print(format_summary(result))
    return code


def _report(args: argparse.Namespace) -> int:
    from whitebox.runner import EXPERIMENTS, find_experiment, load_config
    from whitebox.runtime.artifacts import ArtifactError
    from whitebox.runtime.locks import writing
    from whitebox.runtime.rundir import RunDir

    run_dir = RunDir(Path(args.run_dir))

    def rebuild() -> dict[str, Any]:
        experiment = find_experiment(load_config(run_dir.config).experiment)
        if experiment.report is None:
            reports = ", ".join(name for name, e in EXPERIMENTS.items() if e.report is not None)
            raise ArtifactError(f"{run_dir.root} holds a {experiment.name!r} run; `whitebox report` rebuilds the report "
                                f"of a {' or '.join(reports.split(', '))} run")
        with writing(run_dir.root):  # a run still writing here rewrites its report itself when it ends
            path, missing = experiment.report(run_dir.root)
        return {"path": path, "missing": missing}

    built, code = _guarded(rebuild, f"whitebox report {run_dir}")
    if built is None:
        return code
    path, missing = built["path"], built["missing"]
    print(path.read_text())
    print(f"report: {path}" + (f" (partial: {len(missing)} cells not finished: {', '.join(missing)})" if missing else ""))
    return 0


def format_summary(summary: dict[str, Any], limit: int | None = None, path: Path | None = None) -> str:
    """The summary as an aligned two-column table; past `limit` rows, a pointer to the file holding the rest."""
    items = list(summary.items())[:limit]
    width = max((len(k) for k, _ in items), default=0)
    rows = [f"  {k:<{width}}  {v:.4f}" if isinstance(v, float) else f"  {k:<{width}}  {v}" for k, v in items]
    if len(items) < len(summary):
        rows.append(f"  ... {len(summary) - len(items)} more in {path or 'summary.json'}")
    return "summary\n" + "\n".join(rows)
