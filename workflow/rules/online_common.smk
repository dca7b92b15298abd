# Paths and settings of the online loop's rules (workflow/rules/online.smk).
import hashlib
import json

ONLINE = config.get("online") or {}


def online_scale():
    """The settings of the scale the runs take (`online.scales[online.scale]`)."""
    return ONLINE.get("scales", {}).get(ONLINE.get("scale", "reduced"), {})


# What a scale may plan for itself (an Atari scale its game, a long scale fewer budgets).
ONLINE_PLAN = ("envs", "modes", "budgets", "seeds")


def online_plan(key):
    """The scale's own `envs`, `modes`, `budgets` or `seeds`, else the section's."""
    return online_scale().get(key, ONLINE.get(key, []))


def online_settings(env, mode, budget, seed):
    """The run's OnlineParams fields: the section's defaults, its scale's, then the run's."""
    scale = {k: v for k, v in online_scale().items() if k not in ONLINE_PLAN}
    settings = {
        **ONLINE.get("defaults", {}),
        **scale,
        "env": env,
        "mode": mode,
        "seed": seed,
    }
    if mode != "rl":
        settings["labels"] = budget
    return settings


def online_key(settings):
    """What decides a run's folder: its settings (seed aside: one folder per seed below)."""
    decided = {k: v for k, v in settings.items() if k != "seed"}
    return hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()[:12]


def online_runs():
    runs = []
    for env in online_plan("envs"):
        for mode in online_plan("modes"):
            for budget in [0] if mode == "rl" else online_plan("budgets"):
                for seed in online_plan("seeds"):
                    settings = online_settings(env, mode, budget, seed)
                    folder = (
                        f"results/online/{env}/{mode}/labels{budget}/"
                        f"{online_key(settings)}/seed{seed}"
                    )
                    runs.append(
                        {
                            "env": env,
                            "mode": mode,
                            "budget": budget,
                            "seed": seed,
                            "settings": settings,
                            "curve": f"{folder}/curve.csv",
                            "summary": f"{folder}/summary.json",
                        }
                    )
    return runs


def online_run_settings(wildcards):
    for run in online_runs():
        if run["summary"] == (
            f"results/online/{wildcards.env}/{wildcards.mode}/labels{wildcards.budget}/"
            f"{wildcards.key}/seed{wildcards.seed}/summary.json"
        ):
            return run["settings"]
    raise ValueError(
        f"results/online/{wildcards.env}/{wildcards.mode}/labels{wildcards.budget}/"
        f"{wildcards.key}: not a run of the current config's online section"
    )


def online_targets():
    if not online_runs():
        return []
    return [f"results/report/online/{ONLINE.get('scale', 'reduced')}/section.json"]
