"""Serve the feedback app with the comparison pages mounted beside its labelling pages.

    python -m fdt.preferences QUERIES CLIPS TRAINING_SET [--db answers.sqlite] [--port 8000]
                              [--host 127.0.0.1] [--auth name|invite] [--allowed-host NAME ...]

QUERIES is the feedback app's query bundle folder (fdt-feedback serve's), CLIPS a clip bundle
(results/{Game}/preferences/clips/{key}/seed{S}/clips.json) and TRAINING_SET the training set it
was drawn from. Pairs are compared at /compare, the sort tree is built at /tree, and
/comparisons.json?mode=pairs|tree is the file `preferences.source: file` imports. Sign-in, hosts
and invites are the feedback app's (`fdt-feedback serve --help`, `fdt-feedback invite`).
"""

from __future__ import annotations

import argparse

import sys

from fdt.preferences.web import ComparisonPages
from fdt.teacher.app import HOST, ServeError, default_families, serve
from fdt.teacher.store import StoreError


def main() -> int:
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
    parser.add_argument("--auth", choices=("name", "invite"), default="name",
                        help="how labellers sign in (as fdt-feedback serve's --auth)")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a host name labellers reach the app by (as fdt-feedback serve's)")
    args = parser.parse_args()
    pages = ComparisonPages(args.clips, args.training_set, cant_tell=args.cant_tell)
    try:
        serve(args.queries, args.db, host=args.host, port=args.port, auth=args.auth,
              allowed_hosts=args.allowed_host, families=[*default_families(), pages])
    except (ServeError, StoreError) as err:
        print(f"python -m fdt.preferences: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
