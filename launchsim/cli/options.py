"""Options that several commands share, as argparse parent parsers, and the value types they parse."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
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


def count(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 0, found {text}")
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


def _writable_place(path: Path) -> None:
    """The nearest existing folder above ``path`` is a folder this process may write into."""
    above = path.parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: {above} is a file, not a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: cannot write into {above} (permission denied)")


def output_file(text: str) -> str:
    """An argparse type: a file to write, checked before any work (not a folder, in a folder that can be written)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file name")
    _writable_place(path)
    return text


def output_folder(text: str) -> str:
    """An argparse type: a folder to write into, checked before any work."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file, expected a folder")
    _writable_place(path)
    return text


def path_ending(*suffixes: str) -> Callable[[str], str]:
    """An argparse type: a file to write whose name ends in one of ``suffixes`` (checked before any work)."""

    def parse(text: str) -> str:
        if not text.lower().endswith(suffixes):
            raise argparse.ArgumentTypeError(f"expected a file name ending in {' or '.join(suffixes)}, found {text}")
        return output_file(text)

    parse.__name__ = "path"
    return parse


def seed(text: str) -> int:
    """An argparse type: a random seed, a whole number from 0 to 2**32 - 1."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 4294967295, found {text}")
    return value


def device(text: str) -> str:
    """An argparse type: ``cpu``, ``cuda`` or ``cuda:N`` (whether this machine has it: ``check_device``)."""
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, found {text}")
    return text


def check_device(text: str | None) -> None:
    """Raise a user error, before any work, when ``--device`` names a CUDA device torch does not see."""
    if not text or not text.startswith("cuda"):
        return
    import torch

    from launchsim.errors import LaunchSimError

    if not torch.cuda.is_available():
        raise LaunchSimError(f"--device {text}: no CUDA device is available here (torch {torch.__version__}); use --device cpu")
    index = int(text.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise LaunchSimError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")


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
        "seed": group((("--seed",), {"type": seed, "default": 0, "help": "random seed"})),
        "device": group((("--device",), {"type": device, "help": "cpu, cuda or cuda:N for the predictor (default: cuda when present)"})),
        "predictor": group((("--predictor",), {"metavar": "DIR", "help": f"a predictor or ensemble folder for the learned market (default: {DEFAULT_MARKET_HELP})"})),
        "policy": group(
            (("--policy",), {"default": "list_price", "help": f"a heuristic ({', '.join(heuristics)}), oracle, a run folder, an SB3 model .zip or a lookup table (.csv/.parquet/.json)"}),
            (("--actions",), {"metavar": "PLAN.csv", "help": "play a recorded plan instead: a CSV with one row per week (agents/policies/recorded_plan.py)"}),
        ),
        "outcomes": group((("--outcomes",), {"choices": ["sampled", "expected"], "default": "sampled", "help": "sampled counts or their expectations"})),
        "markets": group((("--markets",), {"nargs": "+", "choices": ["structural", "learned"], "help": "the markets played (default: structural and learned; learned alone for a scenario without a truth block)"})),
        "overrides": group((("--set",), {"action": "append", "default": [], "metavar": "PATH=VALUE", "help": "a scenario override, e.g. ads.budget=*0.5 or competitor.events.0.week=-3 (repeatable)"})),
    }


def command_adder(sub: Any) -> Callable[..., argparse.ArgumentParser]:
    """``add(name, help, parents)``: a subcommand's parser with the shared help format."""

    def add(name: str, help_text: str, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        # argparse expands % in a command's help (a list of commands), not in its description
        return sub.add_parser(name, help=help_text.replace("%", "%%"), description=help_text, parents=parents, formatter_class=HelpFormatter)

    return add
