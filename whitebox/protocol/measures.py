"""What treatment did to the hidden behaviour, measured the same way at every evaluation point.

Behaviour (clean accuracy, ASR) says whether the model still acts on the trigger; the probes say
whether it still represents it: the frozen probe from the locate step (does the old direction
still read the trigger?) and probes refitted at every residual hook on the current weights (is the
trigger linearly readable anywhere at the answer position?). Refitting is what tells "the
representation moved" (frozen AUROC drops, refit stays high) from "it is gone" (both drop). The
frozen Mahalanobis detector (fitted on clean inputs only) asks the same without labels.

With the located circuit, three more (absolute values; reports divide by the untreated model's):
- circuit_mass: the path-integrated attribution-patching estimate (locate.attribution_steps
  gradient points, as the circuit was located with) of the circuit's joint share in the trigger's
  effect on the logit difference (deceptive minus honest), summed over its components;
- circuit_ablation_effect: how far mean-ablating the circuit moves that logit difference on
  triggered inputs (a suppressed circuit still computes, so ablating it still moves the logits);
- circuit_weight_norm: the norm of the circuit's parameter slices; with the planted model's slices
  as reference, circuit_weight_change (||theta_c - theta_c0|| / ||theta_c0||, which sees weights
  rewritten at equal norm) and circuit_weight_cosine (cos(theta_c, theta_c0)); and
  circuit_param_share, the circuit's share of all parameter entries, to read the gradient share
  against (the share an evenly spread gradient would give it);
- circuit_transplant_asr and circuit_transplant_metric_gain: the model run on the triggered pairs
  with the planted model's circuit activations patched in (whitebox.attribution.transplant): does
  the behaviour come back when the planted circuit's output is given to the treated model?
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from datasets import Dataset

from whitebox.attribution import Circuit, GradientShare
from whitebox.attribution.integrated_patching import DEFAULT_STEPS, integrated_patching
from whitebox.attribution.padding import attending
from whitebox.attribution.params import masked_weights
from whitebox.attribution.transplant import transplant_effect
from whitebox.capture import capture
from whitebox.config import LocateConfig, ModelConfig
from whitebox.probes import MahalanobisDetector, Probe, auroc, evaluate_detector, fit_probes
from whitebox.tasks import ContrastPairs, Task


@dataclass
class Measures:
    """Callable on a model: the measures of one evaluation point, as flat floats."""

    task: Task
    model_cfg: ModelConfig
    locate: LocateConfig
    held_out: Dataset  # the task's evaluation set: behaviour
    probe_fit: Dataset  # half carrying the hidden label: refitted probes
    probe_test: Dataset  # held-out for every probe AUROC
    frozen: Probe | None = None
    detector: MahalanobisDetector | None = None
    circuit: Circuit | None = None
    pairs: ContrastPairs | None = None  # for the circuit measures
    seed: int = 0
    planted_circuit: torch.Tensor | None = None  # the planted model's circuit weights (masked_weights), the reference
    donor: dict[str, torch.Tensor] | None = None  # the planted model's circuit activations on the triggered pairs
    _seen: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        """The measures of `model`; weights measured before (every cell starts from the planted ones) are not measured again."""
        key = weights_digest(model)
        if key not in self._seen:
            self._seen[key] = self._measure(model)
        return dict(self._seen[key])

    def _measure(self, model: torch.nn.Module) -> dict[str, float]:
        out = {k: v for k, v in self.task.evaluate(model, self.held_out).items() if k != "loss"}  # loss: on planted targets
        label = self.task.hidden_label
        test = capture(model, self.probe_test, self.locate.hooks, positions=self.locate.position, labels=label, cfg=self.model_cfg)
        if self.frozen is not None:
            acts, labels = test.acts[self.frozen.hook], test.labels
            scores = torch.as_tensor(self.frozen.score(acts))
            out["frozen_probe_auroc"] = float(auroc(scores, labels))
            out["frozen_probe_score"] = float(torch.sigmoid(scores[labels == 1]).mean())
        if self.detector is not None:
            out["detector_auroc"] = evaluate_detector(self.detector, test.acts[self.detector.hook], test.labels)["auroc"]
        if self.circuit is not None and self.pairs is not None:
            out.update(circuit_measures(model, self.circuit, self.pairs, self.model_cfg, self.locate.attribution_steps,
                                        self.planted_circuit, self.donor))
        fit = capture(model, self.probe_fit, self.locate.hooks, positions=self.locate.position, labels=label, cfg=self.model_cfg)
        refit = fit_probes(fit, kind=self.locate.probe, C=self.locate.C, held_out=test, seed=self.seed, control=False)
        out["refit_probe_auroc_best"] = max(p.metrics["auroc"] for p in refit.values())
        return out


@torch.no_grad()
def weights_digest(model: torch.nn.Module) -> str:
    """A hash of every parameter's bytes: equal only for the very same weights."""
    digest = hashlib.sha256()
    for name, p in model.named_parameters():
        digest.update(name.encode())
        digest.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def circuit_measures(
    model: torch.nn.Module, circuit: Circuit, pairs: ContrastPairs, model_cfg: ModelConfig, steps: int = DEFAULT_STEPS,
    reference: torch.Tensor | None = None,
    donor: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """circuit_mass (with `steps` gradient points), circuit_ablation_effect and circuit_weight_norm of `model` (module
    docstring); with the planted model's circuit activations (`donor`), its transplant measures too."""
    pairs = pairs.to(next(model.parameters()).device)
    mass = sum(integrated_patching(model, pairs, circuit.units, steps=steps).scores.values())
    with torch.no_grad(), attending(model, pairs.triggered_mask):
        plain = float(pairs.mean_metric(model(pairs.triggered)))
        with circuit.ablate(model, "mean", model_cfg=model_cfg):
            ablated = float(pairs.mean_metric(model(pairs.triggered)))
    share = GradientShare(model, circuit.units)
    out = {
        "circuit_mass": float(mass),
        "circuit_ablation_effect": plain - ablated,
        "circuit_weight_norm": share(model)["circuit.weight_norm"],
        "circuit_param_share": share.param_share,
    }
    if reference is not None:
        now = masked_weights(model, share.masks)
        out["circuit_weight_change"] = float((now - reference).norm() / reference.norm())
        out["circuit_weight_cosine"] = float(torch.nn.functional.cosine_similarity(now, reference, dim=0))
    if donor is not None:
        out.update({f"circuit_{k}": v for k, v in transplant_effect(model, circuit.units, pairs, donor).items()})
    return out
