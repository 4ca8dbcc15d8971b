"""env.json: what a run was started with (config, seed, versions, commit), and each amendment made since.

A resume compares config.yaml with this record and refuses any difference, naming the key; the one
way to change a setting mid-run is an amendment (`whitebox run --resume DIR --set KEY=VALUE`),
allowed for the keys in AMENDABLE only and recorded here with the checkpoint it took effect from.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import torch

from whitebox import fast_path
from whitebox.config import ConfigError, ExperimentConfig, config_to_dict
from whitebox.runtime.artifacts import ArtifactError, sha256_json
from whitebox.runtime.records import read_object
from whitebox.runtime.rundir import RunDir
from whitebox.training.checkpoints import Owner

PACKAGES = ("torch", "transformer-lens", "transformers", "datasets", "einops", "wandb", "pydantic", "numpy", "safetensors")
# settings that change how training proceeds, not what is trained on what: safe to change mid-run
AMENDABLE = ("training.lr", "training.grad_clip", "training.warmup_steps", "training.weight_decay", "treat.lr",
             "revive.lr", "tracking.")
ENV_FIX = "it records what the run was started with and cannot be rebuilt: restore it from a backup, or start again"


def environment(cfg: ExperimentConfig, device: str, sections: Sequence[str] | None = None) -> dict[str, Any]:
    """What is needed to reproduce the run and check its resumes: config, seed, versions, git commit, device, command."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    from whitebox import __version__

    versions["whitebox"] = __version__
    run_id = uuid.uuid4().hex[:12]
    config = config_to_dict(cfg, sections)
    return {
        "seed": cfg.run.seed,
        "versions": versions,
        "git": git_state(Path(__file__).resolve().parent),
        "device": device,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "fast_path": fast_path.enabled(),  # hook-free forwards through fused kernels (WHITEBOX_FAST_PATH=0: the bridge)
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wandb_id": run_id,
        "run_id": run_id,
        "config": config,
        "config_sha256": sha256_json(config),
        "amendments": [],
    }


def git_state(path: Path) -> dict[str, Any] | None:
    """Commit and dirtiness of the checkout that holds `path`, or None outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def read_env(path: Path) -> dict[str, Any]:
    """env.json with the fields a resume relies on checked (runs from before config records have none of them)."""
    env = read_object(path, ENV_FIX)
    kinds = {"wandb_id": str, "seed": int, "run_id": str, "config": dict, "config_sha256": str, "amendments": list}
    for key, kind in kinds.items():
        if (key in env or key in ("wandb_id", "seed")) and not isinstance(env.get(key), kind):
            raise ArtifactError(f"{path}: field {key!r} must be a {kind.__name__}, got {env.get(key)!r}; {ENV_FIX}")
    if "config" in env and env.get("config_sha256") != sha256_json(env["config"]):
        raise ArtifactError(f"{path}: field 'config' differs from its hash 'config_sha256': it was edited; {ENV_FIX}")
    for amendment in env.get("amendments", []):
        changes = amendment.get("changes") if isinstance(amendment, dict) else None
        if not (isinstance(changes, dict) and all(amendable(k) and isinstance(c, dict) and "to" in c
                                                  for k, c in changes.items())
                and isinstance(amendment.get("config_sha256"), str)):
            raise ArtifactError(f"{path}: an entry of 'amendments' is not 'changes' of keys that may change "
                                f"(key: from, to) and a 'config_sha256'; {ENV_FIX}")
    return env


def expected_config(env: dict[str, Any]) -> dict[str, Any] | None:
    """The config the run should hold now: the one it started with, amended in order (None: not recorded)."""
    if "config" not in env:
        return None
    config = env["config"]
    for amendment in env.get("amendments", []):
        config = _with(config, {key: change["to"] for key, change in amendment["changes"].items()})
    return config


def owner(env: dict[str, Any]) -> Owner | None:
    """Whose checkpoints the run loads: its id and every config hash it ran under (None for older runs)."""
    if "run_id" not in env or "config_sha256" not in env:
        return None
    return Owner(env["run_id"], (env["config_sha256"], *(a["config_sha256"] for a in env.get("amendments", []))))


def differences(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (before, after) for every value that differs between two config dicts."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in [*before, *(k for k in after if k not in before)]:
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out[f"{prefix}{key}"] = (a, b)
    return out


def check_unchanged(run_dir: RunDir, config: dict[str, Any], env: dict[str, Any]) -> None:
    """Refuse a config.yaml that differs from what env.json says the run holds, naming the first key."""
    expected = expected_config(env)
    changed = differences(expected, config) if expected is not None else {}
    if not changed:
        return
    key, (was, now) = next(iter(changed.items()))
    way = (f"restore it, or change it as an amendment: put back {was!r} and run `whitebox run --resume {run_dir} --set "
           f"{key}={_yaml(now)}`" if amendable(key) else
           f"restore it ({key}: {_yaml(was)}); to try {_yaml(now)}, start a new run with --out DIR")
    more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    raise ConfigError(f"{run_dir.config}: {key} is {_yaml(now)} but the run was started with {_yaml(was)} "
                      f"({run_dir.env.name}){more}; a run's config cannot change under it: {way}")


def amendment(run_dir: RunDir, before: dict[str, Any], after: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """The env.json entry for changing `before` into `after` on resume; ConfigError for a key that may not change."""
    changed = differences(before, after)
    refused = next((key for key in changed if not amendable(key)), None)
    if refused is not None:
        item = next((o for o in overrides if o.partition("=")[0] == refused), refused)
        allowed = ", ".join(k.rstrip(".") + ("*" if k.endswith(".") else "") for k in AMENDABLE)
        raise ConfigError(f"--set {item}: {refused} cannot change in a run under way (its results would mix two "
                          f"experiments); start a new run with --out DIR. Keys a resume may change: {allowed}")
    newest = max(run_dir.root.rglob("step_*/checkpoint.json"), key=lambda p: p.stat().st_mtime_ns, default=None)
    at = None if newest is None else {"checkpoint": str(newest.parent.relative_to(run_dir.root)),
                                      "step": int(newest.parent.name.removeprefix("step_") or 0)}
    return {"changes": {key: {"from": was, "to": now} for key, (was, now) in changed.items()}, "from_checkpoint": at,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": sys.argv, "config_sha256": sha256_json(after)}


def amendable(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in AMENDABLE)


def _with(config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    for key, value in values.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def _yaml(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
