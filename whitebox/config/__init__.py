"""One validated config per run: the schema, YAML loading with --set overrides, one-line errors, the reference.

Tasks, regimes and probe kinds add their parts of the schema when they register; importing
`whitebox.tasks`, `whitebox.training` and `whitebox.probes` (or calling `whitebox.load_config`)
registers the built-in ones.
"""

from whitebox.config.errors import ConfigError
from whitebox.config.load import config_to_dict, dump_yaml, load_config, parse_config, read_yaml
from whitebox.config.schema import (
    ALWAYS_READ,
    Condition,
    DeceptionConfig,
    ExperimentConfig,
    GridConfig,
    LocateConfig,
    ModelConfig,
    ReviveConfig,
    RunConfig,
    Section,
    TaskSection,
    TrackingConfig,
    TrainingConfig,
    TreatConfig,
)

__all__ = [
    "ALWAYS_READ", "Condition", "ConfigError", "DeceptionConfig", "ExperimentConfig", "GridConfig", "LocateConfig",
    "ModelConfig", "ReviveConfig", "RunConfig", "Section", "TaskSection", "TrackingConfig", "TrainingConfig",
    "TreatConfig", "config_to_dict", "dump_yaml", "load_config", "parse_config", "read_yaml",
]
