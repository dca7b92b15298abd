"""rl-teacher's loop online: an agent acts, clips of its play are compared, a reward model learns
from the comparisons, and the agent learns from the reward model (issue 32)."""
