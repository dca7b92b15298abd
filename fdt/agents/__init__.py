"""batch_rl's offline agents ("An Optimistic Perspective on Offline RL", Agarwal et al. 2020) in
torch, trained on the project's replay store: DQN, C51, QR-DQN, REM, Ensemble-DQN and discrete CQL.

One module per agent (its hyperparameters, with batch_rl's gin values cited, and its loss), a shared
Nature-CNN torso (`networks`), TensorFlow 1's RMSProp and Adam (`optimizers`), the transitions and
how they are sampled (`replay`), the registry of agents (`registry`) and training (`training`).
"""
