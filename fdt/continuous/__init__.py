"""Continuous control: Decision Transformer as CORL runs it (tinkoff-ai/CORL algorithms/offline/dt.py)
on D4RL-style datasets generated here with MuJoCo (gymnasium v5) or read from a local Minari copy."""
