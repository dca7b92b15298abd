"""The models: the Decision Transformer (DT, BC, FDT), the feedback loss, and the trainer."""
