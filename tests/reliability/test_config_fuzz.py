"""Fuzzing the config boundary: any input is accepted or refused with one line, never a traceback."""

import string
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY
from whitebox.config import ConfigError, ExperimentConfig, load_config, parse_config

KEYS = ["training.lr", "training.steps", "model.arch", "model.d_model", "task.trigger", "task.name", "task.p",
        "locate.position", "locate.hooks", "run.name", "tracking.wandb_mode", "training.betas", "model", "x.y"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(string.printable, max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(string.ascii_letters, max_size=6), inner, max_size=3)),
                      max_leaves=6)
def fuzz(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


def _accepted_or_one_line(call, counts: Counter) -> None:
    try:
        assert isinstance(call(), ExperimentConfig)
        counts["accepted"] += 1
    except ConfigError as err:
        message = str(err)
        assert message and "\n" not in message and "Traceback" not in message
        counts["rejected"] += 1


def _record(figures, what: str, counts: Counter) -> None:
    figures(parser=what, cases=sum(counts.values()), accepted=counts["accepted"], rejected=counts["rejected"],
            other_exceptions=0, files_written=0)


def test_any_override_list(figures):
    """Override lists (hypothesis) from config keys and printable junk: a config, or ConfigError in one line."""
    counts: Counter = Counter()

    @fuzz(400)
    @given(items=st.lists(st.one_of(
        st.tuples(st.sampled_from(KEYS), st.text(string.printable, max_size=15)).map(lambda kv: f"{kv[0]}={kv[1]}"),
        st.text(string.printable, max_size=25)), max_size=4))
    def check(items):
        _accepted_or_one_line(lambda: parse_config(TINY, items), counts)

    check()
    _record(figures, "parse_config overrides", counts)


def test_any_mapping(figures):
    """Nested mappings of any JSON-like values (hypothesis): a config, or ConfigError in one line."""
    counts: Counter = Counter()

    @fuzz(400)
    @given(data=st.dictionaries(st.sampled_from(["run", "model", "task", "training", "tracking", "locate", "experiment",
                                                 "other"]), values, max_size=4))
    def check(data):
        _accepted_or_one_line(lambda: parse_config(data), counts)

    check()
    _record(figures, "config mapping", counts)


def test_any_file_content(tmp_path, figures):
    """Any printable text as the YAML file (hypothesis): a config, or ConfigError in one line."""
    counts: Counter = Counter()
    path = tmp_path / "fuzz.yaml"

    @fuzz(300)
    @given(text=st.text(string.printable, max_size=200))
    def check(text):
        path.write_text(text)
        _accepted_or_one_line(lambda: load_config(path), counts)

    check()
    _record(figures, "YAML file", counts)
