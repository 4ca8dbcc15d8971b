"""Probes and detectors on hook activations: fit many hooks at once, score, save/load, attach to a live model.

    captured = capture(model, data, "resid", labels="triggered")
    probes = fit_probes(captured, held_out=capture(model, test, "resid", labels="triggered"))
    probes["blocks.1.hook_out"].save("probes/L1")
    probe = load_probe("probes/L1")
    with probe.attach(model) as live:
        model(tokens)
    live.last  # [batch] scores at the answer position

Probe kinds are registered in whitebox.probes.kinds (`register_probe_kind`); probes, the
Mahalanobis detector and the multinomial read-out share the HookArtifact base (artifact.py).
"""

from whitebox.fingerprint import model_identity
from whitebox.probes.artifact import HookArtifact
from whitebox.probes.fit import fit_ccs_probes, fit_probes
from whitebox.probes.kinds import PROBE_KINDS, ProbeKind, register_probe_kind
from whitebox.probes.live import LiveScores
from whitebox.probes.mahalanobis import MahalanobisDetector, evaluate_detector, fit_detectors, load_detector
from whitebox.probes.metrics import accuracy, auroc, recall_at_fpr
from whitebox.probes.probe import Probe, load_probe
from whitebox.probes.readout import Readout, fit_readout, load_readout
from whitebox.runtime.artifacts import ProbeError

__all__ = [
    "PROBE_KINDS", "HookArtifact", "LiveScores", "MahalanobisDetector", "Probe", "ProbeError", "ProbeKind", "Readout",
    "accuracy", "auroc", "evaluate_detector", "fit_ccs_probes", "fit_detectors", "fit_probes", "fit_readout",
    "load_detector", "load_probe", "load_readout", "model_identity", "recall_at_fpr", "register_probe_kind",
]
