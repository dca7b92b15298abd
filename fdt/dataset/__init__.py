"""The reference's sampling of a run, and the training set built from it."""
