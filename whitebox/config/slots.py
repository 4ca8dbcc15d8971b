"""The registries' view from the config: which tasks, regimes and probe kinds exist, and the names a field accepts.

The tables are filled by `whitebox.config.schema.add_task` / `add_regime` / `add_probe_kind`
(called by the registries in whitebox.tasks, whitebox.training and whitebox.probes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from whitebox.config.schema import Section, TaskSection


@dataclass(frozen=True)
class RegimeOptions:
    """What the config needs to know of a registered regime."""

    settings: type[Section] | None  # its `treat.<name>` section, if it has settings
    uses_rater: bool  # can learn from a rater's reward (a deceiver in the flawed-rater experiment)
    needs_probe: bool  # needs the located probe (cannot fix a deceived model without one)


_TASKS: dict[str, type[TaskSection]] = {}
_REGIMES: dict[str, RegimeOptions] = {}
_PROBE_KINDS: dict[str, bool] = {}  # name -> fits one probe per hook from binary labels (usable as locate.probe)
_PROBE_NEEDS: dict[str, str] = {}  # name -> what a kind that does not fit per hook needs instead
_PROBE_PAIRS: set[str] = set()  # kinds fitted per hook from contrast pairs of activations (locate.probes, on pairs)


def task_config_class(name: str) -> type[TaskSection]:
    return _TASKS[name]


def regime_names(*, uses_rater: bool | None = None, needs_probe: bool | None = None) -> list[str]:
    """Registered regimes in registration order, optionally only those with the given properties."""
    return [
        name for name, opt in _REGIMES.items()
        if (uses_rater is None or opt.uses_rater == uses_rater) and (needs_probe is None or opt.needs_probe == needs_probe)
    ]


def choices(what: str) -> list[str]:
    """The names a field marked with json_schema_extra={"choices": what} accepts now (the reference shows them)."""
    return _CHOICES[what][0]()


def probe_kind_names(*, per_hook: bool | None = None) -> list[str]:
    return [name for name, fits in _PROBE_KINDS.items() if per_hook is None or fits == per_hook]


def probe_kind_needs(name: str) -> str:
    """What fitting a kind that does not fit per hook from binary labels takes ("" for one that does)."""
    return _PROBE_NEEDS.get(name, "")


# what a field takes -> (the names it accepts now, what one of them is called in an error)
_CHOICES: dict[str, tuple[Callable[[], list[str]], str]] = {
    "regimes": (lambda: regime_names(), "regime"),
    "regimes that learn from a rater": (lambda: regime_names(uses_rater=True), "regime that learns from a rater"),
    "regimes that need no probe": (lambda: regime_names(needs_probe=False), "regime that needs no probe"),
    "probe kinds that fit per hook": (lambda: probe_kind_names(per_hook=True), "probe kind"),
    "conditions": (lambda: ["present", "absent"], "condition"),
}


def _check_names(values: list[str], allowed: list[str], what: str) -> list[str]:
    for value in values:
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; registered: {', '.join(allowed) or 'none'}")
    if len(set(values)) != len(values):
        raise ValueError(f"lists an entry twice: {values}")
    return values
