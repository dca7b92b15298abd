"""Human feedback in a browser: people label the mined important states, and their labels train
FDT in place of the oracle's.

- `fdt.teacher.bundle`: the query bundle of one (game, seed): per important state, in rank order,
  its clip and frame stack, the dataset action with the game's action names, its position and
  replay index; gold queries (oracle-labelled states) mixed in at a rate.
- `fdt.teacher.clips`: the images a browser shows (animated GIF clips, frame-stack strips).
- `fdt.teacher.store`: the answers' SQLite database (labellers, answers, locks), one per bundle.
- `fdt.teacher.app`: the web app (Starlette, server-rendered pages, 127.0.0.1 by default), built
  from page families; `fdt.teacher.labelling` is the labelling family.
- `fdt.teacher.export`: answers to `labels.parquet` in the oracle labels' schema (majority of the
  labellers, ties dropped) and the answers' digest that keys it.
- `fdt.teacher.synthetic`: rl-teacher's synthetic labeller: another oracle's labels with flip
  noise and a label budget.
- `fdt.teacher.report`: the report section (bundles, labellers' agreement, FDT's score against
  the synthetic labeller's noise and budget where such runs exist).
- `fdt.teacher.cli`: `fdt-feedback serve|export|summary` (also `python -m fdt.teacher`).
"""
