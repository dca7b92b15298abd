"""One continuous dataset as Parquet: generated from the behaviour agent (random, medium,
medium-replay, medium-expert, expert) or read from a local Minari folder; its info.json holds
the environment, the normalisation's references and a summary."""

from pathlib import Path

from fdt.io import log_to

log_to(snakemake.log[0])

from fdt.continuous.environments import (
    check_environment,
    check_sizes,
    d4rl_reference,
    make_env,
    task_sizes,
)
from fdt.continuous.episodes import write_episodes
from fdt.continuous.generate import dataset_summary, generate, reference_return
from fdt.continuous.minari_source import (
    check_minari_folder,
    minari_references,
    read_minari,
)
from fdt.io import read_json, write_json
from fdt.keys import record_stage

p = snakemake.params
settings = p.dataset
out_dir = Path(snakemake.output.episodes).parent
if settings["source"] == "minari":
    metadata = check_minari_folder(settings["path"], settings["dataset"])  # before any work
    episodes = read_minari(settings["path"], settings["dataset"])
    check_environment(episodes.env_id, f"Minari dataset {settings['dataset']!r}")
    env = make_env(episodes.env_id)
    check_sizes(episodes.env_id, task_sizes(env), episodes.observation_size, episodes.action_size,
                f"Minari dataset {settings['dataset']!r}")
    refs = minari_references(metadata)
    if refs is None:  # no reference scores in the dataset: a random policy's, and its best episode
        refs = {"random": reference_return(env, "random", None, settings["reference_episodes"], 0),
                "expert": float(episodes.returns().max()), "source": "random rollouts; best episode"}
    else:
        refs["source"] = "Minari metadata (ref_min_score, ref_max_score)"
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
