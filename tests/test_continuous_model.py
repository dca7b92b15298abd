"""CORL's continuous DT: shared positional embedding, tanh squashing, causality, loss, schedule,
normalized score, all on hand-built inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fdt.continuous.environments import TaskSizes, normalized_score
from fdt.continuous.model import ContinuousDecisionTransformer, ModelShape
from fdt.continuous.training import DTParams, build_model, make_optimizer, masked_mse


def small_model() -> ContinuousDecisionTransformer:
    torch.manual_seed(0)
    shape = ModelShape(observation_size=3, action_size=2, seq_len=4, episode_len=10, embedding_dim=8,
                       num_layers=2, num_heads=2, attention_dropout=0.0, residual_dropout=0.0,
                       embedding_dropout=0.0, max_action=3.0)
    return ContinuousDecisionTransformer(shape).eval()


def test_one_positional_embedding_is_shared_by_a_transitions_three_tokens() -> None:
    model = small_model()
    with torch.no_grad():
        for layer in (model.state_emb, model.action_emb, model.return_emb):
            layer.weight.zero_()
            layer.bias.zero_()
        model.return_emb.bias.fill_(1.0)   # R token: 1 + time
        model.state_emb.bias.fill_(10.0)   # s token: 10 + time
        model.action_emb.bias.fill_(100.0)  # a token: 100 + time
        model.timestep_emb.weight.copy_(torch.arange(14.0)[:, None].expand(14, 8))
    tokens = model.tokens(torch.zeros(1, 3, 3), torch.zeros(1, 3, 2), torch.zeros(1, 3),
                          torch.tensor([[5, 6, 7]]))
    assert tokens.shape == (1, 9, 8)
    # (R_5, s_5, a_5, R_6, s_6, a_6, R_7, s_7, a_7), every width the same value
    assert tokens[0, :, 0].tolist() == [6, 15, 105, 7, 16, 106, 8, 17, 107]
    assert (tokens == tokens[..., :1]).all()


def test_actions_are_tanh_squashed_to_the_bound() -> None:
    model = small_model()
    with torch.no_grad():
        model.action_head.weight.zero_()
        model.action_head.weight[0, 0] = 1.0
        model.action_head.weight[1, 1] = -2.0
        model.action_head.bias.copy_(torch.tensor([0.0, 0.5]))
    hidden = torch.zeros(1, 8)
    hidden[0, :2] = torch.tensor([0.3, 100.0])
    squashed = model.squash(hidden)[0]
    assert squashed[0].item() == pytest.approx(3.0 * math.tanh(0.3), rel=1e-6)
    assert squashed[1].item() == pytest.approx(-3.0, rel=1e-6)  # saturated at -max_action
    big = torch.randn(2, 4, 3) * 1e3
    actions = model(big, torch.randn(2, 4, 2) * 1e3, torch.randn(2, 4) * 1e3, torch.zeros(2, 4, dtype=torch.long))
    assert actions.shape == (2, 4, 2) and actions.abs().max() <= 3.0


def test_action_bound_is_corls_one_unless_the_environments_is_asked_for() -> None:
    """CORL scales the tanh head by max_action = 1.0 whatever the task; null takes the bound."""
    pendulum = TaskSizes(observation_size=4, action_size=1, max_action=3.0, max_episode_steps=1000)
    small = dict(embedding_dim=8, num_layers=1, seq_len=5, episode_len=10)
    assert build_model(pendulum, DTParams(**small)).shape.max_action == 1.0
    assert build_model(pendulum, DTParams(**small, max_action=None)).shape.max_action == 3.0
    assert build_model(pendulum, DTParams(**small, max_action=2.5)).shape.max_action == 2.5


def test_predictions_never_see_the_future() -> None:
    """Changing step 3 (its return, state and action) leaves the actions of steps 0..2 as they
    were: causal attention, so right padding needs no mask."""
    model = small_model()
    states, actions, returns = torch.randn(1, 4, 3), torch.randn(1, 4, 2), torch.randn(1, 4)
    steps = torch.arange(4)[None]
    before = model(states, actions, returns, steps)
    states[0, 3], actions[0, 3], returns[0, 3] = 50.0, -50.0, 9.0
    after = model(states, actions, returns, steps)
    assert torch.equal(before[0, :3], after[0, :3]) and not torch.equal(before[0, 3], after[0, 3])
    # and the action token of a step does not feed the prediction of that same step
    actions[0, 2] = 7.0
    assert torch.equal(model(states, actions, returns, steps)[0, 2], after[0, 2])


def test_masked_mse_averages_over_every_element() -> None:
    predicted = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    target = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1.0, 0.0]])
    # (1 + 4) over 4 elements: CORL multiplies by the mask, then takes the mean of all
    assert masked_mse(predicted, target, mask).item() == 1.25


def test_learning_rate_warms_up_then_stays() -> None:
    params = DTParams(learning_rate=0.01, warmup_steps=4, embedding_dim=8, num_layers=1)
    model = build_model(TaskSizes(3, 2, 1.0, 10), params)
    optimizer, schedule = make_optimizer(model, params)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    # CORL's LambdaLR: min((step + 1) / warmup, 1)
    np.testing.assert_allclose(seen, [0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])
    assert optimizer.defaults["weight_decay"] == 1e-4 and optimizer.defaults["betas"] == (0.9, 0.999)


def test_normalized_score_by_hand() -> None:
    assert normalized_score(55.0, random=10.0, expert=100.0) == 50.0
    assert normalized_score(10.0, random=10.0, expert=100.0) == 0.0
    assert normalized_score(-35.0, random=10.0, expert=100.0) == -50.0
    # D4RL's Hopper references: 3234.3 expert, -20.272305 random
    assert normalized_score(3234.3, -20.272305, 3234.3) == 100.0
