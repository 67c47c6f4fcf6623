"""The launch simulator's command line: ``launchsim`` (or ``python run_sim.py`` in a checkout).

Commands are grouped by what they work on: scenarios and the market (``validate``, ``simulate``,
``bench``), the learned market's predictors (``logs``, ``finetune``, ``ensemble``, ``predictors-eval``)
and policies (``train``, ``evaluate``, ``replay``, ``sensitivity``, ``export-table``, ``sweep``). Each
command parses its options, calls package functions and prints through ``launchsim.cli.render``; a
user error prints one line per problem and exits 2.
"""

from __future__ import annotations

import argparse
import sys

from launchsim.cli.options import EXIT_USER_ERROR, check_device
from launchsim.errors import LaunchSimError

MAIN_JOB = (
    "Start here: 'launchsim train' trains PPO on the default scenario in the learned market and judges it in the "
    "ground truth (under 10 minutes on 2 CPU cores). 'launchsim COMMAND --help' shows a command's options and defaults."
)


def build_parser() -> argparse.ArgumentParser:
    from launchsim.agents.policies.heuristics import HEURISTICS
    from launchsim.cli import market, policies, predictors
    from launchsim.cli.options import parents
    from launchsim.scenarios import DEFAULT_SCENARIO

    parser = argparse.ArgumentParser(description="A launch-strategy simulator.", epilog=MAIN_JOB)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = parents(DEFAULT_SCENARIO.stem, list(HEURISTICS))
    for module in (market, predictors, policies):
        module.register(sub, shared)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_device(getattr(args, "device", None))
        return args.func(args)
    except LaunchSimError as err:
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:  # the system refused a file (a full disk during a checkpoint, a folder not readable)
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_USER_ERROR
