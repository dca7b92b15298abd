"""The oracle: Dopamine's C51 network, its published checkpoints, offline training, its score, and
the labels it gives the mined states."""
