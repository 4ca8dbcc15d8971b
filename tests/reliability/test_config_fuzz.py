"""Fuzzing the config boundary: any input is accepted or refused with one line, never a traceback."""

import string

from hypothesis import HealthCheck, given, settings, strategies as st

from tests.conftest import TINY
from whitebox.config import ConfigError, ExperimentConfig, load_config, parse_config

KEYS = ["training.lr", "training.steps", "model.arch", "model.d_model", "task.trigger", "task.name", "task.p",
        "locate.position", "locate.hooks", "run.name", "tracking.wandb_mode", "training.betas", "model", "x.y"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(string.printable, max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(string.ascii_letters, max_size=6), inner, max_size=3)),
                      max_leaves=6)


def _accepted_or_one_line(call) -> None:
    try:
        assert isinstance(call(), ExperimentConfig)
    except ConfigError as err:
        message = str(err)
        assert message and "\n" not in message and "Traceback" not in message


@settings(max_examples=400, deadline=None)
@given(items=st.lists(st.one_of(
    st.tuples(st.sampled_from(KEYS), st.text(string.printable, max_size=15)).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.text(string.printable, max_size=25)), max_size=4))
def test_any_override_list(items):
    _accepted_or_one_line(lambda: parse_config(TINY, items))


@settings(max_examples=400, deadline=None)
@given(data=st.dictionaries(st.sampled_from(["run", "model", "task", "training", "tracking", "locate", "experiment", "other"]),
                            values, max_size=4))
def test_any_mapping(data):
    _accepted_or_one_line(lambda: parse_config(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(string.printable, max_size=200))
def test_any_file_content(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    _accepted_or_one_line(lambda: load_config(path))
