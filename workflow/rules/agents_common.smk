# Paths and input functions of the agents' rules (workflow/rules/agents.smk); what decides
# each agent's folder is planned in Python: fdt.plan.StagePlan.agent.
AGENTS = config["agents"]
AGENT_NAMES = AGENTS["names"]


def agent_dir(game, agent, seed, key=None):
    return (
        f"results/{game}/agents/{agent}/{key or PLAN.agent(game, agent).key}/seed{seed}"
    )


def agent_inputs(wildcards):
    """batch_rl: the run's converted checkpoints; training_set: the seed's training set and the
    checkpoints it drew from."""
    game, agent = wildcards.game, wildcards.agent
    expect_key(wildcards.key, PLAN.agent(game, agent).key, f"agent {agent} of {game}")
    if AGENTS["data"] == "batch_rl":
        return {
            "buffers": converted_buffers(
                game, PLAN.agent_run(), PLAN.agent_checkpoints()
            )
        }
    folder = dataset_dir(game, wildcards.seed)
    return {
        "manifest": f"{folder}/manifest.json",
        "arrays": training_set_arrays(folder),
        "buffers": training_buffers(game),
    }


def agent_targets():
    return [
        f"{agent_dir(game, agent, seed)}/metrics.json"
        for game in GAMES
        for agent in AGENT_NAMES
        for seed in PLAN.agent_seeds()
    ]


def agents_report_dir(key=None):
    return f"results/report/agents/{key or PLAN.agents_report().key}"


def agents_report_targets():
    if not AGENT_NAMES:
        return []
    return [f"{agents_report_dir()}/agents.csv"]


def agents_report_inputs(wildcards):
    expect_key(wildcards.key, PLAN.agents_report().key, "agents report")
    return {"metrics": agent_targets()}
