"""Your own data as a task: labelled texts from a local file, tokenised by a pretrained model's tokenizer.

`task: {name: text, path: data.jsonl}` reads a JSONL, CSV or parquet file, or a `datasets`
dataset saved with `save_to_disk`, with a text column and a binary label column (0/1 or
true/false): the hidden label probes and detectors look for. The texts are not tokenised here:
`capture` tokenises them with the model's own tokenizer (in its chat template with
`chat_template: true`), padded on the right, so the task works with any pretrained model
(`model.source: pretrained`). Probes are fitted and scored on two disjoint seeded subsets of the
rows (`probe_split`), each with both labels.

What this task does not supply: training splits and an answer to evaluate (it plants nothing),
so the plant, treat and revive steps refuse it at config time; use `experiment: probe`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from datasets import Dataset, load_dataset, load_from_disk
from pydantic import AfterValidator, Field

from whitebox.config.errors import ConfigError
from whitebox.config.schema import TaskSection
from whitebox.runtime.rundir import seed_stream
from whitebox.tasks.base import Task, register_task

READERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
# saved absolute, so that a run's config.yaml names the file it read from wherever it is resumed or reported
DataPath = Annotated[str, AfterValidator(lambda path: str(Path(path).expanduser().absolute())), Field(
    description="a .jsonl, .csv or .parquet file, or a folder written by datasets' save_to_disk (saved as an "
    "absolute path)")]


class TextTaskConfig(TaskSection):
    name: Literal["text"] = Field("text", description="labelled texts from a local file (your own data)")
    path: DataPath
    text_column: str = Field("text", description="the column holding each example's text")
    label_column: str = Field("label", description="the binary column (0/1 or true/false) probes and detectors look for")
    chat_template: bool = Field(False, description="wrap each text as a user turn in the tokenizer's chat template "
                                "(refused when it has none); recorded in each probe's prompt_format")


class TextTask(Task):
    """Labelled texts; the label column is the hidden label."""

    config: TextTaskConfig
    uses_model_tokenizer = True

    @property
    def hidden_label(self) -> str:  # type: ignore[override]
        return "label"

    @property
    def chat_template(self) -> bool:
        return self.config.chat_template

    @cached_property
    def rows(self) -> Dataset:
        """Every row, as columns `text` (str) and `label` (bool), read once."""
        path, cfg = Path(self.config.path), self.config
        data = read_table(path, {"text_column": cfg.text_column, "label_column": cfg.label_column})
        texts, labels = data[cfg.text_column], data[cfg.label_column]
        check_texts(texts, "text_column", cfg.text_column, path)
        if not all(v in (0, 1, True, False) and not isinstance(v, float) for v in labels):
            raise ConfigError(f"task.label_column: {cfg.label_column!r} in {path} must be 0/1 or true/false")
        return Dataset.from_dict({"text": texts, "label": [bool(v) for v in labels]})

    def probe_split(self, n_fit: int, n_test: int, seed: int) -> tuple[Dataset, Dataset]:
        """Two disjoint seeded subsets of at most n_fit and n_test rows (fit: at most half), each with both labels."""
        rows = self.rows
        if len(rows) < 8:
            raise ConfigError(f"task.path: {self.config.path} has {len(rows)} rows; probes need at least 8")
        order = np.random.default_rng(seed_stream("probe_fit", seed)).permutation(len(rows))
        n_fit = min(n_fit, len(rows) // 2)
        fit, test = rows.select(order[:n_fit]), rows.select(order[n_fit : n_fit + n_test])
        for name, part in (("fit", fit), ("test", test)):
            if len(set(part["label"])) < 2:
                raise ConfigError(f"task.label_column: the {name} split of {self.config.path} holds one label only; "
                                  "the file needs more rows of each label")
        return fit, test


def read_table(path: Path, columns: dict[str, str]) -> Dataset:
    """The dataset at `path` (JSONL, CSV, parquet or a save_to_disk folder), which must have `columns` {key: column}."""
    if not path.exists():
        raise ConfigError(f"task.path: {path} not found; give a .jsonl, .csv or .parquet file or a save_to_disk folder")
    try:
        if path.is_dir():
            data = load_from_disk(str(path))
        elif path.suffix in READERS:
            data = load_dataset(READERS[path.suffix], data_files=str(path), split="train")
        else:
            raise ConfigError(f"task.path: {path.name}: unknown file type; use .jsonl, .csv or .parquet")
    except (ValueError, OSError, FileNotFoundError) as err:
        raise ConfigError(f"task.path: {path} cannot be read as a dataset ({' '.join(str(err).split())[:200]})") from None
    missing = [c for c in columns.values() if c not in data.column_names]
    if missing:
        raise ConfigError(f"task: {path} has no column {missing[0]!r} (its columns: {', '.join(data.column_names)}); "
                          f"set {' / '.join(f'task.{key}' for key in columns)}")
    return data


def check_texts(texts: list, key: str, column: str, path: Path) -> None:
    """Every value of a text column must be a non-empty string."""
    if not all(isinstance(t, str) and t for t in texts):
        raise ConfigError(f"task.{key}: every {column!r} value in {path} must be a non-empty string")


register_task("text", TextTaskConfig, TextTask)
