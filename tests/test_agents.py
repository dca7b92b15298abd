"""The agents' losses against hand computations on tiny batches, their networks and optimizers."""

from __future__ import annotations

import math

import pytest
import torch

from fdt.agents.agent import bellman_targets, huber
from fdt.agents.cql import CQL, CQLParams, cql_term
from fdt.agents.dqn import dqn_loss
from fdt.agents.networks import QNetwork, initialize
from fdt.agents.optimizers import TFRMSProp
from fdt.agents.qr_dqn import qr_dqn_loss, quantile_huber_loss
from fdt.agents.registry import AGENTS, UnknownAgentError, make_agent
from fdt.agents.rem import ensemble_loss, random_mixture, rem_loss
from fdt.oracle.c51 import C51Network
from fdt.settings import defaults


def _batch(action: list[int], reward: list[float], terminal: list[bool]) -> dict[str, torch.Tensor]:
    return {"action": torch.tensor(action), "reward": torch.tensor(reward),
            "terminal": torch.tensor(terminal)}


def test_huber_is_quadratic_then_linear() -> None:
    u = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    assert huber(u).tolist() == [1.5, 0.125, 0.0, 0.125, 2.5]
    assert huber(torch.tensor([3.0]), kappa=2.0).tolist() == [2.0 * (3.0 - 1.0)]


def test_dqn_huber_target_by_hand() -> None:
    q = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    next_q = torch.tensor([[3.0, 0.0], [10.0, 1.0]])
    batch = _batch([1, 0], [1.0, -1.0], [False, True])
    # y0 = 1 + 0.5 * max(3, 0) = 2.5 against Q = 2: error 0.5, Huber 0.125.
    # y1 = -1 (terminal: the reward alone) against Q = 0.5: error -1.5, Huber 1.5 - 0.5 = 1.0.
    assert dqn_loss(q, next_q, batch, gamma=0.5).item() == pytest.approx((0.125 + 1.0) / 2)
    targets = bellman_targets(batch["reward"], batch["terminal"], torch.tensor([3.0, 10.0]), 0.5)
    assert targets.tolist() == [2.5, -1.0]


def test_quantile_huber_loss_by_hand() -> None:
    # K = 2 quantiles at tau = 0.25, 0.75; theta = (0, 1); targets T = (0.5, 3).
    # u_0j = (0.5, 3), u_1j = (-0.5, 2); Huber (0.125, 2.5), (0.125, 1.5);
    # weights |tau_i - 1{u < 0}|: (0.25, 0.25), (0.25, 0.75).
    # sum_i mean_j: (0.03125 + 0.625) / 2 + (0.03125 + 1.125) / 2 = 0.90625.
    loss = quantile_huber_loss(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 3.0]]), kappa=1.0)
    assert loss.tolist() == [pytest.approx(0.90625)]


def test_quantile_huber_loss_is_its_definition_with_gradients() -> None:
    torch.manual_seed(0)
    quantiles, targets = torch.randn(3, 5, requires_grad=True), torch.randn(3, 4)
    errors = targets[:, None, :] - quantiles[:, :, None]
    tau = (torch.arange(5) + 0.5) / 5
    weight = (tau[None, :, None] - (errors.detach() < 0).float()).abs()
    definition = (weight * huber(errors, 0.5)).mean(2).sum(1)
    loss = quantile_huber_loss(quantiles, targets, kappa=0.5)
    assert torch.allclose(loss, definition)
    assert torch.allclose(torch.autograd.grad(loss.sum(), quantiles)[0],
                          torch.autograd.grad(definition.sum(), quantiles)[0])


def test_qr_dqn_targets_follow_the_greedy_next_action() -> None:
    quantiles = torch.tensor([[[0.0, 1.0], [5.0, 5.0]]])  # action 0 taken: theta = (0, 1)
    # Next action 1 has the larger mean (1.25 > 1.0); its quantiles (0.5, 2.0) discounted by 0.5
    # plus the reward 0.25 give the targets (0.5, 1.25).
    next_quantiles = torch.tensor([[[0.0, 2.0], [0.5, 2.0]]])
    batch = _batch([0], [0.25], [False])
    expected = quantile_huber_loss(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 1.25]]), 1.0)
    loss = qr_dqn_loss(quantiles, next_quantiles, batch, gamma=0.5, kappa=1.0)
    assert loss.item() == pytest.approx(expected.item())


def test_rem_mixture_with_a_fixed_mixing_vector_by_hand() -> None:
    # One state, actions 0/1, heads (1, 3) and (2, 0); alpha = (0.25, 0.75): mixed Q = (2.5, 0.5).
    heads = torch.tensor([[[1.0, 3.0], [2.0, 0.0]]])
    # Next heads (4, 0) and (0, 2): mixed (1.0, 1.5), max 1.5; y = 1 + 0.5 * 1.5 = 1.75.
    next_heads = torch.tensor([[[4.0, 0.0], [0.0, 2.0]]])
    batch = _batch([0], [1.0], [False])
    loss = rem_loss(heads, next_heads, batch, 0.5, torch.tensor([0.25, 0.75]))
    assert loss.item() == pytest.approx(0.5 * 0.75 ** 2)  # error 1.75 - 2.5
    # Ensemble-DQN: each head on its own target: y = (1 + 0.5 * 4, 1 + 0.5 * 2) = (3, 2) against
    # (1, 3): errors (2, -1), Huber (1.5, 0.5), mean 1.0.
    assert ensemble_loss(heads, next_heads, batch, 0.5).item() == pytest.approx(1.0)


