"""`fdt-feedback`: serve a query bundle for labelling, export its answers, summarise them.

    fdt-feedback serve QUERIES [--db answers.sqlite] [--host 127.0.0.1] [--port 8000]
                       [--answers-per-query 1] [--training-set DATASET]
                       [--auth name|invite] [--allowed-host NAME ...]
    fdt-feedback invite QUERIES [--db answers.sqlite] [--url http://host:8000] NAME [NAME ...]
    fdt-feedback export DB OUT.json
    fdt-feedback summary DB QUERIES

(`python -m fdt.teacher ...` is the same.)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from fdt.teacher.app import ServeError
from fdt.teacher.bundle import BundleError, check_training_set, load_bundle
from fdt.teacher.store import StoreError


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fdt-feedback", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a query bundle to labellers in a browser")
    serve.add_argument("queries", help="the query bundle's folder (holding bundle.json)")
    serve.add_argument("--db", default="answers.sqlite",
                       help="the answers' SQLite database (made on first use; default %(default)s)")
    serve.add_argument("--host", default="127.0.0.1", help="default %(default)s (this machine)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--answers-per-query", type=int, default=1,
                       help="labellers asked per query (a majority decides; default %(default)s)")
    serve.add_argument("--training-set", help="refuse the bundle unless it was built from this "
                       "training set (its folder, results/{Game}/dataset/{key}/seed{S})")
    serve.add_argument("--auth", choices=("name", "invite"), default="name",
                       help="how labellers sign in: by name (this machine only; the default) or "
                       "by the links `fdt-feedback invite` prints (required beyond 127.0.0.1)")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="a host name labellers reach the app by (repeat; needed with "
                       "--host 0.0.0.0); requests for other Host headers are refused")
    invite = commands.add_parser("invite", help="make sign-in links for labellers (--auth invite)")
    invite.add_argument("queries", help="the query bundle's folder (holding bundle.json)")
    invite.add_argument("names", nargs="+", metavar="NAME")
    invite.add_argument("--db", default="answers.sqlite",
                        help="the answers' SQLite database (default %(default)s)")
    invite.add_argument("--url", default="http://127.0.0.1:8000",
                        help="where the app is served, for the links (default %(default)s)")
    export = commands.add_parser("export", help="write a database's answers as JSON")
    export.add_argument("db")
    export.add_argument("out")
    summary = commands.add_parser("summary", help="per labeller: answers and gold agreement")
    summary.add_argument("db")
    summary.add_argument("queries")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "serve":
            from fdt.teacher.app import serve

            if args.training_set:
                check_training_set(load_bundle(args.queries), args.training_set)
            serve(args.queries, args.db, host=args.host, port=args.port,
                  answers_per_query=args.answers_per_query, auth=args.auth,
                  allowed_hosts=args.allowed_host)
        elif args.command == "invite":
            from fdt.teacher.store import Store

            store = Store(args.db, load_bundle(args.queries))
            for name in args.names:
                # The token is shown once; the database keeps only its sha256.
                print(f"{name}\t{args.url.rstrip('/')}/invite/{store.invite(name)}")
        elif args.command == "export":
            from fdt.teacher.export import export_answers

            done = export_answers(args.db, args.out)
            print(f"{len(done['answers'])} answers to bundle {done['meta']['bundle_id']} "
                  f"written to {args.out}")
        else:
            from fdt.teacher.export import (
                check_answers_bundle,
                labeller_table,
                load_answers,
            )

            bundle = load_bundle(args.queries)
            meta, answers = load_answers(args.db)
            check_answers_bundle(meta, bundle, args.db)
            print(json.dumps(labeller_table(bundle, answers), indent=2))
    except (BundleError, StoreError, ServeError) as err:
        print(f"fdt-feedback: {err}", file=sys.stderr)
        return 2
    return 0
