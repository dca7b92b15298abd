# batch_rl's offline agents (DQN, C51, QR-DQN, REM, Ensemble-DQN, CQL) on the same replay store,
# one job per (game, agent, seed), scored under the Dopamine protocol; their table and curves.


include: "agents_common.smk"


rule train_agent:
    input:
        unpack(agent_inputs),
    output:
        agent="results/{game}/agents/{agent}/{key}/seed{seed}/agent.pt",
        metrics="results/{game}/agents/{agent}/{key}/seed{seed}/metrics.json",
        curve="results/{game}/agents/{agent}/{key}/seed{seed}/curve.csv",
        params="results/{game}/agents/{agent}/{key}/seed{seed}/params.json",
    log:
        "logs/train_agent/{game}_{agent}_{key}_{seed}.log",
    wildcard_constraints:
        agent="[a-z0-9_]+",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("train_agent")
    resources:
        **rule_resources("train_agent"),
    params:
        agent=lambda wc: PLAN.agent(wc.game, wc.agent).params,
        run={
            **{k: AGENTS[k] for k in fdt.plan.AGENT_RUN_SETTINGS},
            "evaluation": {
                k: AGENTS["evaluation"][k] for k in fdt.plan.AGENT_EVAL_RUN_SETTINGS
            },
        },
        input_keys=lambda wc: list(PLAN.agent(wc.game, wc.agent).inputs),
        code=CODE["agent"],
    message:
        "agents: train and score {wildcards.agent} on {wildcards.game}, seed {wildcards.seed}"
    script:
        "../scripts/train_agent.py"


rule report_agents:
    input:
        unpack(agents_report_inputs),
        paper=os.path.join(workflow.basedir, "workflow", "data", "paper_results.csv"),
    output:
        table=report(
            "results/report/agents/{key}/agents.csv",
            caption="../report/agents.rst",
            category="Agents",
        ),
        curves=report(
            "results/report/agents/{key}/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Agents",
        ),
        points="results/report/agents/{key}/agents_curves.csv",
        summary="results/report/agents/{key}/summary.json",
        section="results/report/agents/{key}/section.json",
        params="results/report/agents/{key}/params.json",
    log:
        "logs/report_agents/{key}.log",
    conda:
        "../envs/fdt.yaml"
    threads: rule_threads("report_agents")
    resources:
        **rule_resources("report_agents"),
    params:
        report=lambda wc: PLAN.agents_report().params,
        input_keys=lambda wc: list(PLAN.agents_report().inputs),
        code=CODE["agents_report"],
    message:
        "agents: table and learning curves"
    script:
        "../scripts/report_agents.py"
