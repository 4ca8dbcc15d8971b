"""`whitebox probe fit|eval`: fit probes for a saved model and task, or score a saved probe on fresh data."""

from __future__ import annotations

import argparse
import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from whitebox.config import ConfigError, ExperimentConfig
from whitebox.config.schema import MAX_SEED
from whitebox.runtime.rundir import RunDir, seed_stream


def add_commands(commands: Any) -> None:
    """Register `probe fit` and `probe eval` on the top-level subparsers."""
    probe = commands.add_parser("probe", help="fit probes for a saved model, or evaluate a saved probe",
                                description="Linear probes for a task's hidden label on a saved model.")
    sub = probe.add_subparsers(dest="probe_command", required=True, metavar="COMMAND")
    fit = sub.add_parser("fit", help="fit and save probes (and detectors) on every hook of locate.hooks",
                         description="Fit probes for the model in locate.checkpoint on fresh task data; "
                                     "save them under OUT/probes/<hook>/ and print a per-hook table.")
    fit.add_argument("config", metavar="CONFIG", help="YAML config whose locate.checkpoint names a saved model directory")
    fit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set locate.checkpoint=runs/quickstart/models/planted")
    fit.add_argument("--out", metavar="DIR", help="a new or empty directory for probes/ and detectors/ "
                                                  "(default: <run.out_dir>/<run.name>)")
    ev = sub.add_parser("eval", help="score a saved probe on fresh task data and print its metrics",
                        description="Load PROBE_DIR and the model in --checkpoint, draw fresh task data, print metrics.")
    ev.add_argument("probe_dir", metavar="PROBE_DIR", help="a directory with probe.safetensors and probe.json")
    ev.add_argument("--checkpoint", required=True, metavar="DIR",
                    help="a saved whitebox model (model.json) or a Hugging Face save_pretrained folder")
    ev.add_argument("--data", metavar="FILE", help="labelled texts to score on (.jsonl, .csv, .parquet or a save_to_disk "
                    "folder); needed for a Hugging Face folder, which has no task of its own")
    ev.add_argument("--text-column", help="--data's text column (default text)")
    ev.add_argument("--label-column", help="--data's 0/1 label column (default label)")
    ev.add_argument("--n", type=int, default=2000, help="fresh examples, half with the hidden label; with --data: at "
                    "most this many rows (default 2000)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the fresh data, or of the rows drawn from --data (default 0)")
    ev.add_argument("--allow-fingerprint-mismatch", action="store_true", help="score a model other than the probe's own")


def fit_command(cfg: ExperimentConfig, out: str | None) -> dict[str, Any]:
    """Fit probes and detectors for cfg.task on locate.checkpoint (or the pretrained model.name_or_path); save, print."""
    from whitebox.experiments.probe import subject
    from whitebox.models import META, read_model_meta
    from whitebox.protocol.locate import format_probe_table, locate_probes
    from whitebox.protocol.probe_kinds import format_kinds_table
    from whitebox.tasks import get_task

    checkpoint = cfg.locate.checkpoint
    if checkpoint is None and cfg.model.source != "pretrained":
        raise ConfigError("locate.checkpoint: set it to a saved model directory, e.g. --set locate.checkpoint="
                          "runs/quickstart/models/planted (or set model.source: pretrained with model.name_or_path)")
    option = "--out" if out else "run.name"
    root = Path(out) if out else Path(cfg.run.out_dir) / cfg.run.name
    _outside(root, checkpoint, option)
    with output_dir(root, option) as out_dir:
        model, model_cfg = subject(cfg)
        whitebox_model = checkpoint is not None and (Path(checkpoint) / META).is_file()  # it records its own task
        task = _task_of(read_model_meta(checkpoint), checkpoint, cfg.task) if whitebox_model else get_task(cfg.task)
        _, metrics, rows = locate_probes(model.eval(), model_cfg, task, cfg.locate, cfg.run.seed, out_dir)
    print(format_probe_table(rows))
    if "kinds" in rows[0]:
        print(f"every probe kind (locate.probes):\n{format_kinds_table(rows)}")
    print(f"saved {len(rows)} probes under {out_dir / 'probes'} and detectors under {out_dir / 'detectors'}")
    return metrics


