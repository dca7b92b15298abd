"""TensorFlow 1's Adam, as batch_rl's C51, QR-DQN, REM, Ensemble-DQN and CQL step (issue 29):
by hand, and against TensorFlow 1's update rule written out in float64 numpy over 300 updates."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fdt.agents.optimizers import TFAdam
from fdt.agents.registry import make_agent


def test_tensorflow_adam_by_hand() -> None:
    """QR-DQN's settings (lr 5e-5, epsilon 3.125e-4), gradients 1e-3 then -2e-3."""
    w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer = TFAdam([w], lr=5e-5, epsilon=3.125e-4)
    w.grad = torch.tensor([1e-3], dtype=torch.float64)
    optimizer.step()
    # lr_1 = 5e-5 sqrt(0.001) / 0.1 = 1.58114e-5; m = 1e-4; v = 1e-9:
    # 1.58114e-5 * 1e-4 / (3.16228e-5 + 3.125e-4) = 4.59469e-6 (torch's Adam: 3.81e-5)
    assert w.item() == pytest.approx(-4.594694e-6, rel=1e-6)
    w.grad = torch.tensor([-2e-3], dtype=torch.float64)
    optimizer.step()
    # lr_2 = 5e-5 sqrt(1 - 0.999^2) / (1 - 0.9^2) = 1.176584e-5; m = -1.1e-4; v = 4.999e-9:
    # the step is 1.176584e-5 * 1.1e-4 / (7.07036e-5 + 3.125e-4) = 3.377426e-6 up
    assert w.item() == pytest.approx(-4.594694e-6 + 3.377426e-6, rel=1e-5)
    assert optimizer.state[w]["step"] == 2


def test_every_adam_agent_steps_with_tensorflows_adam() -> None:
    for name in ("c51", "qr_dqn", "rem", "ensemble_dqn", "cql"):
        agent = make_agent(name, {"alpha": 1.0} if name == "cql" else None)
        optimizer = agent.optimizer(agent.network(2).parameters())
        assert isinstance(optimizer, TFAdam), name
        assert optimizer.defaults["lr"] == agent.params.learning_rate
        assert optimizer.defaults["epsilon"] == agent.params.adam_epsilon == 3.125e-4
    assert not isinstance(make_agent("cql", {"base": "dqn", "alpha": 1.0}).optimizer(
        make_agent("dqn").network(2).parameters()), TFAdam)  # DQN's RMSProp, as dqn.gin


def _batches(count: int, size: int, generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """Random transitions whose frames are smooth, as game frames are: 6x6 random images
    enlarged to 84x84. (On pixel noise, a float32 and a float64 run part after about 60
    updates, through ReLUs whose inputs sit near 0, whatever the optimizer.)"""
    def states() -> torch.Tensor:
        coarse = torch.randint(0, 256, (size, 4, 6, 6), generator=generator).float()
        return F.interpolate(coarse, size=(84, 84), mode="bilinear").to(torch.uint8)

    return [{"state": states(), "next_state": states(),
             "action": torch.randint(0, 4, (size,), generator=generator),
             "reward": torch.randint(-1, 2, (size,), generator=generator).float(),
             "terminal": torch.rand(size, generator=generator) < 0.1} for _ in range(count)]


def _tf1_adam_trajectory(net: torch.nn.Module, target: torch.nn.Module, agent,
                         batches: list[dict[str, torch.Tensor]]) -> list[np.ndarray]:
    """TensorFlow 1's update written out in float64 numpy, on the gradients of the float32
    network at the trajectory's own (rounded) weights, as TensorFlow computes them."""
    lr, eps, b1, b2 = agent.params.learning_rate, agent.params.adam_epsilon, 0.9, 0.999
    weights = [p.detach().double().numpy().copy() for p in net.parameters()]
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    for t, batch in enumerate(batches, 1):
        with torch.no_grad():
            for p, w in zip(net.parameters(), weights):
                p.copy_(torch.from_numpy(w))
        net.zero_grad(set_to_none=True)
        agent.loss(net, target, batch, torch.Generator()).backward()
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for i, p in enumerate(net.parameters()):
            g = p.grad.double().numpy()
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            weights[i] = weights[i] - lr_t * m[i] / (np.sqrt(v[i]) + eps)
    return weights


@pytest.fixture
def one_thread():
    """One torch thread: on a shared CPU, 1,200 small passes run faster without the pool."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_qr_dqn_follows_tensorflows_adam_for_300_updates(one_thread: None) -> None:
    torch.manual_seed(0)
    agent = make_agent("qr_dqn")  # batch_rl's quantile.gin: 200 quantiles, lr 5e-5, eps 3.125e-4
    online = agent.network(4)
    target = copy.deepcopy(online)
    start = copy.deepcopy(online)
    batches = _batches(300, 2, torch.Generator().manual_seed(1))
    optimizer = agent.optimizer(online.parameters())
    for batch in batches:
        loss = agent.loss(online, target, batch, torch.Generator())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    reference = _tf1_adam_trajectory(start, target, agent, batches)
    moved = max(float(np.abs(w - p.detach().double().numpy()).max())
                for w, p in zip(reference, target.parameters()))
    assert moved > 1e-3  # the trajectory goes somewhere, so agreeing to 1e-4 says something
    error = max(float(np.abs(w - p.detach().double().numpy()).max())
                for w, p in zip(reference, online.parameters()))
    assert error < 1e-4
