"""ale-py's vector environment as an evaluation backend: its frames are the dataset's (OpenCV's
INTER_AREA of the pooled screens, byte for byte), its seeded resets play the no-op count we ask
for, and rollouts on it give the same episodes and returns as our worker processes under both
protocols."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fdt.atari import AtariEnvironment, resolve_rom
from fdt.evaluation.environments import NOOP_SEEDS, VectorPool, make_pool
from fdt.evaluation.policies import ModelPolicy, UniformPolicy
from fdt.evaluation.protocols import PROTOCOLS, Job, protocol_jobs
from fdt.evaluation.rollout import rollout
from fdt.models.transformer import DecisionTransformer, ModelConfig

ale_py = pytest.importorskip("ale_py")


def _first_noop_draw(seed: int) -> int:
    """The first draw of libstdc++'s uniform_int_distribution(0, 29) over std::mt19937(seed)
    (Lemire's method; a product whose low word is under 2**32 % 30 is drawn again)."""
    state = [seed]
    for i in range(1, 624):
        state.append((1812433253 * (state[-1] ^ (state[-1] >> 30)) + i) & 0xFFFFFFFF)
    for i in range(623):
        y = (state[i] & 0x80000000) | (state[i + 1] & 0x7FFFFFFF)
        value = state[(i + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
        value ^= value >> 11
        value ^= (value << 7) & 0x9D2C5680
        value ^= (value << 15) & 0xEFC60000
        value ^= value >> 18
        if (value * 30) & 0xFFFFFFFF >= 2**32 % 30:
            return (value * 30) >> 32
    raise AssertionError("unreachable")


def test_noop_seeds_play_their_noop_count() -> None:
    """NOOP_SEEDS[n] draws n (the smallest such seed), and in the binary a reset seeded with it
    plays n raw no-op frames (its episode_frame_number), checked on a few."""
    assert [_first_noop_draw(seed) for seed in NOOP_SEEDS] == list(range(len(NOOP_SEEDS)))
    assert all(_first_noop_draw(s) != n for n, seed in enumerate(NOOP_SEEDS) for s in range(seed))
    counts = [0, 1, 16, 29]
    vector = ale_py.ALEVectorInterface(str(resolve_rom("Breakout")), len(counts), 4, 1, 84, 84,
                                       True, True, len(NOOP_SEEDS), False, False, False, False,
                                       10**9, 0.0, False, len(counts), 1, -1, "NextStep")
    _, info = vector.reset(np.arange(len(counts)), np.array([NOOP_SEEDS[n] for n in counts]))
    assert info["episode_frame_number"][np.argsort(info["env_id"])].tolist() == counts


def test_frames_rewards_and_lives_equal_our_environment_byte_for_byte() -> None:
    """Random actions through a life loss: every frame, reward, game over and lives count."""
    ours = AtariEnvironment("Breakout", seed=0, sticky_actions=0.0)
    pool = VectorPool("Breakout", PROTOCOLS["fdt"], envs=2, threads=1)
    try:
        noops = 7
        (frame, lives), = pool.run([("start", 0, 123, noops)])
        assert np.array_equal(frame, ours.reset(noops)) and lives == ours.lives()
        rng = np.random.default_rng(0)
        lost = False
        for _ in range(150):
            action = int(rng.integers(4))
            (frame, reward, over, lives), = pool.run([("step", 0, action)])
            expected, expected_reward, expected_over = ours.step(action)
            assert (reward, over, lives) == (expected_reward, expected_over, ours.lives())
            if over:
                break
            assert np.array_equal(frame, expected)
            lost = lost or lives < 5
        assert lost, "a life is lost within 150 random steps"
    finally:
        pool.close()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # a 1-layer model: torch's threads would only wait on each other on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rows(backend: str, jobs: list[Job], protocol: str, max_steps: int) -> list[tuple]:
    torch.manual_seed(0)
    model = DecisionTransformer(ModelConfig(num_actions=4, context_length=4, max_timestep=50,
                                            n_layer=1, n_head=2, n_embd=16))
    rows = rollout(ModelPolicy(model, slots=2), "Breakout", jobs, PROTOCOLS[protocol], envs=2,
                   max_steps=max_steps, backend=backend, record_fires=True)
    return sorted((r["setup"], r["test_seed"], r["episode"], r["return"], r["steps"],
                   r["game_over"], r["noops"], tuple(r["fire_steps"])) for r in rows)


def test_fdt_protocol_episodes_equal_the_worker_processes() -> None:
    """No-ops, sampling, forced FIRE at reset and after life losses, caps: the same episodes."""
    jobs = protocol_jobs(["sample+noop", "eps+noop"], [5.0], [0], 2)[1:]
    processes = _rows("processes", jobs, "fdt", 200)
    assert any(r[6] > 0 for r in processes) and any(r[5] for r in processes)
    assert _rows("vector", jobs, "fdt", 200) == processes


def test_dopamine_protocol_episodes_equal_the_worker_processes() -> None:
    """Sticky actions drawn from each episode's seed, as a fresh ALE per episode draws them."""
    jobs = [Job("eps", 0.0, 3, e) for e in range(3)]
    assert _rows("vector", jobs, "dopamine", 100) == _rows("processes", jobs, "dopamine", 100)


def test_sticky_actions_with_noops_and_unknown_backends_are_refused() -> None:
    pool = VectorPool("Breakout", PROTOCOLS["dopamine"], envs=2, threads=1)
    try:
        with pytest.raises(ValueError, match="sticky actions and no-ops"):
            pool.run([("start", 0, 5, 3)])
    finally:
        pool.close()
    with pytest.raises(ValueError, match="unknown environment backend 'gym'"):
        make_pool("Breakout", PROTOCOLS["fdt"], backend="gym")


def test_episodes_matched_to_the_coming_noop_draws_skip_the_reload() -> None:
    """Under the FDT protocol a slot takes an episode needing the no-op count its unseeded reset
    draws next (ale-py's generator, followed here): fewer ROM reloads, the same episodes."""
    jobs = protocol_jobs(["argmax+noop", "sample", "eps+noop"], [0.0], [0, 1, 2], 4)
    played = {}
    for backend in ("processes", "vector"):
        pool = make_pool("Breakout", PROTOCOLS["fdt"], backend=backend, envs=8, workers=1)
        try:
            rows = rollout(UniformPolicy(4, 8), "Breakout", jobs, PROTOCOLS["fdt"], envs=8,
                           max_steps=25, pool=pool)
        finally:
            pool.close()
        played[backend] = sorted((r["setup"], r["test_seed"], r["episode"], r["return"],
                                  r["steps"], r["noops"]) for r in rows)
    assert played["vector"] == played["processes"] and len(played["vector"]) == len(jobs)
    # (every start checks the no-op frames it played against the episode's count)
    assert isinstance(pool, VectorPool) and pool.reloads < len(jobs) - 4, pool.reloads


def _always_left_oracle() -> torch.nn.Module:
    from fdt.oracle.c51 import C51Network

    net = C51Network(4)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.head.bias.view(4, 51)[3, -1] = 50.0  # always LEFT
        net.head.bias.view(4, 51)[1, -1] = 49.0  # FIRE second: epsilon's and stickiness's draws
    return net


def test_agents_step_budget_and_oracle_score_are_the_same_on_either_backend(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The Dopamine protocol's two users (an agent's step budget over rounds of one pool, the
    oracle's episodes) give the same episodes on the vector backend as in our processes."""
    import fdt.evaluation.environments as environments
    from fdt.agents.evaluation import score_agent
    from fdt.oracle.scoring import evaluate_oracle

    made: list[int] = []

    class CountedVectorPool(VectorPool):
        def __init__(self, *args: object, **kwargs: object) -> None:
            made.append(1)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(environments, "VectorPool", CountedVectorPool)
    net = _always_left_oracle()
    scored = {backend: score_agent(net, "Breakout", budget="steps", steps=70, episodes=1,
                                   seed=4, max_steps=30, envs=2, backend=backend)
              for backend in ("processes", "vector")}
    assert scored["vector"] == scored["processes"]
    # rounds of 2 episodes of 30 steps until 70 are counted: 3 episodes, the fourth dropped
    assert [e["episode"] for e in scored["vector"]["episodes"]] == [0, 1, 2]
    oracle = {backend: evaluate_oracle(net, "Breakout", episodes=3, seed=5, max_steps=40,
                                       envs=2, progress=False, backend=backend)
              for backend in ("processes", "vector")}
    assert oracle["vector"] == oracle["processes"] and len(oracle["vector"]["episodes"]) == 3
    assert len(made) == 2  # one pool for the agent's rounds, one for the oracle's episodes
