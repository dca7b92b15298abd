"""The stage plan: what each stage of the workflow runs, and so when its artifacts are stale.

A stage's code version is computed from the `fdt` modules its script imports, directly or not
(fdt.keys.stage_code_version), never listed by hand: editing a module makes exactly the stages
that import it stale, and no other.
"""

from __future__ import annotations

from pathlib import Path

from fdt.keys import stage_code_version

SCRIPTS = Path(__file__).resolve().parent.parent / "workflow" / "scripts"

# Stage -> the scripts it runs (a stage's artifacts are keyed by this code).
STAGE_SCRIPTS: dict[str, tuple[str, ...]] = {
    "demo": ("simulate_demo.py",),
    "fetch": ("fetch_replay.py", "replay_manifest.py"),
    "convert": ("convert_replay.py", "replay_summary.py"),
    "dataset": ("build_training_set.py",),
    "train": ("train_model.py",),
    "mine": ("mine_states.py",),
    "oracle": ("train_oracle.py", "evaluate_oracle.py"),
    "fetch_oracle": ("fetch_oracle.py", "evaluate_oracle.py"),
    "evaluate_oracle": ("evaluate_oracle.py",),
    "label": ("label_states.py",),
    "evaluate": ("evaluate_model.py",),
    "report": ("report.py",),
}


def code_versions(scripts: Path = SCRIPTS) -> dict[str, str]:
    """Each stage's code version, from the transitive imports of its scripts."""
    return {stage: stage_code_version([scripts / name for name in names])
            for stage, names in STAGE_SCRIPTS.items()}