def test_rem_mixtures_are_convex_and_seeded() -> None:
    a = random_mixture(200, torch.Generator().manual_seed(1))
    b = random_mixture(200, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and (a >= 0).all() and a.sum().item() == pytest.approx(1.0)


def test_cql_logsumexp_term_by_hand() -> None:
    q = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    action = torch.tensor([0, 2])
    first = math.log(math.e + math.e ** 2 + math.e ** 3) - 1.0
    second = math.log(3.0)
    assert cql_term(q, action).item() == pytest.approx((first + second) / 2)


def test_cql_adds_alpha_times_the_term_to_its_base() -> None:
    torch.manual_seed(0)
    states = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    batch = {"state": states, "next_state": states.flip(0), **_batch([1, 0], [0.0, 1.0], [False, True])}
    for base in ("qr_dqn", "dqn"):
        agent = CQL(CQLParams(base=base, alpha=2.0, num_quantiles=3))
        online, target = agent.network(2), agent.network(2)
        outputs = online(states)
        assert outputs.shape == (2, 2, 1 if base == "dqn" else 3)
        plain = CQL(CQLParams(base=base, alpha=0.0, num_quantiles=3))
        g = torch.Generator()
        with torch.no_grad():
            difference = agent.loss(online, target, batch, g) - plain.loss(online, target, batch, g)
            assert difference.item() == pytest.approx(
                2.0 * cql_term(online.q_values(states), batch["action"]).item(), rel=1e-5)


def test_tensorflow_rmsprop_by_hand() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = TFRMSProp([w], lr=0.1, decay=0.9, momentum=0.0, epsilon=1e-5, centered=True)
    (2.0 * w).sum().backward()  # gradient 2
    optimizer.step()
    ms, mg = 0.9 * 1.0 + 0.1 * 4.0, 0.1 * 2.0  # the mean square starts at 1, as TensorFlow's
    assert w.item() == pytest.approx(1.0 - 0.1 * 2.0 / math.sqrt(ms - mg ** 2 + 1e-5))


def test_networks_and_their_initialisation() -> None:
    net = QNetwork(6, 200, init="variance_scaling")
    states = torch.zeros((3, 4, 84, 84), dtype=torch.uint8)
    assert net(states).shape == (3, 6, 200) and net.q_values(states).shape == (3, 6)
    bound = math.sqrt(math.sqrt(3.0) / 512)  # VarianceScaling(1/sqrt(3), fan_in 512, uniform)
    assert net.head.weight.abs().max().item() <= bound and net.head.weight.std().item() > bound / 3
    assert torch.count_nonzero(net.head.bias) == 0
    conv = QNetwork(6, 1, init="glorot").torso.convs[0]
    assert conv.weight.abs().max().item() <= math.sqrt(6.0 / (8 * 8 * 4 + 8 * 8 * 32))
    with pytest.raises(ValueError, match="init must be one of"):
        initialize(net, "orthogonal")


def test_registry_builds_every_agent_with_the_schemas_defaults() -> None:
    assert sorted(AGENTS) == sorted(["dqn", "c51", "qr_dqn", "rem", "ensemble_dqn", "cql"])
    from fdt.config import agent_names

    assert sorted(agent_names()) == sorted(AGENTS)
    for name in AGENTS:
        set_alpha = {"alpha": 4.0} if name == "cql" else {}  # CQL's is left to the data regime
        agent = make_agent(name, set_alpha)
        assert agent.name == name
        from dataclasses import asdict
        assert asdict(agent.params) == defaults("agents", name) | set_alpha
    assert isinstance(make_agent("c51").network(4), C51Network)
    assert make_agent("rem", {"num_heads": 3}).params.num_heads == 3
    with pytest.raises(UnknownAgentError, match="unknown agent 'dqnn'"):
        make_agent("dqnn")


def test_every_agent_updates_its_network() -> None:
    torch.manual_seed(0)
    states = torch.randint(0, 256, (4, 4, 84, 84), dtype=torch.uint8)
    batch = {"state": states, "next_state": states.roll(1, 0),
             **_batch([0, 1, 2, 3], [0.0, 1.0, -1.0, 0.0], [False, False, True, False])}
    small = {"rem": {"num_heads": 4}, "ensemble_dqn": {"num_heads": 4},
             "qr_dqn": {"num_quantiles": 5}, "cql": {"num_quantiles": 5, "alpha": 4.0}}
    for name in AGENTS:
        agent = make_agent(name, small.get(name))
        online, target = agent.network(4), agent.network(4)
        target.load_state_dict(online.state_dict())
        before = {k: v.clone() for k, v in online.state_dict().items()}
        optimizer = agent.optimizer(online.parameters())
        loss = agent.loss(online, target, batch, torch.Generator().manual_seed(0))
        assert torch.isfinite(loss), name
        loss.backward()
        optimizer.step()
        assert any(not torch.equal(before[k], v) for k, v in online.state_dict().items()), name
