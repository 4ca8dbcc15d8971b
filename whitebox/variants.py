"""Import this to have every task, regime and probe kind registered: the built-in ones and installed plugins.

Plugins are modules published under the `whitebox.plugins` entry-point group; each registers what
it adds when imported. The command line validates a config after importing only this (torch and
datasets, not transformer-lens or the pipelines), so a config error answers quickly; the runner
imports it too.
"""

from importlib import metadata

import whitebox.probes.kinds  # noqa: F401
import whitebox.tasks  # noqa: F401
import whitebox.training.regimes  # noqa: F401
from whitebox.config import ConfigError
from whitebox.runtime.artifacts import one_line

PLUGIN_GROUP = "whitebox.plugins"


def load_plugins() -> None:
    """Import every module published under the whitebox.plugins entry-point group (each registers what it adds)."""
    for ep in metadata.entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()
        except Exception as err:  # noqa: BLE001 - a broken plugin is one line, whatever it raised
            raise ConfigError(f"plugin {ep.name!r} ({ep.value}) failed to import: {one_line(err)}") from None


load_plugins()
