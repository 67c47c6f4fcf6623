"""The self-contained HTML reports of evaluate and replay: what they hold, and that headless Chromium draws
them with their figures (skipped where Chromium is not installed)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from launchsim.agents.evaluation.evaluate import evaluate, write_report
from launchsim.agents.evaluation.replay import replay, write_replay
from launchsim.scenarios import load_scenario
from launchsim.scenarios.overrides import apply_overrides

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BLUE = np.array([31, 119, 180]) / 255  # matplotlib's first line colour: only the embedded figures have it


def screenshot(page, out):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={out.parent / 'chromium-profile'}", "--window-size=1280,2600"]  # fmt: skip
    subprocess.run([CHROMIUM, *flags, f"--screenshot={out}", page.as_uri()], capture_output=True, timeout=120, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(out)[..., :3]
    return np.isclose(pixels, BLUE, atol=0.02).all(axis=-1).sum()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    s = apply_overrides(load_scenario("home_cutting_board_closed_form"), ["currency=EUR"])
    result = evaluate(s, "list_price", episodes=2, learned=False)
    evaluation = write_report(result, out / "evaluation", command="launchsim evaluate --scenario home_cutting_board_closed_form")
    replayed = replay(s, "list_price", overrides=["pricing.levels=*1.3"], episodes=2, markets=["structural"])
    replay_paths = write_replay(replayed, out / "replay", command="launchsim replay --set pricing.levels=*1.3")
    return evaluation["html"], replay_paths["html"]


def test_a_report_is_one_page_with_its_figures_markets_currency_and_command(reports):
    evaluation, replayed = (page.read_text() for page in reports)
    for text in (evaluation, replayed):
        assert text.startswith("<!DOCTYPE html>") and "data:image/png;base64," in text
        assert "http://" not in text and "https://" not in text  # nothing to fetch
    assert "judged in the <b>structural market</b>" in evaluation and "list_price (structural market)" in evaluation
    assert "profit (mean) (EUR)" in evaluation and "launchsim evaluate --scenario home_cutting_board_closed_form" in evaluation
    assert "<h2>structural market</h2>" in replayed and "launchsim replay --set pricing.levels=*1.3" in replayed


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_headless_chromium_draws_both_reports_with_their_figures(reports, tmp_path):
    for page in reports:
        assert screenshot(page, tmp_path / f"{page.parent.name}.png") > 500, page  # the figure's lines were drawn
