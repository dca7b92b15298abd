"""Feedback Decision Transformer on Atari: the library behind the Snakemake workflow.

One module per concern; nothing here imports Snakemake.
"""

__version__ = "0.1.0"
