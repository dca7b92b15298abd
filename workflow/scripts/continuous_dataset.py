"""One continuous dataset as Parquet: generated from the behaviour agent (random, medium,
medium-replay, medium-expert, expert) or read from a local Minari folder; its info.json holds
the environment, the normalisation's references and a summary."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.continuous.environments import check_environment, d4rl_reference, make_env
from fdt.continuous.episodes import write_episodes
from fdt.continuous.generate import dataset_summary, generate
from fdt.continuous.minari_source import minari_dataset
from fdt.io import read_json, write_json
from fdt.keys import record_stage

p = snakemake.params
settings = p.dataset
out_dir = Path(snakemake.output.episodes).parent
if settings["source"] == "minari":
    episodes, refs = minari_dataset(settings["path"], settings["dataset"], settings["reference_episodes"])
    seeds = {}
else:
    env_id, quality = settings["env"], settings["quality"]
    check_environment(env_id)
    env = make_env(env_id)
    episodes = generate(env, quality, snakemake.input.policies, snakemake.input.replay,
                        settings["steps"], settings["seed"])
    measured = read_json(snakemake.input.references)
    refs = {"random": measured["random"], "expert": measured["expert"],
            "source": "our behaviour agent's random and final policies"}
    seeds = {"seed": settings["seed"]}
write_episodes(snakemake.output.episodes, episodes, {**seeds, "policies": sorted(set(episodes.policies()))})
d4rl = d4rl_reference(episodes.env_id)
write_json(snakemake.output.info, {**dataset_summary(episodes), "references": refs,
                                   "d4rl_references": ({"random": d4rl[0], "expert": d4rl[1],
                                                        "note": "MuJoCo v2 environments"}
                                                       if d4rl else None)})
record_stage(out_dir, "continuous_dataset", settings, p.input_keys, p.code, snakemake.wildcards.key)
print(dataset_summary(episodes), flush=True)
