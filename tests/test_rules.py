"""The rules as a researcher watches them run: one progress line per job."""

from __future__ import annotations

import re

from tests.conftest import REPO

RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def _rules() -> dict[str, str]:
    """Each rule's body, by name, from every rules file."""
    bodies = {}
    for path in RULE_FILES:
        text = path.read_text()
        for match in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, flags=re.MULTILINE):
            bodies[match.group(1)] = match.group(2)
    return bodies


def test_every_job_prints_one_line_saying_what_it_does() -> None:
    rules = _rules()
    assert len(rules) >= 18
    silent = [name for name, body in rules.items() if "    message:\n" not in body]
    assert not silent, f"rules without a message (the profile shows only messages): {silent}"


def test_the_default_profile_shows_messages_not_job_blocks() -> None:
    profile = (REPO / "profiles" / "default" / "config.yaml").read_text()
    assert re.search(r"^quiet: \[reason, host\]$", profile, flags=re.MULTILINE)