@contextlib.contextmanager
def output_dir(root: Path, option: str) -> Iterator[RunDir]:
    """`probe fit`'s output, a new or empty directory held under its lock; what a failed fit wrote there is removed
    (it held nothing of anyone's before), so the same command can simply run again."""
    from whitebox.runtime.locks import new_directory

    existed = root.exists()
    try:
        with new_directory(root, lambda r: _taken(r, option)) as out_dir:
            try:
                yield out_dir
            except BaseException:
                for path in (p for p in root.iterdir() if p != out_dir.lock):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                raise
    finally:
        if not existed and root.is_dir() and not any(root.iterdir()):
            root.rmdir()


def _taken(root: Path, option: str) -> str:
    what = "is a file" if root.is_file() else "already exists and is not empty"
    return (f"{option}: {root} {what}; `probe fit` writes only into a new or empty directory, so nobody's files "
            f"are replaced: give --out a new DIR")


def _outside(root: Path, checkpoint: str | None, option: str) -> None:
    """The output must not lie in the checkpoint's directory or any run that holds it (a grid's cell, the grid):
    their files stay as saved."""
    if checkpoint is None:
        return
    source = Path(checkpoint).resolve()
    target = root.resolve()
    for saved in (source, *(d for d in source.parents if RunDir(d).config.is_file())):
        if target == saved or saved in target.parents:
            holder = "locate.checkpoint's model directory" if saved == source else "a run holding locate.checkpoint"
            raise ConfigError(f"{option}: {root} lies inside {saved}, {holder}; `probe fit` never writes into a saved "
                              "run or model: give --out a new DIR outside it")


def eval_command(probe_dir: str, checkpoint: str, n: int, seed: int, allow_mismatch: bool,
                 data: DataFile | None = None) -> dict[str, Any]:
    """Score a saved probe on `n` fresh examples of the checkpoint's own task, or on rows of a labelled data file."""
    from whitebox.capture import canonical_hook, capture
    from whitebox.inputs import InputError
    from whitebox.models import META, load_model, read_model_meta
    from whitebox.probes import load_probe
    from whitebox.probes.fits import check_model, check_reads
    from whitebox.probes.metrics import summary
    from whitebox.runtime.memory import capture_bytes, examples_bytes, require_memory
    from whitebox.tasks import require

    if n < 2:
        raise ConfigError(f"--n: need at least 2 examples, got {n}")
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed: must be an integer from 0 to {MAX_SEED}, got {seed}")
    whitebox_model = (Path(checkpoint) / META).is_file()
    if data is not None and whitebox_model:
        raise ConfigError(f"--data: {checkpoint} is a whitebox model, scored on fresh data of the task it was trained "
                          "on; drop --data (or give a Hugging Face folder)")
    if data is None and not whitebox_model and (Path(checkpoint) / "config.json").is_file():
        raise ConfigError(f"--data: {checkpoint} is a Hugging Face folder with no task of its own; give --data FILE "
                          "(labelled texts, with --text-column and --label-column)")
    probe = load_probe(probe_dir)
    given = None if data is None else data.rows(n, seed)  # a bad file is refused before the model is loaded
    model, model_cfg = load_model(checkpoint)
    where = f"{probe_dir}/probe.json"
    overridden = check_model(probe.model, model, model_cfg, allow_mismatch, where, "pass --allow-fingerprint-mismatch")
    if data is None:
        task = _task_of(read_model_meta(checkpoint), checkpoint, None)
        require(task, "sample", "`whitebox probe eval` (fresh labelled data)")
        length, labels, chat = None if task.uses_model_tokenizer else task.seq_len(), task.hidden_label, False
    else:
        length, labels = None, "label"
        chat = bool((probe.prompt_format or {}).get("chat_template"))  # texts become prompts as they did at fitting
    check_reads(probe, model, where, length)
    positions = length if probe.position == "all" else 1
    need = capture_bytes(n, 1, probe.d_model, positions or 1) + examples_bytes(n, length or 1)
    require_memory(need, f"--n {n} (fresh examples and their activations)", "lower --n", ConfigError)
    rows = given if data is not None else task.sample(n, 0.5, seed=seed_stream("probe_eval", seed))  # after the check
    position = "last" if probe.position in (None, "mask") else probe.position
    hook = canonical_hook(model, probe.hook)  # the probe may name an alias; activations come keyed by the canonical name
    try:
        acts = capture(model.eval(), rows, [hook], positions=position, labels=labels, cfg=model_cfg, chat_template=chat)
    except InputError as err:  # e.g. a text of --data without the string the probe's match position reads
        raise ConfigError(f"{data.path if data else checkpoint}: {err}") from None
    scores = probe.score(acts.acts[hook])
    stats = summary(scores[None], acts.labels)[0]
    result = {"hook": probe.hook, "kind": probe.kind, "n": len(rows), **{k: float(v) for k, v in stats.items()}}
    return result if overridden is None else {**result, "fingerprint_override": overridden}


