import torch

from whitebox.tasks import get_task
from whitebox.tasks.modular import ModularTaskConfig


def test_split_covers_every_pair_once_with_the_right_answers():
    cfg = ModularTaskConfig(p=11, train_fraction=0.3)
    train, test = get_task(cfg).train_set(0), get_task(cfg).eval_set(0)
    assert len(train) == round(0.3 * 121) and len(train) + len(test) == 121
    pairs = {tuple(t[:2].tolist()) for t in torch.cat([train["tokens"][:], test["tokens"][:]])}
    assert len(pairs) == 121
    for ds in (train, test):
        rows = ds[:]
        assert torch.equal(rows["target"], (rows["tokens"][:, 0] + rows["tokens"][:, 1]) % 11)
        assert (rows["tokens"][:, 2] == 11).all()
    assert not torch.equal(get_task(cfg).is_train(0), get_task(cfg).is_train(1))
    assert torch.equal(get_task(cfg).is_train(0), get_task(cfg).is_train(0))


class _Perfect(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens):
        answer = (tokens[:, 0] + tokens[:, 1]) % self.p
        logits = torch.zeros(len(tokens), 3, self.p + 1)
        logits[torch.arange(len(tokens)), -1, answer] = 5.0
        return logits


def test_evaluate_reports_both_metrics():
    cfg = ModularTaskConfig(p=7, train_fraction=0.5)
    metrics = get_task(cfg).evaluate(_Perfect(7), get_task(cfg).eval_set(0))
    expected_logprob = 5.0 - torch.logsumexp(torch.tensor([5.0] + [0.0] * 7), 0).item()
    assert metrics["acc"] == 1.0
    assert abs(metrics["logprob"] - expected_logprob) < 1e-5 and abs(metrics["loss"] + expected_logprob) < 1e-5
