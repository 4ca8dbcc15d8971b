import pytest
import torch

from whitebox.training import ESConfig, es
from whitebox.training.es import (
    EvolutionStrategies,
    centered_ranks,
    es_gradient,
    pair_seeds,
    population_answer_logits,
    sequential_answer_logits,
)
from whitebox.training.feedback import Supervised
from whitebox.training.noise import seeded_normal


def test_centered_ranks_span_half_and_share_ties():
    ranks = centered_ranks(torch.tensor([[3.0, 1.0], [2.0, 2.0], [5.0, 0.0]]))
    assert ranks.min() == -0.5 and ranks.max() == 0.5 and ranks.sum() == 0
    assert ranks[1, 0] == ranks[1, 1] == 0.0  # the two middle values share rank 2.5 of 0..5


def test_gradient_estimate_points_along_the_true_gradient_on_a_quadratic():
    n = 20
    gen = torch.Generator().manual_seed(0)
    theta, centre = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
    sigma = 0.01

    def evaluate(noise):  # fitness of theta + sigma * noise and theta - sigma * noise: [k, 2]
        members = torch.stack([theta + sigma * noise, theta - sigma * noise], dim=1)  # k 2 n
        return -(members - centre).pow(2).sum(-1)

    grad, fitness = es_gradient(evaluate, pair_seeds(seed=1, step=0, pairs=1000), n, sigma, pairs_per_chunk=128)
    true = -2 * (theta - centre)
    assert fitness.shape == (1000, 2)
    assert torch.nn.functional.cosine_similarity(grad, true, dim=0) >= 0.9


def test_one_chunk_draws_each_members_noise_once_and_gives_the_chunked_gradient(monkeypatch):
    n, sigma = 50, 0.05
    theta, centre = torch.randn(n, generator=torch.Generator().manual_seed(4)), torch.zeros(n)
    seeds = pair_seeds(seed=2, step=0, pairs=16)

    def evaluate(noise):
        members = torch.stack([theta + sigma * noise, theta - sigma * noise], dim=1)  # k 2 n
        return -(members - centre).pow(2).sum(-1)

    chunked, fit_chunked = es_gradient(evaluate, seeds, n, sigma, pairs_per_chunk=3)
    draws = []
    monkeypatch.setattr(es, "seeded_normal", lambda seed, *a, **k: draws.append(seed) or seeded_normal(seed, *a, **k))
    whole, fit_whole = es_gradient(evaluate, seeds, n, sigma, pairs_per_chunk=16)
    assert sorted(draws) == sorted(seeds)  # drawn once: the update reuses the evaluated noise
    assert torch.equal(fit_whole, fit_chunked) and torch.allclose(whole, chunked, atol=1e-6)


def test_the_noise_is_drawn_twice_only_when_the_population_s_does_not_fit_the_budget(monkeypatch):
    n, sigma = 50, 0.05
    seeds = pair_seeds(seed=2, step=0, pairs=16)

    def evaluate(noise):
        return torch.stack([noise.sum(-1), -noise.sum(-1)], dim=1)  # k 2

    draws = []
    monkeypatch.setattr(es, "seeded_normal", lambda seed, *a, **k: draws.append(seed) or seeded_normal(seed, *a, **k))
    kept, _ = es_gradient(evaluate, seeds, n, sigma, pairs_per_chunk=3)
    assert sorted(draws) == sorted(seeds)  # 16 pairs x 50 floats fit: every chunk's noise kept for the update
    draws.clear()
    monkeypatch.setattr(es, "KEEP_NOISE_BYTES", 16 * n * 4 - 1)  # one byte short
    again, _ = es_gradient(evaluate, seeds, n, sigma, pairs_per_chunk=3)
    assert sorted(draws) == sorted(seeds + seeds)  # evaluated, then regenerated for the update
    assert torch.equal(kept, again)  # the same update either way
    draws.clear()
    es_gradient(evaluate, seeds, n, sigma, pairs_per_chunk=16)
    assert sorted(draws) == sorted(seeds)  # one chunk is in memory anyway: reused whatever the budget


