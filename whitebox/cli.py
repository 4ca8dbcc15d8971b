"""`whitebox` on the command line: a thin layer over whitebox.run / whitebox.resume."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from whitebox import __version__
from whitebox.config import ConfigError, load_config
from whitebox.probe_cli import add_commands as add_probe_commands

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
SUMMARY_LINES = 30  # a longer summary (a treatment run has hundreds of keys) is cut; summary.json has it all


def build_parser() -> argparse.ArgumentParser:
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
    run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value by dotted key, e.g. --set training.lr=3e-4 (repeatable)",
    )
    run.add_argument("--out", metavar="DIR", help="run directory (default: <run.out_dir>/<run.name>)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    report = commands.add_parser(
        "report",
        help="rebuild a suppression or treat run's report.md and plots from its files, without training",
        description="Rebuild RUN_DIR/report.md and RUN_DIR/plots from the finished cells' summaries and metrics.jsonl; "
        "a suppression run still going or interrupted is reported as partial, over the cells that finished.",
    )
    report.add_argument("run_dir", metavar="RUN_DIR", help="a suppression or treat run directory, e.g. runs/suppression")
    add_probe_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            return _report(args)
        return _probe(args) if args.command == "probe" else _run(args, parser)
    except ConfigError as err:
        print(f"whitebox: error: {err}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.resume and (args.config or args.overrides or args.out):
        parser.error("--resume RUN_DIR takes no CONFIG, --set or --out: the run's saved config is used")
    if not args.resume and not args.config:
        parser.error("give a CONFIG to run (e.g. configs/quickstart.yaml) or --resume RUN_DIR")
    target, cfg = args.resume or args.out, None
    if args.config:
        cfg = load_config(args.config, args.overrides)  # fail fast, before the heavy imports
        target = target or str(Path(cfg.run.out_dir) / cfg.run.name)

    from whitebox.artifacts import ArtifactError, WriteFailed
    from whitebox.runner import resume, run
    from whitebox.training import TrainingDiverged

    try:
        summary = resume(args.resume) if args.resume else run(cfg, out=args.out)
    except WriteFailed as err:
        started = target is not None and (Path(target) / "config.yaml").is_file()
        again = f"`whitebox run --resume {target}`" if started else "the same command again"
        print(f"whitebox: error: {err}, then run {again}", file=sys.stderr)
        return EXIT_FAILED
    except ArtifactError as err:
        print(f"whitebox: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDiverged as err:
        print(f"whitebox: training diverged: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"\nwhitebox: interrupted; continue with `whitebox run --resume {target}`", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(format_summary(summary, limit=SUMMARY_LINES, path=Path(target) / "summary.json"))
    report = Path(target) / "report.md"
    if report.is_file():  # the experiment wrote a report: end with its tables
        print(f"\n{report.read_text()}\nreport: {report}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from whitebox.artifacts import ArtifactError
    from whitebox.probe_cli import run_probe_command

    try:
        result = run_probe_command(args)
    except ArtifactError as err:
        print(f"whitebox: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(format_summary(result))
    return 0


def _report(args: argparse.Namespace) -> int:
    from whitebox.artifacts import ArtifactError
    from whitebox.suppression_report import rebuild_report

    try:
        path, missing = rebuild_report(args.run_dir)
    except ArtifactError as err:
        print(f"whitebox: error: {err}", file=sys.stderr)
        return EXIT_USAGE
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
