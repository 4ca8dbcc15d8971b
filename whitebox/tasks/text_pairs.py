"""Your own contrast pairs as a task: each text beside the same text without the behaviour's cause, and two answer sets.

`task: {name: text_pairs, path: pairs.jsonl, a: [" cat"], b: [" dog"]}` reads a JSONL, CSV or
parquet file, or a `datasets` dataset saved with `save_to_disk`, with one pair per row: column
`triggered` (the text with the cause) and `untriggered` (without it; any other length). The
metric attribution explains is the mean logit over the words `a` (the behaviour's answers) minus
the mean over `b` (the honest ones) after the last token, each word one token of the model's
tokenizer. The texts are not tokenised here: `contrast_pairs` gives them as `TextPairs`, which the
attribution code tokenises with the model's tokenizer, left-padded so every answer is the last
position (whitebox.tasks.pairs). `experiment: circuit` locates, selects and checks a circuit on
them. The same texts are a labelled probe task too (`triggered`: true for a pair's first text),
so `experiment: probe` runs on the same file.

What this task does not supply: training splits, samples and an evaluation of its own (it plants
nothing); circuit faithfulness reports the pair rates instead (triggered pairs answered from `a`,
untriggered ones from `b`).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from datasets import Dataset
from pydantic import Field, model_validator

from whitebox.config.errors import ConfigError
from whitebox.config.schema import TaskSection
from whitebox.runtime.rundir import seed_stream
from whitebox.tasks.base import Task, register_task
from whitebox.tasks.pairs import TextPairs
from whitebox.tasks.text import DataPath, check_texts, read_table

PAIRS_SALT = 0x9A125  # this task's own stream of contrast pairs


class TextPairsTaskConfig(TaskSection):
    name: Literal["text_pairs"] = Field("text_pairs", description="contrast pairs of texts from a local file (your own "
                                        "data)")
    path: DataPath
    triggered_column: str = Field("triggered", description="the column holding each pair's text with the cause")
    untriggered_column: str = Field("untriggered", description="the column holding the same text without it")
    a: list[str] = Field(..., min_length=1, description="the behaviour's answer words, one token each (mind GPT-2's "
                         "leading space: ' cat')")
    b: list[str] = Field(..., min_length=1, description="the honest answer words, one token each")
    chat_template: bool = Field(False, description="wrap each text as a user turn in the tokenizer's chat template "
                                "(refused when it has none), so the answer follows the assistant's turn")

    @model_validator(mode="after")
    def _disjoint(self) -> TextPairsTaskConfig:
        both = sorted(set(self.a) & set(self.b))
        if both:
            raise ValueError(f"a and b both list {both}; an answer word belongs to one side only")
        return self


class TextPairsTask(Task):
    """Text pairs; `triggered` (a pair's first text) is the hidden label probes look for."""

    config: TextPairsTaskConfig
    hidden_label = "triggered"
    uses_model_tokenizer = True

    @property
    def chat_template(self) -> bool:
        return self.config.chat_template

    @cached_property
    def pairs(self) -> tuple[list[str], list[str]]:
        """(triggered texts, untriggered texts), one of each per row of the file, read once."""
        path, cfg = Path(self.config.path), self.config
        columns = {"triggered_column": cfg.triggered_column, "untriggered_column": cfg.untriggered_column}
        data = read_table(path, columns)
        for key, column in columns.items():
            check_texts(data[column], key, column, path)
        if len(data) < 4:
            raise ConfigError(f"task.path: {path} has {len(data)} pairs; give at least 4")
        return list(data[cfg.triggered_column]), list(data[cfg.untriggered_column])

    def contrast_pairs(self, n: int, seed: int) -> TextPairs:  # type: ignore[override]
        """`n` seeded pairs of the file (all of them when it has fewer), as texts for the model's tokenizer."""
        triggered, untriggered = self.pairs
        order = np.random.default_rng([seed, PAIRS_SALT]).permutation(len(triggered))[:n]
        return TextPairs(tuple(triggered[i] for i in order), tuple(untriggered[i] for i in order),
                         tuple(self.config.a), tuple(self.config.b), self.config.chat_template)

    def probe_split(self, n_fit: int, n_test: int, seed: int) -> tuple[Dataset, Dataset]:
        """Two disjoint seeded sets of pairs, each as both its texts (column `triggered`: which one); at most half
        the pairs fit."""
        triggered, untriggered = self.pairs
        order = np.random.default_rng(seed_stream("probe_fit", seed)).permutation(len(triggered)).tolist()
        k_fit = max(1, min(n_fit // 2, len(order) // 2))
        k_test = max(1, min(n_test // 2, len(order) - k_fit))

        def rows(part: list[int]) -> Dataset:
            texts = [triggered[i] for i in part] + [untriggered[i] for i in part]
            return Dataset.from_dict({"text": texts, "triggered": [True] * len(part) + [False] * len(part)})

        return rows(order[:k_fit]), rows(order[k_fit : k_fit + k_test])


register_task("text_pairs", TextPairsTaskConfig, TextPairsTask)
