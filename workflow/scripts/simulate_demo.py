"""Simulate one run of DQN-Replay-like logs (the offline demo source)."""

from pathlib import Path

from fdt.io import log_to
from fdt.replay.demo import simulate_run

log_to(snakemake.log[0])
demo = dict(snakemake.params.demo)
game, run = demo.pop("game"), demo.pop("run")
demo["seed"] = demo["seed"] * 1000 + run  # each run plays differently
summary = simulate_run(Path(snakemake.output[0]), game, **demo)
print(f"demo {game} run {run}: {summary}", flush=True)
