"""Retrieval-augmented Decision Transformer (RA-DT) on the DQN replay: memory, index, retrieval."""
