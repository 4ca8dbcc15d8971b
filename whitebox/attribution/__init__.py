"""Where a behaviour lives: activation patching, attribution patching (plain and path-integrated), integrated gradients, circuits.

    pairs = task.contrast_pairs(n=256, seed=0)               # the task's pairs: triggered vs untriggered
    exact = activation_patching(model, pairs)                # one forward per component
    fast = attribution_patching(model, pairs)                # one forward + backward per batch
    better = integrated_patching(model, pairs, steps=2)      # gradient averaged over k=2 path points: 1 + 3k forward-equivalents
    agreement(exact, fast)["spearman"]
    circuit, metrics = locate_circuit(model, model_cfg, task)  # rule: whitebox.attribution.selection
    with circuit.ablate(model, how="mean"):
        ...
    measure = GradientShare(model, circuit.units)            # after backward: circuit.grad_share
"""

from whitebox.attribution.ablation import ablated
from whitebox.attribution.attrib_patching import attribution_patching
from whitebox.attribution.circuit import Circuit, CircuitError
from whitebox.attribution.components import (
    Component,
    enumerate_components,
    model_components,
)
from whitebox.attribution.integrated_gradients import (
    IGResult,
    ig_component_scores,
    input_attributions,
    integrated_gradients,
)
from whitebox.attribution.integrated_patching import integrated_patching
from whitebox.attribution.locate import (
    faithfulness,
    locate_circuit,
    plot_component_scores,
)
from whitebox.attribution.params import (
    GradientShare,
    MeasuredUpdater,
    ParamSlice,
    circuit_parameters,
    component_parameters,
    parameter_masks,
)
from whitebox.attribution.patching import activation_patching, patch_metric
from whitebox.attribution.scores import ComponentScores, agreement, forward_equivalents, spearman
from whitebox.attribution.selection import select_circuit, unit_shares

__all__ = [
    "Circuit",
    "CircuitError",
    "Component",
    "ComponentScores",
    "GradientShare",
    "IGResult",
    "MeasuredUpdater",
    "ParamSlice",
    "ablated",
    "activation_patching",
    "agreement",
    "attribution_patching",
    "circuit_parameters",
    "component_parameters",
    "enumerate_components",
    "faithfulness",
    "forward_equivalents",
    "ig_component_scores",
    "input_attributions",
    "integrated_gradients",
    "integrated_patching",
    "locate_circuit",
    "model_components",
    "parameter_masks",
    "patch_metric",
    "plot_component_scores",
    "select_circuit",
    "spearman",
    "unit_shares",
]
