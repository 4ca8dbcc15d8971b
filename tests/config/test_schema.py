import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import TINY
from whitebox.config import ConfigError, dump_yaml, load_config, parse_config
from whitebox.config.reference import config_reference


def _error(overrides=(), data=None) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(TINY if data is None else data, overrides, source="tiny.yaml")
    message = str(err.value)
    assert "\n" not in message
    return message


def test_overrides_are_typed_by_the_schema():
    cfg = parse_config(TINY, ["training.lr=1e-4", "task.trigger=computed", "model.n_layers=3", "training.grad_clip=null",
                              "tracking.tags=[a, b]", "training.betas=[0.8, 0.9]"])
    assert cfg.training.lr == 1e-4 and isinstance(cfg.training.lr, float)
    assert cfg.task.trigger == "computed" and cfg.model.n_layers == 3 and cfg.training.grad_clip is None
    assert cfg.tracking.tags == ["a", "b"] and cfg.training.betas == (0.8, 0.9)


def test_later_override_wins_and_source_is_untouched():
    cfg = parse_config(TINY, ["training.steps=5", "training.steps=7"])
    assert cfg.training.steps == 7 and TINY["training"]["steps"] == 24


def test_unknown_key_names_full_path_and_allowed_keys():
    message = _error(["training.learning_rate=0.1"])
    assert message.startswith("--set training.learning_rate=0.1: unknown key 'training.learning_rate'")
    assert "allowed keys here:" in message and "lr" in message and "warmup_steps" in message


def test_unknown_section_in_file_names_the_file():
    message = _error(data={**TINY, "optimiser": {"lr": 1}})
    assert message.startswith("tiny.yaml: unknown key 'optimiser'") and "training" in message


def test_wrong_type_names_path_and_value():
    message = _error(["training.steps=many"])
    assert "training.steps" in message and "'many'" in message and "integer" in message


def test_out_of_range_names_bound():
    assert "task.trigger_rate" in _error(["task.trigger_rate=1.5"]) and "less than 1" in _error(["task.trigger_rate=1.5"])
    assert "greater than or equal to 1" in _error(["training.steps=0"])


def test_literal_lists_allowed_values():
    message = _error(["model.arch=gpt5"])
    assert "model.arch" in message and "'native'" in message and "'llama'" in message


@pytest.mark.parametrize("item", ["training.lr", "=3", "training..lr=1", "1x=2"])
def test_malformed_override(item):
    assert "expected KEY=VALUE" in _error([item])


def test_override_into_a_value_is_an_error():
    assert "training.lr is a value, not a section" in _error(["training.lr.x=1"])


def test_arch_conflicts_are_errors():
    assert "uses normalization 'LN'" in _error(["model.arch=gpt2", "model.normalization=RMS"])
    assert "divisible by n_heads" in _error(["model.d_model=15"])


def test_arch_defaults():
    llama = parse_config(TINY, ["model.arch=llama"]).model
    assert (llama.act_fn, llama.normalization) == ("silu", "RMS")
    native = parse_config(TINY).model
    assert (native.act_fn, native.normalization) == ("gelu", "LN")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("training:\n  lr: [1, 2\n  steps: 3\n")
    with pytest.raises(ConfigError, match=r"broken.yaml line \d+ column \d+: malformed YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(scalar)


def test_dumped_config_loads_back_equal(tmp_path):
    cfg = parse_config(TINY, ["task.trigger=computed"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(path) == cfg


def test_reference_documents_every_key():
    reference = config_reference()
    for section in ("run", "model", "task", "training", "tracking"):
        for key in TINY.get(section, {}):
            assert f"| `{key}` |" in reference


@settings(max_examples=30, deadline=None)
@given(lr=st.floats(min_value=1e-8, max_value=10, allow_nan=False), steps=st.integers(1, 10**6))
def test_numeric_overrides_round_trip(lr, steps):
    cfg = parse_config(TINY, [f"training.lr={lr!r}", f"training.steps={steps}"])
    assert cfg.training.lr == pytest.approx(lr) and cfg.training.steps == steps


def test_union_value_lists_every_accepted_form():
    message = _error(["locate.position=first"])
    assert message.startswith("--set locate.position=first: locate.position: Input should be 'last', 'all' or 'mean' or a valid integer")


def test_a_mistyped_match_position_is_named_as_one():
    assert parse_config(TINY, ["locate.position={match: ' secret'}"]).locate.position == {"match": " secret"}
    message = _error(["locate.position={match: x, token: all}"])
    assert message == ("--set locate.position={match: x, token: all}: locate.position: a match position is {match: text, "
                       "tokens: last or all}; token: Extra inputs are not permitted (got {'match': 'x', 'token': 'all'})")


@pytest.mark.parametrize("name", ["foo", "\n["])
def test_an_unknown_task_name_is_named_with_the_known_ones(name):
    with pytest.raises(ConfigError) as err:
        parse_config(TINY, [f"task.name={name}"])
    message = str(err.value)
    assert "\n" not in message and "task.name: unknown value" in message and "'backdoor', 'modular', 'flawed_rater', 'text', 'text_pairs'" in message


@pytest.mark.parametrize(("override", "message"), [
    ("task.name=nope", "task.name: unknown value 'nope'; expected one of 'backdoor', 'modular', 'flawed_rater', 'text', 'text_pairs'"),
    ("treat.regimes=[sft,nope]", "treat.regimes: unknown regime 'nope'; registered: sft, rl, es, zo, probe_penalty, es_plain"),
    ("locate.probe=nope", "locate.probe: unknown probe kind 'nope'; registered: logistic, mean_diff, lda"),
    ("locate.probe=ccs", "locate.probe: unknown probe kind 'ccs'; registered: logistic, mean_diff, lda"),  # not fitted per hook
    ("deception.deceivers=[sft]", "deception.deceivers: unknown regime that learns from a rater 'sft'; registered: rl, es, es_plain"),
])
def test_an_unknown_registered_name_is_one_line_listing_the_registered_ones(override, message):
    assert _error([override]) == f"--set {override}: {message}"


def test_attribution_steps_is_a_whole_number_from_1_to_64():
    assert parse_config(TINY, ["locate.attribution_steps=3"]).locate.attribution_steps == 3
    for bad in ("0", "65", "2.5", "two"):
        message = _error([f"locate.attribution_steps={bad}"])
        assert message.startswith(f"--set locate.attribution_steps={bad}: locate.attribution_steps"), message
