"""One self-contained HTML page per evaluation or replay: the figures embedded, the tables, which market
each figure comes from, the learned market's model uncertainty, and the command that made it. The page
needs no network and no files beside it (images are inlined as base64 PNG)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #ddd; }
pre { background: #f6f6f6; padding: 0.6em; white-space: pre-wrap; }
.skipped { color: #8a5a00; }
"""


def page(title: str, body: list[str]) -> str:
    """A complete HTML document with ``title`` and the given body parts (already HTML)."""
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>\n<thead><tr>{cells}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def image(png: Path, caption: str) -> str:
    """The PNG inlined as a data URI, with its caption."""
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def paragraphs(lines: list[str], css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return "<ul>" + "".join(f"<li{cls}>{html.escape(line)}</li>" for line in lines) + "</ul>"


def command_block(command: str | None) -> str:
    return f"<h2>Made by</h2>\n<pre>{html.escape(command)}</pre>" if command else ""


def uncertainty_rows(named: list[tuple[str, dict[str, Any] | None]], money: str) -> tuple[list[str], list[list[str]]]:
    """A table of model-uncertainty summaries (``agents.evaluation.uncertainty.spread_summary``)."""
    head = ["figure", f"mean{money}", f"90% interval{money}", f"10% quantile{money}", f"CVaR 10%{money}", "draws", "members", "level log-sd"]
    rows = []
    for label, m in named:
        if m:
            low, high = m["interval90"]
            rows.append([label, f"{m['mean']:,.0f}", f"[{low:,.0f}, {high:,.0f}]", f"{m['p10']:,.0f}", f"{m['cvar10']:,.0f}", m["draws"], m["members"], f"{m['level_log_sd']:.2f}"])
    return head, rows


def evaluation_page(
    result: dict[str, Any], report: tuple[list[str], list[list[str]]], notes: list[str], png: Path, command: str | None
) -> str:
    """An evaluation (``agents.evaluation.evaluate``) as one HTML page: ``report`` is its table (header, rows)
    and ``notes`` the lines under it."""
    money = f" ({result['currency']})" if result.get("currency") else ""
    intro = (
        f"Product <b>{html.escape(result['product_name'])}</b>, {result['episodes']} episodes (seeds {result['seeds'][0]} to "
        f"{result['seeds'][-1]}), sampled outcomes. The policy is judged in the <b>{html.escape(result['judged_in'])} market</b>; "
        "each row names the market it was played in."
        + (f" Learned market: predictor {html.escape(str(result['predictor']))}." if result.get("predictor") else "")
    )
    notes = [note.replace("`", "") for note in notes]  # Markdown code marks read as noise here
    body = [f"<p>{intro}</p>", "<h2>Profit by policy and market</h2>", table(*report), paragraphs(notes)]
    if result.get("overrides"):
        body.insert(1, "<p>Judged on the scenario changed by " + ", ".join(f"<code>--set {html.escape(o)}</code>" for o in result["overrides"]) + ".</p>")
    head, rows = uncertainty_rows(
        [(f"{result['policy']}, expected profit (learned market)", (result.get("learned") or {}).get("model_uncertainty")),
         ("learned market's plan, expected profit (learned market)", (result.get("learned_oracle") or {}).get("model_uncertainty"))],
        money,
    )  # fmt: skip
    if rows:
        body += ["<h2>What the learned market does not know</h2>",
                 "<p>Expected profit over draws of the learned market's model: an ensemble member in turn, at a market size "
                 "drawn around the predictor's own (its demand-level error).</p>", table(head, rows)]  # fmt: skip
    if result.get("skipped"):
        body += ["<h2>Skipped</h2>", paragraphs(result["skipped"], "skipped")]
    body += ["<h2>Week by week</h2>", image(png, f"Weekly trajectories, first seed, {result['judged_in']} market"), command_block(command)]
    return page(f"Evaluation of {result['policy']} on {result['scenario']}", body)


def replay_page(summary: dict[str, Any], png: Path, command: str | None) -> str:
    """A what-if replay (``agents.evaluation.replay``) as one HTML page."""
    money = f" ({summary['currency']})" if summary.get("currency") else ""
    what = " ".join(summary["overrides"])
    if summary.get("versus"):
        what = f"{what} versus {summary['versus']}".strip()
    body = [
        f"<p>Product <b>{html.escape(summary['product'])}</b>, {summary['episodes']} paired episodes (seeds {summary['seeds'][0]} "
        f"to {summary['seeds'][1]}, {html.escape(summary['outcomes'])} outcomes); both arms play each episode with the same random "
        f"numbers. Override arm policy: {html.escape(summary['policy_in_override_arm'])}.</p>"
    ]
    for market, metrics in summary["markets"].items():
        rows = []
        for metric, m in metrics.items():
            ci = m["delta_ci95"]
            rows.append([metric, _num(m["baseline_mean"]), _num(m["override_mean"]), _num(m["delta_mean"]),
                         "n/a" if ci is None else f"[{_num(ci[0])}, {_num(ci[1])}]"])  # fmt: skip
        body += [f"<h2>{html.escape(market)} market</h2>", table(["metric", "baseline", "override", "delta", "paired 95% CI"], rows)]
    model = summary.get("model_uncertainty")
    if model:
        low, high = model["interval90"]
        sign = {"positive": "the learned market is sure the change gains", "negative": "the learned market is sure the change loses",
                "uncertain": "the sign of the change is uncertain"}[model["sign"]]  # fmt: skip
        body += ["<h2>What the learned market does not know</h2>",
                 f"<p>Over {model['draws']} draws of the learned market's model (expected outcomes), the profit change{html.escape(money)} "
                 f"has mean {_num(model['mean'])} and 90% interval [{_num(low)}, {_num(high)}]: <b>{sign}</b>.</p>"]  # fmt: skip
    if summary.get("skipped"):
        body += ["<h2>Skipped</h2>", paragraphs(summary["skipped"], "skipped")]
    body += ["<h2>Week by week</h2>", image(png, "Mean trajectories of both arms, one column per market (band: 10th to 90th percentile)"), command_block(command)]
    return page(f"What-if replay of {summary['scenario']}: baseline vs {what}", body)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"
