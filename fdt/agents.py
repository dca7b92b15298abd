"""Dopamine agent checkpoints: their file names (light, so the workflow can name its inputs).

Dopamine publishes trained agents per game and run, e.g. C51 at
`gs://download-dopamine-rl/lucid/c51/{Game}/{run}/tf_ckpt-199.*` (TF1 bundles) and JAX pickles
for a few games (`ckpt.N`).
"""

from __future__ import annotations

FORMATS = ("tf", "jax")


def agent_checkpoint_names(fmt: str, number: int) -> list[str]:
    """The files of a Dopamine agent checkpoint (iteration `number`): TF1 bundle or JAX pickle."""
    if fmt == "tf":
        return [f"tf_ckpt-{number}.index", f"tf_ckpt-{number}.data-00000-of-00001",
                f"tf_ckpt-{number}.meta"]
    if fmt == "jax":
        return [f"ckpt.{number}"]
    raise ValueError(f"unknown checkpoint format {fmt!r}; expected one of {', '.join(FORMATS)}")
