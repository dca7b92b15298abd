"""TensorFlow 1's RMSProp, the optimizer of batch_rl's DQN (dqn.gin: tf.train.RMSPropOptimizer).

torch's RMSprop differs in two ways that matter early in training: TensorFlow starts the mean
square at 1 (torch at 0, which makes the first steps about lr / sqrt(1 - decay) large), and adds
epsilon inside the square root (torch outside). Per parameter, with decay rho:

    ms  <- rho * ms + (1 - rho) * g^2                (starts at 1)
    mg  <- rho * mg + (1 - rho) * g                  (centered only; starts at 0)
    mom <- momentum * mom + lr * g / sqrt(ms - mg^2 + epsilon)     (mg = 0 if not centered)
    w   <- w - mom
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


class TFRMSProp(torch.optim.Optimizer):
    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, decay: float = 0.9,
                 momentum: float = 0.0, epsilon: float = 1e-10, centered: bool = False) -> None:
        super().__init__(params, {"lr": lr, "decay": decay, "momentum": momentum,
                                  "epsilon": epsilon, "centered": centered})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            rho, lr = group["decay"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["ms"] = torch.ones_like(p)
                    state["mg"] = torch.zeros_like(p)
                    state["mom"] = torch.zeros_like(p)
                ms, mg, mom = state["ms"], state["mg"], state["mom"]
                ms.mul_(rho).addcmul_(g, g, value=1 - rho)
                denominator = ms.clone()
                if group["centered"]:
                    mg.mul_(rho).add_(g, alpha=1 - rho)
                    denominator.addcmul_(mg, mg, value=-1)
                denominator.add_(group["epsilon"]).sqrt_()
                mom.mul_(group["momentum"]).addcdiv_(g, denominator, value=lr)
                p.sub_(mom)
        return loss
