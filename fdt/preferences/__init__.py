"""Learning a reward from preferences (rl-teacher, rl-teacher-atari), for DT on the learnt reward.

clips (segments of the training set's trajectories) -> comparisons (a person in the feedback app,
or the synthetic labeller; pairs, or the red-black sort tree) -> reward model (Bradley-Terry or
ordinal regression, an ensemble option) -> relabel (the training set's rewards and returns-to-go
from the reward model) -> model dt_pref, DT trained on it by the usual trainer.
"""
