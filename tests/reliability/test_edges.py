"""Config and argument edges: files that are not YAML text, non-finite numbers, out-of-range CLI numbers.

Each is one line on stderr and exit 2, naming the file, key or flag, with no traceback and no run
directory created.
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
from collections import Counter

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY
from whitebox.cli.main import main
from whitebox.config import ConfigError, parse_config


def cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own refusals
            code = exit_.code
    return code, err.getvalue().strip()


def refused(code: int, message: str, *names: str) -> None:
    assert code == 2 and message.startswith("whitebox: error: ") and "\n" not in message, message
    assert "Traceback" not in message and all(name in message for name in names), message


def _laughs(levels: int = 9) -> str:
    """A YAML 'billion laughs': each alias level repeats the one below nine times (9**9 values once expanded)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nrun: {{name: laughs}}\nextra: *a{levels - 1}\n"


@pytest.mark.parametrize(("name", "content", "names"), [
    ("latin1.yaml", "run:\n  name: caf\xe9\n".encode("latin-1"), ["latin1.yaml", "not UTF-8"]),
    ("nul.yaml", b"run: {name: a}\n\x00\x01\x02", ["nul.yaml"]),
    ("binary.yaml", bytes(range(256)) * 4, ["binary.yaml"]),
    ("huge.yaml", b"# " + b"x" * (2 << 20), ["huge.yaml", "bytes"]),
    ("laughs.yaml", _laughs().encode(), ["laughs.yaml", "aliases"]),
    ("list.yaml", b"- 1\n- 2\n", ["list.yaml", "mapping"]),
    ("bom16.yaml", "run: {name: a}\n".encode("utf-16"), ["bom16.yaml"]),
], ids=lambda value: value if isinstance(value, str) and value.endswith(".yaml") else "")
def test_a_config_file_that_is_not_yaml_text(tmp_path, name, content, names):
    """Non-UTF-8 bytes, binary data, a 2 MB file, an alias bomb: one line naming the file, no run directory."""
    path = tmp_path / name
    path.write_bytes(content)
    refused(*cli(["run", str(path), "--out", str(tmp_path / "run")]), *names)
    assert not (tmp_path / "run").exists()


def test_a_program_given_as_config(tmp_path):
    """`whitebox run /bin/ls` (any executable found on the machine): one line, not UnicodeDecodeError."""
    binary = shutil.which("ls") or shutil.which("python3")
    refused(*cli(["run", binary, "--out", str(tmp_path / "run")]), binary)


def test_a_directory_given_as_config(tmp_path):
    refused(*cli(["run", str(tmp_path), "--out", str(tmp_path / "run")]), "not found")


@pytest.mark.parametrize("item", ["training.lr=1e309", "training.lr=nan", "training.lr=.inf", "training.lr=-inf",
                                  "training.weight_decay=.nan", "training.betas=[0.9, .inf]", "training.grad_clip=inf",
                                  "locate.C=1e400", "task.trigger_rate=nan", "treat.lr=.NaN", "revive.asr=nan",
                                  "treat.es.sigma=inf"])
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path, item):
    """--set KEY=1e309 / nan / inf (YAML's .inf and .nan too): refused naming the key, never read as infinity."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "experiment": "treat"}))
    key = item.partition("=")[0]
    code, message = cli(["run", str(config), "--set", item, "--out", str(tmp_path / "run")])
    refused(code, message, key, "finite")
    assert not (tmp_path / "run").exists()


def test_non_finite_numbers_in_the_file(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY).replace("lr: 0.003", "lr: .inf"))
    refused(*cli(["run", str(config)]), "training.lr", "finite")


def test_any_float_anywhere(figures):
    """Every float key of the config, given any float (hypothesis): a non-finite one is always refused naming it."""
    keys = ["training.lr", "training.weight_decay", "training.min_lr_ratio", "training.grad_clip", "locate.C",
            "locate.circuit_threshold", "treat.trigger_rate", "treat.lr", "revive.lr", "revive.asr", "task.trigger_rate"]
    counts: Counter[str] = Counter()

    @settings(max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(key=st.sampled_from(keys), value=st.floats(allow_nan=True, allow_infinity=True))
    def check(key, value):
        try:
            parse_config({**TINY, "experiment": "treat"}, [f"{key}={value!r}"])
            assert math.isfinite(value)
            counts["accepted"] += 1
        except ConfigError as err:
            assert "\n" not in str(err) and key in str(err), str(err)
            counts["rejected"] += 1

    check()
    figures(parser="any float in a float key (--set)", cases=sum(counts.values()), accepted=counts["accepted"],
            rejected=counts["rejected"], other_exceptions=0, files_written=0)


@pytest.mark.parametrize(("item", "key"), [("run.seed=-1", "run.seed"), ("run.seed=4294967296", "run.seed"),
                                           ("grid.seeds=[0, -3]", "grid.seeds.1"), ("grid.seeds=[99999999999]", "grid.seeds.0")])
def test_seeds_out_of_range(tmp_path, item, key):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "experiment": "suppression"}))
    refused(*cli(["run", str(config), "--set", item]), key)


@pytest.mark.parametrize(("flags", "names"), [
    (["--seed", "-1"], ["--seed", "-1"]),
    (["--seed", str(2**32)], ["--seed"]),
    (["--n", "0"], ["--n", "0"]),
    (["--n", "1"], ["--n"]),
    (["--n", "-5"], ["--n"]),
])
def test_probe_eval_numbers_out_of_range(tmp_path, flags, names):
    """`probe eval --seed -1`, `--n 0` ...: one line naming the flag, before any file is read."""
    refused(*cli(["probe", "eval", str(tmp_path / "probe"), "--checkpoint", str(tmp_path / "model"), *flags]), *names)


@pytest.mark.parametrize("depth", [400, 50_000])
def test_yaml_nested_without_bound(tmp_path, depth):
    """A config (or a --set value) nested thousands deep: one line, not RecursionError."""
    config = tmp_path / "deep.yaml"
    config.write_text(yaml.safe_dump(TINY) + "extra: " + "[" * depth + "]" * depth + "\n")
    refused(*cli(["run", str(config), "--out", str(tmp_path / "run")]), "deep.yaml")
    plain = tmp_path / "tiny.yaml"
    plain.write_text(yaml.safe_dump(TINY))
    refused(*cli(["run", str(plain), "--set", "training.lr=" + "[" * depth + "]" * depth, "--out", str(tmp_path / "run")]),
            "training.lr")
    assert not (tmp_path / "run").exists()
