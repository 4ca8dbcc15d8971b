import sys

import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from tests.cli.test_main import _fails
from whitebox.cli.main import build_parser, main
from whitebox.config import load_config

GRID_SETS = ["--set", "experiment=suppression", "--set", "grid.seeds=[0,1,2]", "--set", "grid.triggers=[token,computed]"]
LABELS = ["token-s0", "token-s1", "token-s2", "computed-s0", "computed-s1", "computed-s2"]


def agent_command(definition: dict, label: str) -> list[str]:
    """The command `wandb agent` runs for the sweep run that gets `cell=label` (its macro expansion)."""
    macros = {**create_sweep_command_args({"args": {"cell": {"value": label}}}),
              "env": ["/usr/bin/env"], "interpreter": [sys.executable]}
    command = []
    for part in create_sweep_command(list(definition["command"])):
        command += macros[part[2:-1]] if part.startswith("${") else [part]
    return command


def test_sweep_writes_a_grid_sweep_over_every_cell_and_prints_the_commands(tiny_yaml, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", str(tiny_yaml), *GRID_SETS, "--set", "tracking.wandb_entity=team", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    definition = yaml.safe_load((out / "sweep.yaml").read_text())
    assert definition["method"] == "grid" and definition["parameters"] == {"cell": {"values": LABELS}}
    assert (definition["project"], definition["entity"], definition["name"]) == ("whitebox", "team", "tiny")
    assert f"wandb sweep {out.resolve() / 'sweep.yaml'}" in printed and "wandb agent team/whitebox/<sweep-id>" in printed
    assert f"whitebox report {out.resolve()}" in printed and "tracking.wandb_mode is disabled" in printed
    cfg = load_config(out / "config.yaml")  # the parent run directory every agent writes into
    assert cfg.experiment == "suppression" and cfg.grid.seeds == [0, 1, 2] and cfg.model.d_vocab is not None
    command = agent_command(definition, "computed-s1")
    assert command[:4] == ["/usr/bin/env", sys.executable, "-m", "whitebox"]
    args = build_parser().parse_args(command[4:])
    assert (args.command, args.run_dir, args.cell) == ("cell", str(out.resolve()), "computed-s1")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "sweep.yaml"]  # nothing run yet


def test_sweep_refuses_a_non_grid_experiment_and_an_existing_directory(tiny_yaml, tmp_path, capsys):
    assert "whitebox sweep: experiment 'plant' has no grid of cells" in _fails(
        capsys, ["sweep", str(tiny_yaml), "--out", str(tmp_path / "a")])
    assert not (tmp_path / "a").exists()
    out = tmp_path / "b"
    assert main(["sweep", str(tiny_yaml), *GRID_SETS, "--out", str(out)]) == 0
    capsys.readouterr()
    assert "already exists" in _fails(capsys, ["sweep", str(tiny_yaml), *GRID_SETS, "--out", str(out)])
