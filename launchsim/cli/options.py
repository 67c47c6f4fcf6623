"""Options that several commands share, as argparse parent parsers, and the value types they parse."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help, unless it is None or the help already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        empty = action.default is None or action.default is False or action.default is argparse.SUPPRESS or action.default == []
        if "default" in text or empty or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text}")
    return value


def number_from(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a float from ``low`` to ``high`` (nan is rejected too)."""

    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:  # also rejects nan
            raise argparse.ArgumentTypeError(f"expected a number from {low:g} to {high:g}, found {text}")
        return value

    parse.__name__ = "number"  # argparse names it in "invalid number value: 'abc'"
    return parse


spread = number_from(0.0, 2.0)  # a demand spread (sigma of a log-normal multiplier)

EXIT_USER_ERROR = 2  # a user error: one line per problem, no traceback
DEFAULT_MARKET_HELP = "the shipped ensemble of two fits, models/default_ensemble"


def parents(default_scenario: str, heuristics: list[str]) -> dict[str, argparse.ArgumentParser]:
    """The shared option groups, by name; a command lists the ones it takes."""

    def group(*arguments: tuple[tuple[str, ...], dict[str, Any]]) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(add_help=False)
        for flags, kwargs in arguments:
            parser.add_argument(*flags, **kwargs)
        return parser

    return {
        "scenario": group((("--scenario",), {"default": default_scenario, "help": "a scenario file or a shipped scenario name"})),
        "product": group((("--product",), {"default": "0", "help": "which product of the scenario to launch (index or name)"})),
        "seed": group((("--seed",), {"type": int, "default": 0, "help": "random seed"})),
        "device": group((("--device",), {"help": "cpu or cuda for the predictor (default: cuda when present)"})),
        "predictor": group((("--predictor",), {"metavar": "DIR", "help": f"a predictor or ensemble folder for the learned market (default: {DEFAULT_MARKET_HELP})"})),
        "policy": group(
            (("--policy",), {"default": "list_price", "help": f"a heuristic ({', '.join(heuristics)}), oracle, a run folder, an SB3 model .zip or a lookup table (.csv/.parquet/.json)"}),
            (("--actions",), {"metavar": "PLAN.csv", "help": "play a recorded plan instead: a CSV with one row per week (agents/policies/recorded_plan.py)"}),
        ),
        "outcomes": group((("--outcomes",), {"choices": ["sampled", "expected"], "default": "sampled", "help": "sampled counts or their expectations"})),
        "markets": group((("--markets",), {"nargs": "+", "choices": ["structural", "learned"], "default": ["structural", "learned"], "help": "the markets played"})),
        "overrides": group((("--set",), {"action": "append", "default": [], "metavar": "PATH=VALUE", "help": "a scenario override, e.g. ads.budget=*0.5 or competitor.events.0.week=-3 (repeatable)"})),
    }


def command_adder(sub: Any) -> Callable[..., argparse.ArgumentParser]:
    """``add(name, help, parents)``: a subcommand's parser with the shared help format."""

    def add(name: str, help_text: str, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=parents, formatter_class=HelpFormatter)

    return add
