"""TensorFlow 1's RMSProp and Adam, batch_rl's optimizers: RMSProp for DQN (dqn.gin:
tf.train.RMSPropOptimizer), Adam for the others (tf.train.AdamOptimizer; `TFAdam` below).

RMSProp:
torch's RMSprop differs in two ways that matter early in training: TensorFlow starts the mean
square at 1 (torch at 0, which makes the first steps about lr / sqrt(1 - decay) large), and adds
epsilon inside the square root (torch outside). Per parameter, with decay rho:

    ms  <- rho * ms + (1 - rho) * g^2                (starts at 1)
    mg  <- rho * mg + (1 - rho) * g                  (centered only; starts at 0)
    mom <- momentum * mom + lr * g / sqrt(ms - mg^2 + epsilon)     (mg = 0 if not centered)
    w   <- w - mom
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


class _PerParameterOptimizer(torch.optim.Optimizer):
    """The loop both optimizers share: each parameter with a gradient is updated from its own
    state, made on its first step; subclasses say how (`_initial_state`, `_update`)."""

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(self._initial_state(p))
                self._update(p, p.grad, state, group)
        return loss

    def _initial_state(self, p: torch.Tensor) -> dict[str, torch.Tensor | int]:
        raise NotImplementedError

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError


class TFRMSProp(_PerParameterOptimizer):
    """TensorFlow 1's RMSProp (the module's docstring gives its update)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, decay: float = 0.9,
                 momentum: float = 0.0, epsilon: float = 1e-10, centered: bool = False) -> None:
        super().__init__(params, {"lr": lr, "decay": decay, "momentum": momentum,
                                  "epsilon": epsilon, "centered": centered})

    def _initial_state(self, p: torch.Tensor) -> dict[str, torch.Tensor | int]:
        return {"ms": torch.ones_like(p), "mg": torch.zeros_like(p), "mom": torch.zeros_like(p)}

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        rho, lr = group["decay"], group["lr"]
        ms, mg, mom = state["ms"], state["mg"], state["mom"]
        ms.mul_(rho).addcmul_(g, g, value=1 - rho)
        denominator = ms.clone()
        if group["centered"]:
            mg.mul_(rho).add_(g, alpha=1 - rho)
            denominator.addcmul_(mg, mg, value=-1)
        denominator.add_(group["epsilon"]).sqrt_()
        mom.mul_(group["momentum"]).addcdiv_(g, denominator, value=lr)
        p.sub_(mom)


class TFAdam(_PerParameterOptimizer):
    """TensorFlow 1's Adam (tf.train.AdamOptimizer), the optimizer of batch_rl's C51, QR-DQN,
    REM and Ensemble-DQN (their gin files) and of CQL's Atari code.

    torch's Adam divides bias-corrected moments, m_hat / (sqrt(v_hat) + epsilon). TensorFlow 1
    instead folds the bias correction into the step size and adds epsilon to the uncorrected
    sqrt(v), so its epsilon weighs 1 / sqrt(1 - beta2^t) times more: about 32x at step 1 with
    beta2 = 0.999, which with batch_rl's epsilon 3.125e-4 shrinks the early steps of small
    gradients up to 8x. Per parameter, at step t (counted from 1):

        lr_t <- lr * sqrt(1 - beta2^t) / (1 - beta1^t)
        m    <- beta1 * m + (1 - beta1) * g
        v    <- beta2 * v + (1 - beta2) * g^2
        w    <- w - lr_t * m / (sqrt(v) + epsilon)

    TensorFlow counts t once per apply_gradients for all variables; here each parameter counts
    its own steps, which is the same while every parameter gets a gradient at every update (true
    of every agent's network).
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, beta1: float = 0.9,
                 beta2: float = 0.999, epsilon: float = 1e-8) -> None:
        # defaults are tf.train.AdamOptimizer's
        super().__init__(params, {"lr": lr, "beta1": beta1, "beta2": beta2, "epsilon": epsilon})

    def _initial_state(self, p: torch.Tensor) -> dict[str, torch.Tensor | int]:
        return {"step": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)}

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        beta1, beta2 = group["beta1"], group["beta2"]
        state["step"] += 1
        t = state["step"]
        lr_t = group["lr"] * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        m, v = state["m"], state["v"]
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        p.addcdiv_(m, v.sqrt().add_(group["epsilon"]), value=-lr_t)
