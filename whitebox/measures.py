"""What treatment did to the hidden behaviour, measured the same way at every evaluation point.

Behaviour (clean accuracy, ASR) says whether the model still acts on the trigger; the probes say
whether it still represents it: the frozen probe from the locate step (does the old direction
still read the trigger?) and probes refitted at every residual hook on the current weights (is the
trigger linearly readable anywhere at the answer position?). Refitting is what tells "the
representation moved" (frozen AUROC drops, refit stays high) from "it is gone" (both drop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset

from whitebox.capture import capture
from whitebox.config import LocateConfig, ModelConfig
from whitebox.probes import Probe, auroc, fit_probes
from whitebox.tasks import get_task


@dataclass
class Measures:
    """Callable on a model: the measures of one evaluation point, as flat floats."""

    task_cfg: Any
    model_cfg: ModelConfig
    locate: LocateConfig
    held_out: Dataset  # the task's evaluation set: behaviour
    probe_fit: Dataset  # half carrying the hidden label: refitted probes
    probe_test: Dataset  # held-out for every probe AUROC
    frozen: Probe | None = None
    seed: int = 0

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        task = get_task(self.task_cfg.name)
        out = {k: v for k, v in task.evaluate(model, self.held_out).items() if k != "loss"}  # loss: on planted targets
        label = task.HIDDEN
        test = capture(model, self.probe_test, self.locate.hooks, positions=self.locate.position, labels=label, cfg=self.model_cfg)
        if self.frozen is not None:
            acts, labels = test.acts[self.frozen.hook], test.labels
            scores = torch.as_tensor(self.frozen.score(acts))
            out["frozen_probe_auroc"] = float(auroc(scores, labels))
            out["frozen_probe_score"] = float(torch.sigmoid(scores[labels == 1]).mean())
        fit = capture(model, self.probe_fit, self.locate.hooks, positions=self.locate.position, labels=label, cfg=self.model_cfg)
        refit = fit_probes(fit, kind=self.locate.probe, C=self.locate.C, held_out=test, seed=self.seed, control=False)
        out["refit_probe_auroc_best"] = max(p.metrics["auroc"] for p in refit.values())
        return out
