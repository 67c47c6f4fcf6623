"""Historical launch logs from the structural market, for fine-tuning and evaluating predictors.

Each synthetic product becomes a full scenario (validated by the schema) and is played in
``LaunchMarketEnv`` under an exploratory policy (random launch week; sticky random prices, ad
shares, bundles, creatives and flash sales), so the logs come from exactly the dynamics that judge
policies. A quarter of the launches are decided in 2-week steps, a fifth of the products are
steady staples (a constant weekly pool, as the structural market allows) rather than launches that
diffuse, and a tenth of the launches are limited drops (faster diffusion). One row per decision
step: texts, numeric context, sampled outcomes, and the market's expected values (for evaluation
only). Splits: ``train``, ``heldout`` (new products, same wording) and ``paraphrase`` (new products
described with wording never used in training).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
from launchsim.envs.launch_market import LaunchMarketEnv
from launchsim.models import product_text as pt
from launchsim.models.ops import SCALAR
from launchsim.models.response import MarketContext
from launchsim.models.structural_market import NO_PARTNER, StructuralMarket, structural_response
from launchsim.scenarios import Scenario, scenario_from_dict
from launchsim.errors import LogsError
from launchsim.files import write_frame
from tqdm import tqdm

HOLIDAYS = [
    {"name": "Valentine's Day", "week_of_year": 7, "uplift": 0.4},
    {"name": "Mother's Day", "week_of_year": 19, "uplift": 0.5},
    {"name": "Prime Day", "week_of_year": 28, "uplift": 0.6},
    {"name": "Singles' Day", "week_of_year": 45, "uplift": 0.6},
    {"name": "Black Friday / Cyber Monday", "week_of_year": 48, "uplift": 1.0},
    {"name": "Christmas", "week_of_year": 51, "uplift": 0.9, "duration_weeks": 2},
]
PRICE_LEVELS = [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
SPEND_LEVELS = [0.0, 0.05, 0.1, 0.2, 0.4]
DISCOUNTS = [0.1, 0.2, 0.3]
AD_TRUTH = {"max_impressions": 500_000, "half_saturation": 5000, "hill_shape": 1.2, "click_conversion": 0.025}
HORIZON = 20  # decision steps per synthetic launch
TWO_WEEK_SHARE = 0.25  # share of synthetic launches decided in 2-week steps
ESTIMATE_SIGMA = 0.2  # log-normal error of the seller's public market estimate

CONTEXT_COLUMNS = [
    "launched", "step_weeks", "season", "holiday", "price_ratio", "reference_price", "flash", "weeks_since_flash",
    "competitor_strength", "competitor_price_ratio", "adstock", "adopters", "bundle_discount", "market_estimate",
]  # fmt: skip


def synthetic_scenario(
    traits: pt.ProductTraits, rng: np.random.Generator, vocabulary: pt.Vocabulary, heterogeneity: float = 0.05
) -> dict:
    """A full scenario (as a dict for the schema) for one synthetic product and its hidden truth.

    The truth follows from the traits up to ``heterogeneity``: a relative, per-parameter noise that the
    text does not carry (what no text model can predict; it bounds the achievable R²).
    """
    u = rng.uniform
    h = heterogeneity
    noun = traits.noun
    ref = round(noun.base_price * pt.POSITION_PRICE[traits.positioning] * u(0.85, 1.15), 2)
    hooks = rng.choice(list(pt.HOOKS), size=2, replace=False)
    partners = pt.partner_candidates(traits, rng)
    beta = pt.POSITION_BETA[traits.positioning] * u(1 - h, 1 + h)
    # The product's reach varies 50-fold beyond what its positioning says: no text carries that, the
    # seller's public market estimate (within about 20%) does.
    reach = math.exp(u(math.log(0.1), math.log(5.0)))
    step = 2 if rng.random() < TWO_WEEK_SHARE else 1
    buyers = 8000 * pt.POSITION_MARKET[traits.positioning] * reach * u(1 - h, 1 + h)
    staple = traits.demand == "staple"
    pace = (pt.DROP_INNOVATION, pt.DROP_IMITATION) if traits.demand == "drop" else (1.0, 1.0)
    # A launch's market size is its whole pool of potential adopters; a staple's is its weekly pool
    # (about as many buyers over 20 weeks as a launch of the same reach).
    market_size = max(round(buyers / 20, 1), 1.0) if staple else float(round(buyers))
    market_estimate = round(market_size * math.exp(rng.normal(0.0, ESTIMATE_SIGMA)), 1)
    competitor = []
    if rng.random() < 0.6:
        week = int(rng.integers(0, 15)) * step
        competitor = [{"week": week, "price": round(ref * u(0.7, 1.25), 2), "strength": round(u(0.3, 1.5), 2)}]
    flash = None
    if rng.random() < 0.3:
        start = int(rng.integers(3, 13)) * step
        flash = {"discount": round(u(0.2, 0.4), 2), "start_week": start, "end_week": start + 2 * step, "max_uses": 2}
    return {
        "name": "synthetic",
        "description": "A synthetic product for the historical logs.",
        "category": traits.category,
        "horizon_weeks": HORIZON * step,
        "step_weeks": step,
        "calendar": {
            "start_week_of_year": int(rng.integers(1, 53)),
            "season": {"peak_week_of_year": noun.peak_week, "amplitude": round(u(0.05, 0.5), 2)},
            "holidays": HOLIDAYS,
        },
        "products": [{
            "name": "product", "text": pt.describe(traits, rng, vocabulary), "unit_cost": round(ref * u(0.3, 0.45), 2),
            "reference_price": ref, "stock": 10_000_000, "market_estimate": max(market_estimate, 1.0),
            "market_estimate_basis": "weekly" if staple else "total",
        }],  # fmt: skip
        "catalogue": [
            {"name": f"partner_{i}", "text": text, "price": round(u(8, 60), 2), "unit_cost": 0.0, "discounts": DISCOUNTS}
            for i, (text, _) in enumerate(partners)
        ],
        "competitor": {"events": competitor},
        "ads": {
            "budget": round(u(5000, 80000), -2),
            "spend_levels": SPEND_LEVELS,
            "creatives": [{"name": str(k), "text": pt.creative(traits, str(k), rng, vocabulary)} for k in hooks],
        },
        "pricing": {"levels": PRICE_LEVELS, "flash_sale": flash},
        "truth": {
            "products": {"product": {
                "market_size": market_size,
                "diffusion": "constant" if staple else "bass",
                "bass_p": pt.BUZZ_INNOVATION[traits.buzz] * pace[0] * u(1 - h, 1 + h),
                "bass_q": pt.BUZZ_IMITATION[traits.buzz] * pace[1] * u(1 - h, 1 + h),
                "repeat_rate": 0.05 * u(1 - h, 1 + h) if noun.consumable and not staple else 0.0,
                "price_alpha": beta - 1.4 + rng.normal(0, h),
                "price_beta": beta,
                "gift_appeal": pt.GIFT_APPEAL[traits.gift] * u(1 - h, 1 + h),
                "season_sensitivity": (1.3 if traits.seasonal else 0.2) * u(1 - h, 1 + h),
                "ad_responsiveness": pt.BUZZ_RESPONSE[traits.buzz] * u(1 - h, 1 + h),
            }},  # fmt: skip
            "creatives_ctr": {str(k): pt.HOOKS[str(k)][0] * u(1 - h, 1 + h) for k in hooks},
            "ads": AD_TRUTH,
            "partners": {f"partner_{i}": {"affinity": a, "cannibalisation": u(0.1, 0.4)} for i, (_, a) in enumerate(partners)},
            "demand_overdispersion": 0.05,
        },
    }


def _explore(env: LaunchMarketEnv, rng: np.random.Generator) -> list[dict]:
    """Play one episode with sticky random levers; return one logged row per week."""
    layout = env.layout
    launch_week = int(rng.integers(0, 7))
    price = int(rng.integers(len(layout.price_levels)))
    ad = int(rng.integers(len(layout.spend_levels)))
    bundle = 0
    creative = int(rng.integers(layout.n_creatives))
    rows = []
    for week in range(env.timeline.n_steps):
        if rng.random() < 0.35:
            price = int(rng.integers(len(layout.price_levels)))
        if rng.random() < 0.4:
            ad = int(rng.integers(len(layout.spend_levels)))
        if rng.random() < 0.3:
            bundle = 0 if rng.random() < 0.5 else int(rng.integers(1, 1 + len(layout.bundle_options)))
        if rng.random() < 0.2:
            creative = int(rng.integers(layout.n_creatives))
        flash = layout.has_flash and env.timeline.flash_open[week] and rng.random() < 0.3
        action = np.array([int(week >= launch_week), len(layout.price_levels) if flash else price, bundle, ad, creative])
        _, _, _, _, info = env.step(action)
        ctx, resp = env.last_context, env.last_response
        partner = info["bundle_partner"]
        rows.append({
            "week": info["week"],
            "creative_text": env.scenario.ads.creatives[creative].text,
            "partner_text": next((c.text for c in env.scenario.catalogue if c.name == partner), ""),
            **{c: float(getattr(ctx, c)) for c in CONTEXT_COLUMNS},
            "units": info["units_sold"],
            "impressions": info["impressions"],
            "clicks": info["clicks"],
            "bundled_units": info["bundled_units"],
            "new_customers": info["units_sold"] * float(resp.first_purchase_share),
            "expected_demand": float(resp.demand),
            "expected_impressions": float(resp.impressions),
            "expected_ctr": float(resp.ctr),
            "expected_bundle_uplift": float(resp.bundle_uplift),
            "expected_bundle_take": float(resp.bundle_take),
        })  # fmt: skip
    return rows


def demand_known_except_scale(scenario: Scenario, rows: list[dict]) -> list[float]:
    """Expected demand of each logged step for a model that knows every hidden parameter but the
    market size, which it takes from the public estimate: the mean over ln M ~ N(ln estimate, σ²) with
    the generator's σ (9-point Gauss-Hermite). A reference for how much demand R² the estimate's noise
    alone costs (``--reference``); nothing trains on it."""
    market = StructuralMarket(scenario)
    product = scenario.products[0]
    encoded = market.encode([product.text], "product")[0]
    creatives = dict(zip((c.text for c in scenario.ads.creatives), market.encode([c.text for c in scenario.ads.creatives], "creative")))
    partners = dict(zip((c.text for c in scenario.catalogue), market.encode([c.text for c in scenario.catalogue], "partner")))
    nodes, weights = np.polynomial.hermite_e.hermegauss(9)
    versions = [encoded._replace(market_size=product.market_estimate * math.exp(ESTIMATE_SIGMA * z)) for z in nodes]
    weights = weights / weights.sum()
    shared = encoded.scenario
    out = []
    for r in rows:
        ctx = MarketContext(**{c: r[c] for c in CONTEXT_COLUMNS})
        creative, partner = creatives[r["creative_text"]], partners.get(r["partner_text"], NO_PARTNER)
        demand = [structural_response(SCALAR, v, creative, partner, shared.ads, shared.bundle, shared.flash, ctx).demand for v in versions]
        out.append(float(sum(w * d for d, w in zip(demand, weights))))
    return out


def generate_logs(
    n_train: int = 2000,
    n_heldout: int = 300,
    n_paraphrase: int = 300,
    seed: int = 0,
    heterogeneity: float = 0.05,
    progress: bool = True,
    reference: bool = False,
) -> pd.DataFrame:
    """Logs of ``n_train + n_heldout + n_paraphrase`` synthetic launches, one row per product-week;
    ``reference`` adds ``expected_demand_known_except_scale`` on the evaluation splits (same draws)."""
    rng = np.random.default_rng(seed)
    # Which launches are limited drops comes from a stream of its own, so adding drops left every other
    # product's draws (traits, wording, truth, decisions) as they were.
    drop_rng = np.random.default_rng([seed, 1])
    plan = [("train", "train")] * n_train + [("heldout", "train")] * n_heldout + [("paraphrase", "paraphrase")] * n_paraphrase
    frames = []
    for product_id, (split, vocabulary) in enumerate(tqdm(plan, desc="simulating launches", disable=not progress)):
        traits = pt.sample_traits(rng)
        if traits.demand == "launch" and drop_rng.random() < pt.DROP_SHARE:
            traits = dataclasses.replace(traits, demand="drop")
        spec = synthetic_scenario(traits, rng, vocabulary, heterogeneity)
        scenario = scenario_from_dict(spec, source=f"synthetic product {product_id}")
        env = LaunchMarketEnv(scenario)
        env.reset(seed=int(rng.integers(2**31)))
        rows = _explore(env, rng)
        frame = pd.DataFrame(rows)
        if reference:
            frame["expected_demand_known_except_scale"] = demand_known_except_scale(scenario, rows) if split != "train" else np.nan
        product = scenario.products[0]
        frame.insert(0, "product_id", f"p{product_id:05d}")
        frame.insert(1, "split", split)
        frame.insert(2, "category", traits.category)
        frame.insert(3, "description", product.text)
        frame.insert(4, "unit_cost", product.unit_cost)
        for trait in ("positioning", "seasonal", "gift", "buzz", "demand"):
            frame[f"trait_{trait}"] = getattr(traits, trait)
        frame["truth_market_size"] = scenario.truth.products[product.name].market_size  # for evaluation only
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def write_logs(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write logs as Parquet or CSV (by extension), atomically (``launchsim.files.write_frame``)."""
    path = Path(path)
    if path.suffix not in (".parquet", ".csv"):
        raise LogsError(f"{path}: logs are written as .parquet or .csv, found {path.suffix or 'no extension'!r}")
    return write_frame(path, frame)
