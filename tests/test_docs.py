"""The commands and code the README and docs show: every command parses with the CLI's own parser, every
flag the README uses is exercised by a CLI test, and the README's Python runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from launchsim.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(?:launchsim|python run_sim\.py) ")


def shell_blocks(page: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.DOTALL)


def commands(page: Path) -> list[str]:
    """Every launchsim command in the page's bash blocks (continuation lines joined, comments dropped)."""
    found = []
    for block in shell_blocks(page):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].strip()
            for part in re.split(r"\s*&&\s*", line):
                if COMMAND.match(part):
                    found.append(part)
    return found


def launchsim_args(command: str) -> list[str]:
    words = shlex.split(command)
    return words[1:] if words[0] == "launchsim" else words[2:]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_documented_command_parses(page):
    parser = build_parser()
    for command in commands(page):
        try:
            parser.parse_args(launchsim_args(command))
        except SystemExit as exc:  # argparse's way of saying the command is wrong
            pytest.fail(f"{page.name}: {command!r} does not parse (exit {exc.code})")


def test_the_readme_shows_commands():
    assert len(commands(ROOT / "README.md")) >= 10


def test_every_readme_flag_is_exercised_by_a_cli_test():
    tests = (ROOT / "tests" / "test_cli.py").read_text()
    for command in commands(ROOT / "README.md"):
        name, *rest = launchsim_args(command)
        assert f'"{name}"' in tests, f"no CLI test runs {name!r}"
        for flag in (w for w in rest if w.startswith("--")):
            assert f'"{flag}"' in tests, f"README: {command!r}: no CLI test passes {flag}"


def test_the_readme_python_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the README's own code, run as a reader would


def test_the_readme_keeps_two_fresh_machine_commands_and_ci_runs_its_test_command():
    readme = (ROOT / "README.md").read_text()
    fresh = [line for line in readme.splitlines() if line.startswith("python3 -m venv .venv")]
    assert len(fresh) == 2
    assert fresh[0].endswith("launchsim train")
    test_command = fresh[1].split("&& ")[-1]
    assert test_command in (ROOT / ".ci" / "run").read_text()
