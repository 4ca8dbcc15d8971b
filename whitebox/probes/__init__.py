"""Linear probes on hook activations: fit many hooks at once, score, save/load, attach to a live model.

    captured = capture(model, data, "resid", labels="triggered")
    probes = fit_probes(captured, held_out=capture(model, test, "resid", labels="triggered"))
    probes["blocks.1.hook_out"].save("probes/L1")
    probe = load_probe("probes/L1")
    with probe.attach(model) as live:
        model(tokens)
    live.last  # [batch] scores at the answer position
"""

from whitebox.probes.artifact import ProbeError, model_identity
from whitebox.probes.fit import fit_ccs_probes, fit_probes
from whitebox.probes.live import LiveScores
from whitebox.probes.metrics import accuracy, auroc, recall_at_fpr
from whitebox.probes.probe import Probe, load_probe

__all__ = [
    "LiveScores",
    "Probe",
    "ProbeError",
    "accuracy",
    "auroc",
    "fit_ccs_probes",
    "fit_probes",
    "load_probe",
    "model_identity",
    "recall_at_fpr",
]
