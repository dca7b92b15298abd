# Each rule's memory, runtime, threads and GPU, read from workflow/resources.yaml (fdt.resources).
# Every rule's threads are rule_threads("name") and its resources **rule_resources("name"); and
# check_resources() at the end of the Snakefile stops planning, naming the rule, when a rule has
# no line, a line or a --set-resources/--set-threads names no rule.

import fdt.resources

RESOURCES = fdt.resources.load_table(
    os.path.join(workflow.basedir, "workflow", "resources.yaml")
)
# The rules that asked for their line, checked once all are defined.
RESOURCES_READ = set()


def rule_resources(name):
    """The rule's memory (mem_mb), runtime (minutes) and, on the GPU rules, gpu=1."""
    if name not in RESOURCES:
        raise ValueError(
            f"rule {name} has no line in workflow/resources.yaml (every rule that runs a "
            "job declares its memory, runtime and threads there)"
        )
    RESOURCES_READ.add(name)
    return RESOURCES[name].resources()


def rule_threads(name):
    """The threads on the rule's line: a number, or the config setting the line names."""
    if name not in RESOURCES:
        rule_resources(name)  # the same error
    return RESOURCES[name].job_threads(config)


def check_resources():
    """Every rule that runs a job reads its line; every line and per-rule override names a rule."""
    settings = workflow.resource_settings
    fdt.resources.check_rules(
        RESOURCES,
        rules=[rule.name for rule in workflow.rules if not rule.norun],
        read=RESOURCES_READ,
        overrides={
            "--set-resources (profile or command line)": settings.overwrite_resources,
            "--set-threads (profile or command line)": settings.overwrite_threads,
        },
    )
