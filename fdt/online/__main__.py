"""The online loop from the command line (rl-teacher's teach.py).

    python -m fdt.online run OUT --env Hopper-v5 --mode synth [--labels 700] [--steps N] [--seed S]
                                 [--config online.yaml] [--set key=value ...]
    python -m fdt.online human OUT --db answers.sqlite [--port 8000] [--env ...] [--set ...]

`run` trains in rl or synth mode (the workflow's rules call the same function). `human` serves
the loop's clips in the feedback app (pages /compare or /tree) and trains at the same time: the
answers enter the app's SQLite and the reward model reads them at its next retraining. A killed
run started again with the same OUT and settings resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import yaml

from fdt.online.loop import OnlineLoopStopped, OnlineParams, params_from, run_online
from fdt.online.tasks import OnlineInputError


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.config:
        loaded = yaml.safe_load(open(args.config)) or {}
        settings.update(loaded.get("online", {}).get("defaults", loaded.get("online", loaded)))
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = yaml.safe_load(value)
    for key in ("env", "mode", "labels", "steps", "seed"):
        if getattr(args, key, None) is not None:
            settings[key] = getattr(args, key)
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fdt.online", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "human"):
        command = sub.add_parser(name)
        command.add_argument("out", help="the run's folder (checkpoint, clips, curve, summary)")
        command.add_argument("--env")
        command.add_argument("--labels", type=int)
        command.add_argument("--steps", type=int)
        command.add_argument("--seed", type=int)
        command.add_argument("--config", help="a YAML file with an `online` section")
        command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                             help=f"any setting of OnlineParams ({', '.join(OnlineParams.__dataclass_fields__)})")
        if name == "run":
            command.add_argument("--mode", choices=("rl", "synth"))
        else:
            command.add_argument("--db", required=True, help="the app's answers (SQLite)")
            command.add_argument("--host", default="127.0.0.1")
            command.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        if args.command == "run":
            params = params_from(_settings(args))
            summary = run_online(params, args.out)
        else:
            from fdt.online.human import run_human

            params = params_from(_settings(args), mode="human")
            summary = run_human(params, args.out, args.db, host=args.host, port=args.port)
    except (OnlineInputError, OnlineLoopStopped) as err:
        print(f"python -m fdt.online: {err}", file=sys.stderr)
        return 2 if isinstance(err, OnlineInputError) else 1
    print(f"{summary['env']} {summary['mode']}: {summary['steps']} steps in {summary['seconds']:.0f} s, "
          f"{summary['labels']} labels, final true return {summary['final_true_return']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
