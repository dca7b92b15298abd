"""Evaluation in Atari: protocols, environments, policies, rollouts, the stage, and scores."""
