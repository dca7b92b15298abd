"""In-context RL on grid-worlds (issue 31): Dark-Room and Dark Key-Door, learning histories of a
PPO learner per task, Algorithm Distillation, DT and RA-DT (domain-specific and domain-agnostic)
trained on them, and their in-context evaluation on unseen goals."""
