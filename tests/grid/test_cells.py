"""Grid cells: task variants from grid.triggers or grid.variants, each a cell config of its own."""

from __future__ import annotations

import pytest

from whitebox import parse_config
from whitebox.config import ConfigError
from whitebox.experiments.treat import TREAT
from whitebox.grid.cells import cell_config, grid_cells, grid_variants
from whitebox.tasks import get_task

BASE = {"experiment": "suppression", "task": {"name": "backdoor", "seq_len": 4}, "grid": {"seeds": [0, 3]}}


def config(grid: dict):
    return parse_config({**BASE, "grid": {**BASE["grid"], **grid}})


def test_triggers_are_variants_of_the_trigger_key():
    cfg = config({"triggers": ["token", "computed"]})
    assert grid_variants(cfg) == {"token": {"trigger": "token"}, "computed": {"trigger": "computed"}}
    assert grid_cells(cfg) == [("token", 0), ("token", 3), ("computed", 0), ("computed", 3)]


def test_variants_set_several_task_keys_and_name_the_costly_one_apart():
    cfg = config({"variants": [{"trigger": "token"}, {"trigger": "computed"}, {"trigger": "computed", "leak": 0.1},
                               {"trigger": "computed", "leak": 0.02}]})
    labels = list(grid_variants(cfg))
    assert labels == ["token", "computed", "computed_leak0p1", "computed_leak0p02"]
    cell = cell_config(cfg, TREAT, "computed_leak0p1", 3)
    assert (cell.task.trigger, cell.task.leak, cell.task.seq_len, cell.run.seed) == ("computed", 0.1, 4, 3)
    assert get_task(cell.task).variant == "computed_leak0p1"  # the cell's summary keys carry its label
    assert cell.run.name.endswith("computed_leak0p1-s3")
    assert cell_config(cfg, TREAT, "computed", 0).task.leak == 0.0


@pytest.mark.parametrize("grid, message", [
    ({"variants": [{"trigger": "sideways"}]}, "grid.variants: {'trigger': 'sideways'} is not a valid variant"),
    ({"variants": [{"leak": 0.1}]}, "task.leak needs task.trigger: computed"),
    ({"variants": [{"trigger": "token"}, {"trigger": "token", "n_eval": 100}]}, "two variants are both 'token'"),
    ({"triggers": ["computed", "nope"]}, "grid.triggers: {'trigger': 'nope'} is not a valid variant"),
])
def test_a_variant_the_task_lacks_is_one_error(grid, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")):
        grid_variants(config(grid))


def test_triggers_and_variants_together_are_refused():
    with pytest.raises(ConfigError, match="grid.triggers and grid.variants"):
        config({"triggers": ["token"], "variants": [{"trigger": "token"}]})


def test_a_grid_of_variants_round_trips_through_its_saved_config(tmp_path):
    from whitebox.config import dump_yaml, load_config

    cfg = config({"variants": [{"trigger": "computed", "leak": 0.1}]})
    (tmp_path / "config.yaml").write_text(dump_yaml(cfg))
    again = load_config(tmp_path / "config.yaml")
    assert grid_variants(again) == grid_variants(cfg) and again.grid.triggers is None
    assert config({}).grid.triggers == ["token", "computed"]
