"""scripts/gpu_checks.sh names only scripts and configs that exist, and its configs validate."""

import re
import subprocess

from tests.scripts.conftest import ROOT
from whitebox.config import load_config


def test_every_script_and_config_the_gpu_checks_name_exists_and_validates():
    text = (ROOT / "scripts" / "gpu_checks.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_checks.sh")]).returncode == 0
    scripts = set(re.findall(r"scripts/\w+\.py", text))
    configs = {c.replace("${size}", size) for c in re.findall(r"configs/[\w${}]+\.yaml", text)
               for size in ("4x256", "6x256")}
    assert {"scripts/bench_plant.py", "scripts/bench_regimes.py"} <= scripts
    assert "configs/headline_gpu_6x256.yaml" in configs and "configs/quickstart.yaml" in configs
    for path in scripts | configs:
        assert (ROOT / path).is_file(), path
    for path in configs:
        load_config(ROOT / path, ["grid.seeds=[0]"] if "headline" in path else [])
