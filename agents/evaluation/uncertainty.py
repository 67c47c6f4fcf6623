"""What the learned market does not know: its figures over draws of the model itself.

Sampling noise is not the learned market's main uncertainty: it reads a new product's demand level
from text and price only to within a factor of about exp(0.34) (one standard deviation over held-out
products of log(true / predicted demand)), and two fits of the same logs disagree where the logs are
thin. A *model draw* takes both into account: one member of the predictor (an ensemble's members in
turn; a single predictor is its own only member) and one demand level exp(N(0, sigma^2)), with sigma
the predictor's measured level error (``level_log_sd``). A plan's figure under a draw is its expected
profit (noise-free outcomes) in that market, so the spread over draws is the model's alone.

``profit_draws`` plays a policy under each draw; ``spread_summary`` turns the values into a mean, a
90% interval, the 10% quantile and the CVaR (mean of the worst 10%), the risk-aware figures a seller
reads next to the mean; ``coverage`` measures how often the 90% interval holds the true expected
profit where the truth is known (generated products and the shipped scenarios).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from launchsim.agents.rollout import Policy, expected_profit, run_episode
from launchsim.envs.launch_market import LaunchMarketEnv, expected_markets
from launchsim.scenarios import Scenario

DRAWS = 40  # model draws per figure: the 5% and 95% quantiles of 40 values move by about 0.05 sigma between seeds
UNCERTAINTY_SEED = 20_000  # the draws' generator seed: every figure of a command uses the same draws


def level_log_sd(predictor: Any) -> float:
    """The predictor's demand-level error: its card's ``demand_level_log_sd`` (an ensemble's card, else its
    first member's) where the fine-tune measured one, else the shipped market's (0.34); training's demand
    randomisation uses the same figure."""
    from launchsim.models.learned_market import card_demand_spread, market_members

    return card_demand_spread([getattr(h, "card", None) or {} for h in (predictor, market_members(predictor)[0])])


def model_draws(predictor: Any, draws: int = DRAWS, seed: int = UNCERTAINTY_SEED) -> list[tuple[Any, float]]:
    """``draws`` (response model, demand scale) pairs: the members in turn, levels exp(N(0, sigma^2)) from ``seed``."""
    from launchsim.models.learned_market import market_members

    members = market_members(predictor)
    scales = np.exp(np.random.default_rng(seed).normal(0.0, level_log_sd(predictor), draws))
    return [(members[d % len(members)], float(scales[d])) for d in range(draws)]


def profit_draws(
    scenario: Scenario, product: int, make_policy: Callable[[], Policy], draws: Sequence[tuple[Any, float]],
    action_type: str = "multidiscrete", seed: int = 0,
) -> np.ndarray:
    """The policy's expected profit (noise-free outcomes) under each model draw; a fresh policy per draw."""
    template = make_policy()
    values = []
    for model, scale in draws:
        env = LaunchMarketEnv(scenario, product, response_model=model, action_type=action_type, outcomes="expected", demand_scale=scale)  # type: ignore[arg-type]
        values.append(float(run_episode(env, _fresh(template, make_policy), seed=seed)["profit"].sum()))
    return np.array(values)


def spread_summary(values: np.ndarray, sigma: float, members: int) -> dict[str, Any]:
    """Mean, 90% interval, 10% quantile and CVaR at 10% of a figure over model draws."""
    values = np.sort(np.asarray(values, dtype=float))
    worst = values[: max(1, int(np.ceil(0.1 * len(values))))]
    return {
        "draws": len(values),
        "level_log_sd": sigma,
        "members": members,
        "mean": float(values.mean()),
        "interval90": [float(np.quantile(values, 0.05)), float(np.quantile(values, 0.95))],
        "p10": float(np.quantile(values, 0.10)),
        "cvar10": float(worst.mean()),
    }


def model_uncertainty(
    scenario: Scenario, product: int, make_policy: Callable[[], Policy], predictor: Any, action_type: str = "multidiscrete",
    draws: int = DRAWS, seed: int = 0,
) -> dict[str, Any]:
    """``spread_summary`` of a policy's expected profit over the predictor's model draws."""
    from launchsim.models.learned_market import market_members

    chosen = model_draws(predictor, draws)
    values = profit_draws(scenario, product, make_policy, chosen, action_type, seed)
    return spread_summary(values, level_log_sd(predictor), len(market_members(predictor)))


def delta_uncertainty(deltas: np.ndarray, sigma: float, members: int) -> dict[str, Any]:
    """A paired change over model draws (both arms under the same draw), with whether its sign is certain
    (the 90% interval excludes 0)."""
    summary = spread_summary(deltas, sigma, members)
    low, high = summary["interval90"]
    summary["sign"] = "positive" if low > 0 else "negative" if high < 0 else "uncertain"
    return summary


def _fresh(template: Policy, make_policy: Callable[[], Policy]) -> Policy:
    """An independent copy of a policy in its starting state (a new one where it cannot be copied)."""
    try:
        return copy.deepcopy(template)
    except Exception:  # noqa: BLE001 - whatever an uncopyable policy raises, build a new one
        return make_policy()


# ---------------------------------------------------------------- calibration where the truth is known

COVERAGE_PLANS = ("list_price", "launch_now")


def coverage(
    predictor: Any, products: int = 200, seed: int = 777, plans: Sequence[str] = COVERAGE_PLANS, shipped: bool = True,
    draws: int = DRAWS, progress: bool = False,
) -> tuple[dict[str, Any], Any]:
    """How often the learned market's 90% model interval holds the true expected profit, under fixed plans
    (heuristics), on ``products`` generated products (the log generator's, from ``seed``: products the
    predictor never saw) and, with ``shipped``, every product of the shipped scenarios. Returns the summary
    and one row per (scenario, product, plan)."""
    import pandas as pd
    from tqdm import tqdm

    from launchsim.agents.policies.heuristics import make_heuristic
    from launchsim.envs.log_generator import synthetic_scenario
    from launchsim.models import product_text as pt
    from launchsim.scenarios import list_scenarios, load_scenario, scenario_from_dict

    rng = np.random.default_rng(seed)
    cases: list[tuple[str, Scenario, int]] = []
    for i in range(products):
        spec = synthetic_scenario(pt.sample_traits(rng), rng, "train")
        cases.append(("generated", scenario_from_dict(spec, source=f"generated product {i}"), 0))
    if shipped:
        for path in list_scenarios():
            scenario = load_scenario(path)
            cases += [("shipped", scenario, p) for p in range(len(scenario.products))]
    chosen, sigma = model_draws(predictor, draws), level_log_sd(predictor)
    rows = []
    for group, scenario, product in tqdm(cases, desc="coverage", disable=not progress):
        for plan in plans:
            make = lambda plan=plan, scenario=scenario, product=product: make_heuristic(plan, scenario, product=product)  # noqa: E731
            true_profit = expected_profit(expected_markets(scenario, product), make)
            values = profit_draws(scenario, product, make, chosen)
            low, high = np.quantile(values, [0.05, 0.95])
            rows.append({
                "group": group, "scenario": scenario.name, "product": scenario.products[product].name, "plan": plan,
                "true_expected_profit": true_profit, "learned_mean": float(values.mean()), "low90": float(low), "high90": float(high),
                "inside": bool(low <= true_profit <= high), "side": "inside" if low <= true_profit <= high else ("below" if true_profit < low else "above"),
            })  # fmt: skip
    frame = pd.DataFrame(rows)

    def share(part: Any) -> dict[str, Any]:
        return {"cases": len(part), "inside90": float(part["inside"].mean()) if len(part) else None,
                "below": int((part["side"] == "below").sum()), "above": int((part["side"] == "above").sum())}  # fmt: skip

    summary = {
        "predictor": str(getattr(predictor, "identity", type(predictor).__name__)),
        "draws": draws, "level_log_sd": sigma, "seed": seed, "plans": list(plans),
        "all": share(frame),
        **{group: share(frame[frame["group"] == group]) for group in ("generated", "shipped") if (frame["group"] == group).any()},
        "by_plan": {plan: share(frame[frame["plan"] == plan]) for plan in plans},
    }  # fmt: skip
    return summary, frame