@dataclass(frozen=True)
class DataFile:
    """`probe eval --data`: a labelled text file, read as the text task reads it."""

    path: str
    text_column: str = "text"
    label_column: str = "label"

    def rows(self, n: int, seed: int) -> Any:
        """At most `n` seeded rows (all of them when the file has fewer), as columns text and label."""
        import numpy as np

        from whitebox.tasks import get_task

        task = get_task({"name": "text", "path": self.path, "text_column": self.text_column,
                         "label_column": self.label_column})
        try:
            every = task.rows
        except ConfigError as err:  # the text task names its own keys; here they are options
            raise ConfigError(_as_options(str(err))) from None
        if len(set(every["label"])) < 2:
            raise ConfigError(f"--label-column: {self.label_column!r} in {self.path} holds one label only; AUROC needs both")
        order = np.random.default_rng(seed_stream("probe_eval", seed)).permutation(len(every))[:n]
        return every.select(sorted(order.tolist()))


def _as_options(message: str) -> str:
    for key, option in (("task.path", "--data"), ("task.text_column", "--text-column"),
                        ("task.label_column", "--label-column"), ("task:", "--data:")):
        message = message.replace(key, option)
    return message


def _task_of(meta: dict[str, Any], checkpoint: str, wanted: Any) -> Any:
    """The task a saved model was trained on; a different task asked for is an error, not a silent switch."""
    from whitebox.tasks import get_task

    saved = meta.get("task")
    try:
        if not isinstance(saved, dict):
            raise ValueError
        task = get_task(saved)
    except (ConfigError, ValidationError, ValueError):
        raise ConfigError(f"{checkpoint}/model.json: field 'task' is missing or invalid; re-save the model with whitebox") from None
    if wanted is not None and wanted.name != task.name:
        raise ConfigError(f"task.name: the config asks for {wanted.name!r} but {checkpoint} was trained on {task.name!r}")
    return task


def run_probe_command(args: argparse.Namespace) -> dict[str, Any]:
    from whitebox.runner import load_config
    from whitebox.runtime.memory import check_config
    from whitebox.tasks import get_task

    if args.probe_command == "fit":
        cfg = load_config(args.config, args.overrides)
        check_config(cfg, ("locate",), get_task(cfg.task))  # the model's size is the checkpoint's: load_model checks it
        return fit_command(cfg, args.out)
    columns = {"text_column": args.text_column, "label_column": args.label_column}
    given = [f"--{key.replace('_', '-')}" for key, value in columns.items() if value is not None]
    if args.data is None and given:
        raise ConfigError(f"{' and '.join(given)}: name{'s' if len(given) == 1 else ''} columns of --data; give --data "
                          "FILE or drop it")
    data = None if args.data is None else DataFile(args.data, **{k: v for k, v in columns.items() if v is not None})
    return eval_command(args.probe_dir, args.checkpoint, args.n, args.seed, args.allow_fingerprint_mismatch, data)