def test_regenerated_noise_is_bit_identical_to_the_evaluated_noise(monkeypatch, toy_lm, toy_data):
    drawn: dict[int, list[torch.Tensor]] = {}

    def spy(seed, n, device="cpu", dtype=torch.float32):
        torch.randn(7)  # other draws from the global RNG in between must not matter
        noise = seeded_normal(seed, n, device, dtype)
        drawn.setdefault(seed, []).append(noise)
        return noise

    evaluated = []

    def population_spy(model, members, tokens):
        evaluated.append({k: v.clone() for k, v in members.items()})
        return population_answer_logits(model, members, tokens)

    monkeypatch.setattr(es, "seeded_normal", spy)
    monkeypatch.setattr(es, "population_answer_logits", population_spy)
    monkeypatch.setattr(es, "KEEP_NOISE_BYTES", 0)  # the path of a population whose noise does not fit: drawn again
    model = toy_lm()
    cfg = ESConfig(population=8, sigma=0.1, examples_per_forward=2 * 2 * 64)  # two pairs per chunk
    updater = EvolutionStrategies(model, cfg, Supervised(), seed=3)
    theta = {name: p.detach().clone() for name, p in model.named_parameters()}
    updater.step(model, toy_data, loss_fn=None)

    seeds = pair_seeds(3, 0, 4)
    assert sorted(drawn) == sorted(seeds)
    for seed in seeds:  # once to evaluate, once to update
        first, again = drawn[seed]
        assert torch.equal(first, again)
    assert len(evaluated) == 2
    for chunk, members in enumerate(evaluated):  # rows: theta + sigma * eps_j for the chunk's pairs, then minus
        pair = seeds[2 * chunk : 2 * chunk + 2]
        offset = 0
        for name, base in theta.items():
            eps = torch.stack([drawn[s][0][offset : offset + base.numel()] for s in pair]).view(2, *base.shape)
            assert torch.equal(members[name][:2], base + 0.1 * eps)
            assert torch.equal(members[name][2:], base - 0.1 * eps)
            offset += base.numel()


def test_batched_population_matches_member_by_member_and_leaves_the_bridge_intact(tiny_bridge):
    model, batch = tiny_bridge()
    tokens = batch["tokens"][:8]
    before = model(tokens)
    gen = torch.Generator().manual_seed(0)
    members = {n: p.detach() + 0.05 * torch.randn(3, *p.shape, generator=gen) for n, p in model.named_parameters()}
    with torch.no_grad():
        batched = population_answer_logits(model, members, tokens)
        looped = sequential_answer_logits(model, members, tokens)
    assert batched.shape == (3, 8, before.shape[-1])
    torch.testing.assert_close(batched, looped, rtol=1e-4, atol=1e-4)
    assert torch.equal(model(tokens), before)  # no perturbed or vmapped weight is left behind


def test_es_raises_fitness_on_a_toy_task(toy_lm, toy_data):
    model = toy_lm()
    updater = EvolutionStrategies(model, ESConfig(population=64, sigma=0.05, lr=0.05), Supervised(), seed=0)
    first = updater.step(model, toy_data, None)["loss"]
    for _ in range(40):
        last = updater.step(model, toy_data, None)["loss"]
    assert last < 0.7 * first


def test_population_must_be_even():
    with pytest.raises(ValueError, match="even"):
        ESConfig(population=5)


def test_plain_es_moves_each_weight_by_lr_times_the_estimate(toy_lm, toy_data):
    """es_plain: no Adam, so the step is exactly lr x the ES estimate (its size follows the signal)."""
    from whitebox.training.es import PlainESConfig

    model = toy_lm()
    cfg = PlainESConfig(population=8)
    assert cfg.optimizer == "sgd" and cfg.sigma == 0.01
    updater = EvolutionStrategies(model, cfg, Supervised(), seed=3)
    before = torch.cat([p.detach().flatten() for p in updater.params]).clone()
    grad_norm = updater.step(model, toy_data, None)["grad_norm"]
    after = torch.cat([p.detach().flatten() for p in updater.params])
    assert float((after - before).norm()) == pytest.approx(cfg.lr * grad_norm, rel=1e-4)
    with pytest.raises(ValueError):
        PlainESConfig(optimizer="adam")
