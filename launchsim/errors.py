"""The project's typed errors: the CLI turns each into a one-line message and exit code 2.

Every message names where the problem is (file, field path, column or row), what was found and
what was expected, so a user can fix the input without reading a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar


class LaunchSimError(Exception):
    """Base class of the errors a user can cause with bad input; never a bug in the program."""


class ScenarioError(LaunchSimError):
    """A scenario file (or a scenario override) is unreadable or invalid.

    ``problems`` holds one line per problem, already formatted as ``file: path: message``.
    """

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __reduce__(self):  # pickles intact across processes (Ray workers): rebuilt from the problem list
        return type(self), (self.problems,)


class PolicyError(LaunchSimError):
    """A policy name, run folder or table is unknown or does not fit the scenario."""


class LogsError(LaunchSimError):
    """A logs file is unreadable or violates the logs schema (names the column and row)."""


class PredictorError(LaunchSimError):
    """A predictor folder or a response model is missing, mismatched or unusable."""


class TrainingError(LaunchSimError):
    """A training setting (algorithm, hyperparameters) or a run folder is invalid or unusable."""


class OutputError(LaunchSimError):
    """An output could not be written (a full disk, no permission, a read-only folder); names the file."""


class SweepError(LaunchSimError):
    """A sweep file is invalid, or Ray is missing or unreachable."""


T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, kind: str, error: type[LaunchSimError] = PolicyError) -> T:
    """Return ``registry[name]``, or raise ``error`` naming the closest valid names (as Gymnasium does)."""
    try:
        return registry[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(registry), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        valid = ", ".join(sorted(registry))
        raise error(f"unknown {kind} {name!r}{hint} (valid: {valid})") from None
