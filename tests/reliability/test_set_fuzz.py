"""Fuzzing `--set KEY=VALUE`: any override list is accepted or refused with one line (exit 2), and nothing is written."""

from __future__ import annotations

import contextlib
import io
import string
import typing
from collections import Counter
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tests.conftest import TINY
from whitebox.cli.main import main
from whitebox.config import ConfigError, ExperimentConfig, load_config


def dotted_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every settable dotted key of the config (each task variant's), and each section's own name."""
    out = []
    for name, field in model.model_fields.items():
        sections = [a for a in typing.get_args(field.annotation) or (field.annotation,)
                    if isinstance(a, type) and issubclass(a, BaseModel)]
        out.append(prefix + name)
        for section in sections:
            out += dotted_keys(section, f"{prefix}{name}.")
    return sorted(set(out))


KEYS = dotted_keys(ExperimentConfig)
VALUES = st.one_of(
    st.sampled_from(["", "0", "-1", "1e999", ".nan", "-.inf", "null", "true", "[1, 2]", "{a: 1}", "[", "{", "'x",
                     "cpu", "cuda:0", "native", "token", "3e-4", "1_000", "0x10", "~", "!!python/object:os.system ls",
                     "&a [*a]", "x" * 300, "é", "\x00", "a=b", "[sft, es]", "{steps: 1}"]),
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(string.printable, max_size=20),
)
VALID = ["training.lr=0.01", "training.steps=5", "run.seed=3", "model.d_model=32", "task.trigger=computed",
         "tracking.wandb_mode=offline", "treat.regimes=[sft, es]", "revive.asr=0.5", "training.betas=[0.9, 0.99]",
         "locate.hooks=resid", "training.grad_clip=null", "run.name=other", "grid.seeds=[0, 1]", "treat.es.sigma=0.1"]
ITEMS = st.one_of(
    st.sampled_from(VALID), st.sampled_from(VALID),
    st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.tuples(st.sampled_from(KEYS), st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}.{kv[1]}={kv[2]}"),
    st.text(string.printable, max_size=25),
)


def test_the_key_list_reaches_every_section():
    """The fuzzed keys include nested ones of every section."""
    assert {"training.lr", "task.trigger", "task.p", "treat.es.sigma", "revive.asr", "grid.seeds"} <= set(KEYS)


def test_any_set_list_is_accepted_or_refused_in_one_line(tmp_path, figures):
    """`--set` items from every config key and hostile values (hypothesis): loaded, or ConfigError in one line and CLI exit 2."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    counts: Counter[str] = Counter()

    def listing() -> list[tuple[str, int]]:
        return sorted((str(p), p.stat().st_mtime_ns) for p in Path(tmp_path).rglob("*"))

    before = listing()

    @settings(max_examples=1000, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(items=st.lists(ITEMS, min_size=1, max_size=4))
    def check(items):
        try:
            assert isinstance(load_config(config, items), ExperimentConfig)
            counts["accepted"] += 1
            return
        except ConfigError as err:
            assert str(err) and "\n" not in str(err), str(err)
        counts["rejected"] += 1
        err = io.StringIO()
        args = ["run", str(config), "--out", str(out)] + [a for item in items for a in ("--set", item)]
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(args)
            except SystemExit as exit_:  # argparse: an item that looks like an option
                code = exit_.code
        assert code == 2
        assert len(err.getvalue().strip().splitlines()) == 1 or err.getvalue().startswith("usage:"), err.getvalue()

    check()
    assert listing() == before and not out.exists()
    assert counts["accepted"] >= 100 and counts["rejected"] >= 300
    figures(parser="--set", cases=sum(counts.values()), accepted=counts["accepted"], rejected=counts["rejected"],
            other_exceptions=0, files_written=0)
