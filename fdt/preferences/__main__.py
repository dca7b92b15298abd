"""Serve the feedback app with the comparison pages mounted beside its labelling pages.

    python -m fdt.preferences QUERIES CLIPS TRAINING_SET [--db answers.sqlite] [--port 8000]

QUERIES is the feedback app's query bundle folder (fdt-feedback serve's), CLIPS a clip bundle
(results/{Game}/preferences/clips/{key}/seed{S}/clips.json) and TRAINING_SET the training set it
was drawn from. Pairs are compared at /compare, the sort tree is built at /tree, and
/comparisons.json?mode=pairs|tree is the file `preferences.source: file` imports.
"""

from __future__ import annotations

import argparse

from fdt.preferences.web import ComparisonPages
from fdt.teacher.app import HOST, create_app, default_families


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m fdt.preferences",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("queries", help="the feedback app's query bundle folder")
    parser.add_argument("clips", help="the clip bundle (clips.json)")
    parser.add_argument("training_set", help="the training set folder the clips come from")
    parser.add_argument("--db", default="answers.sqlite")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--cant-tell", choices=["equal", "set_aside"], default="equal",
                        help="a new sort tree's can't-tell answers: bind the clip to the node as "
                             "equal (rl-teacher-atari) or set it aside")
    args = parser.parse_args()
    import uvicorn

    app = create_app(args.queries, args.db, families=[
        *default_families(), ComparisonPages(args.clips, args.training_set,
                                                  cant_tell=args.cant_tell)])
    print(f"comparisons at http://{args.host}:{args.port}/compare and /tree (answers in "
          f"{args.db}); Ctrl-C stops", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
