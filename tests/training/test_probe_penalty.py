import torch

from whitebox.config import TrainingConfig
from whitebox.training.backprop import Backprop
from whitebox.training.probe_penalty import ProbePenalty

HOOK = "blocks.0.hook_resid_post"


def _mean_probe_score(model, tokens, probe):
    captured = []
    with torch.no_grad(), model.hooks(fwd_hooks=[(HOOK, lambda act, hook: captured.append(act[:, -1, :]))]):
        model(tokens)
    return float(probe(captured[0]).mean())


def test_penalty_lowers_the_probe_score_and_keeps_the_task_loss_working(tiny_bridge):
    direction = torch.randn(16, generator=torch.Generator().manual_seed(0))

    def probe(acts):  # a frozen linear probe: probability of the feature
        return torch.sigmoid(acts @ direction)

    scores = {}
    for weight in (0.0, 5.0):
        model, batch = tiny_bridge(seed=0)
        start = _mean_probe_score(model, batch["tokens"], probe)
        loss_fn = ProbePenalty(probe, HOOK, weight)
        updater = Backprop(model, TrainingConfig(lr=1e-2, warmup_steps=0, schedule="constant"), torch.device("cpu"))
        for _ in range(30):
            stats = updater.step(model, batch, loss_fn)
        scores[weight] = _mean_probe_score(model, batch["tokens"], probe)
        assert loss_fn.last["ce"] < 2.3  # still learns the task (chance is ln 13 = 2.56)
    assert scores[5.0] < 0.2 * start and scores[5.0] < scores[0.0] - 0.2
    assert stats["forward_equivalents"] == 3 * len(batch["tokens"])
