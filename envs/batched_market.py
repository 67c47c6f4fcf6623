"""BatchedMarketVecEnv: N launch markets as tensors, stepped in one call, behind SB3's VecEnv API.

Each market is a (scenario, product) pair; pairs may differ across the N slots. Everything a step
reads that depends only on the pair and the week (calendar, competitor, windows, the observation's
calendar fields) is tabulated once per pair; texts are encoded once and reduced to per-market text
parts of the predictor's heads (``models.batched_heads``). A step decodes all actions, applies the
launch, flash, bundle and ad rules, runs the response model once for the batch, samples the counts
from each market's pre-drawn uniforms and updates stock, budget, adstock and adoption, exactly as
``LaunchMarketEnv`` does for one market. Markets whose episode ends are reset in the same call
(SB3 auto-reset: ``infos[i]["terminal_observation"]`` and ``infos[i]["episode"]``).

On a CPU the step runs on NumPy views of the state tensors (zero-copy; an op on a few thousand
numbers costs about 1 us there against 2-15 us through torch) and only the predictor's heads run in
torch; on a GPU the same code runs on the tensors (``_ArrayOps`` holds the few operations it needs),
and the step with its auto-reset is captured once as a CUDA graph and replayed (``cuda_graph``;
docs/BENCHMARKS.md, "GPU": 4.4M -> 10.5M steps/s at 65,536 markets on an H100).

Seeding follows SB3: ``seed(s)`` gives market i the seed ``s + i`` at the next reset, and each
market then draws from its own ``numpy`` generator exactly as a single env seeded ``s + i`` does,
so the N markets reproduce N single envs (``tests/envs/test_batched_market.py``), also through
auto-resets and through a ``reset()`` without a new seed (each market goes on to its next episode).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType, SimpleNamespace
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv

from launchsim.envs.actions import ActionLayout, ActionType
from launchsim.envs.launch_market import (
    OBS_HIGH,
    OBS_LOW,
    OBSERVATION_NAMES,
    checked_demand_spread,
    demand_scale_generator,
    draw_demand_scales,
)
from launchsim.envs.timeline import NEVER, Timeline
from launchsim.envs.vector import CRITIC_FIELDS, DRAW_BOUND, observation_space, product_traits, union_nvec
from launchsim.models.ensemble import mean_response
from launchsim.models.outcomes import (
    BUNDLE,
    CLICKS,
    GAMMA,
    NOISE_SLOTS,
    NON_CLICKS,
    SOLO,
    gamma_multiplier_batch,
    poisson_quantile_batch,
    poisson_quantile_fixed,
)
from launchsim.models.response import MarketContext, MarketResponse
from launchsim.models.structural_market import StructuralMarket, structural_response
from launchsim.scenarios.schema import Scenario

# Per (pair, step) tables used by the dynamics and by the observation, in this column order.
_DYN = ("season", "holiday", "competitor_strength", "competitor_price_ratio", "flash_open")
_OBS_CAL = (
    "week_sin", "week_cos", "season", "holiday_now", "holiday_next", "competitor_present", "competitor_price",
    "competitor_strength", "flash_open", "bundles_open",
)  # fmt: skip
# The step runs on NumPy views of the state on a CPU; False runs the torch code a GPU uses (tests).
NUMPY_ON_CPU = True
# Observation columns tabulated per (pair, step): progress, steps_left, the calendar columns in
# _OBS_CAL's order (indexed at min(t, n - 1)), deadline_left before launch, launch_allowed.
_OBS_TABLE_COLS = [0, 1, 2, 3, 4, 5, 6, 13, 14, 15, 20, 22, 23, 24]
_NO_INFO = MappingProxyType({})


class BatchedMarketVecEnv(VecEnv):
    """N markets stepped together on one device (SB3 ``VecEnv``); see the module docstring."""

    def __init__(
        self,
        markets: Sequence[tuple[Scenario, int]],
        market: str = "learned",
        predictor: Any = None,
        action_type: ActionType = "multidiscrete",
        product_features: bool = False,
        outcomes: str = "sampled",
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        head_dtype: torch.dtype = torch.float32,
        nvec: np.ndarray | None = None,
        record_impressions: bool = False,
        noise_episodes: int | None = None,
        cuda_graph: bool | None = None,
        demand_spread: float = 0.0,
        critic_demand_draw: bool = False,
    ):
        if market == "learned" and predictor is None:
            raise ValueError("market='learned' needs a predictor")
        if outcomes not in ("sampled", "expected"):
            raise ValueError(f"outcomes must be 'sampled' or 'expected', found {outcomes!r}")
        self.demand_spread = checked_demand_spread(demand_spread)
        self.market, self.outcomes, self.action_type = market, outcomes, action_type
        # Impressions reach neither the observation nor the reward; drawing them is optional.
        self.record_impressions = record_impressions
        self.device = torch.device(device) if device is not None else (predictor.device if predictor is not None else torch.device("cpu"))
        self.dtype = dtype or (torch.float64 if self.device.type == "cpu" else torch.float32)
        n = len(markets)
        pairs = list(dict.fromkeys((id(s), p) for s, p in markets))
        by_key = {(id(s), p): (s, p) for s, p in markets}
        self.pairs = [by_key[k] for k in pairs]
        self.pair_of = [pairs.index((id(s), p)) for s, p in markets]
        self.layouts = [ActionLayout(s, "multidiscrete") for s, _ in self.pairs]
        self.t_max = max(s.n_steps for s, _ in self.pairs)

        nvec = union_nvec(self.pairs) if nvec is None else np.asarray(nvec)
        if (nvec < union_nvec(self.pairs)).any():
            raise ValueError(f"nvec {list(nvec)} is smaller than the markets' own action sizes {list(union_nvec(self.pairs))}")
        self.nvec = nvec
        traits = [product_traits(s, p, predictor) for s, p in self.pairs] if product_features else []
        self.critic_demand_draw = bool(critic_demand_draw)  # the critic's field after the traits (envs.vector)
        obs_space = observation_space(len(traits[0]) if traits else 0, len(CRITIC_FIELDS) if self.critic_demand_draw else 0)
        act_space = spaces.MultiDiscrete(nvec) if action_type == "multidiscrete" else spaces.Box(-1.0, 1.0, (6,), np.float32)
        self.render_mode = None
        super().__init__(n, obs_space, act_space)

        pid = torch.tensor(self.pair_of, device=self.device)
        self._pid = pid
        self._build_tables(pid)
        self._n_steps = self.c.n.long().tolist()
        self._build_actions(pid, nvec)
        self._traits = torch.tensor(np.stack(traits), device=self.device)[pid].float() if traits else None
        if market == "learned":
            self._build_learned(predictor, pid, head_dtype)
        else:
            self._build_structural(pid)

        self._overdispersed = bool((self.overdispersion > 0).any())
        self._generators: list[np.random.Generator | None] = [None] * n
        # Uniforms for several episodes per market are drawn in one call (a generator fills blocks in
        # stream order, so this equals one draw per reset) to keep per-market Python calls rare.
        budget = 2**22 if self.device.type == "cpu" else 2**28  # numbers held: 32 MB of float64 on a CPU, 1 GB of float32 on a GPU
        self.noise_episodes = noise_episodes or max(1, min(64, budget // (n * self.t_max * NOISE_SLOTS)))
        self._noise = torch.zeros(n, self.noise_episodes * self.t_max, NOISE_SLOTS, dtype=self.dtype, device=self.device)
        self._noise_np = self._noise.numpy() if self.device.type == "cpu" and self.dtype == torch.float64 else None
        # Per-episode demand multipliers (demand_spread > 0), drawn with the uniforms, block by block.
        self._scale_generators: list[np.random.Generator | None] = [None] * n
        self._scales = torch.ones(n, self.noise_episodes, dtype=self.dtype, device=self.device)
        self._actions: np.ndarray | None = None
        self._arrays()
        self._episode_in_block = self.x.zeros(n, "long")
        self._state_reset(self.x.full(n, True))
        self._last_step_x: dict[str, Any] = {}
        # On a GPU a step is one CUDA graph replay (captured at the first step; ``cuda_graph=False``
        # steps eagerly): a few hundred small kernels launched as one.
        self._graph_wanted = self.device.type == "cuda" if cuda_graph is None else bool(cuda_graph)
        if self._graph_wanted and self.device.type != "cuda":
            raise ValueError("cuda_graph=True needs a CUDA device")
        self._graph: Any = None
        self._fixed_walk: int | None = None  # walk steps of the Poisson quantile inside a graph
        self._walk_unconverged: Any = None
        self._no_walk = torch.zeros((), dtype=torch.long, device=self.device)  # expected outcomes walk nothing

    # ------------------------------------------------------------------ construction

    def _arrays(self) -> None:
        """The step's view of the tables: NumPy arrays sharing the tensors' memory on a CPU, the tensors
        elsewhere (``_ArrayOps``), plus per-market constants the step would otherwise recompute."""
        self.x = x = _ArrayOps(self.device, self.dtype)
        c, a, n = self.c, self.a, self.num_envs
        arr = x.asarray
        P, O, A, C = (int(v) for v in self.nvec[1:])
        cols = [torch.arange(m, device=self.device)[None] for m in (P, O, A, C)]
        self.k = SimpleNamespace(
            **{key: arr(value) for key, value in vars(c).items()},
            n_i=arr(c.n.long()), last_step=arr(c.n.long() - 1), earliest_i=arr(c.earliest.long()), deadline_i=arr(c.deadline.long()),
            has_deadline=arr(c.deadline < NEVER), flash_max_i=arr(c.flash_max.long()),
            stock_scale=arr(c.stock0.clamp(min=1.0)), budget_scale=arr(torch.where(c.budget0 > 0, c.budget0, 1.0)),
            flash_scale=arr(c.flash_max.clamp(min=1.0)), table_row=arr(self._pid * self._t_cols),
        )  # fmt: skip
        lo, hi, n_opt, max_share, n_cre = a.box.unbind(1)
        self.ax = SimpleNamespace(
            price=arr(a.price), is_flash=arr(a.is_flash), spend=arr(a.spend), discount=arr(a.discount),
            item_price=arr(a.item_price), item_cost=arr(a.item_cost), partner_open_flat=arr(a.partner_open.reshape(n, -1)),
            native_max=arr(a.native - 1), has_flash=arr(a.has_flash),
            box_lo=arr(lo), box_span=arr(hi - lo), box_options=arr(n_opt), box_share=arr(max_share), box_creatives=arr(n_cre - 1),
            price_offered=arr(cols[0] < a.native[:, 1:2]), bundle_offered=arr(cols[1] < a.native[:, 2:3]), no_bundle=arr(cols[1] == 0),
            ads_offered=arr(cols[2] < a.native[:, 3:4]), creative_offered=arr(cols[3] < a.native[:, 4:5]),
            option_cols=arr(cols[1].expand(n, O).contiguous()),
        )  # fmt: skip
        # Full observation width (the other columns 0) so that one row gather fills the buffer.
        table = self._observation_table()
        wide = torch.zeros(table.shape[0], len(OBSERVATION_NAMES), dtype=torch.float32, device=self.device)
        wide[:, _OBS_TABLE_COLS] = table.float()  # the observation's dtype: each value rounded once, as before
        self._dyn_x, self._obs_table_x = arr(self._dyn), arr(wide)
        # float32, the observation's dtype: a column written from a state array rounds as the final cast did.
        self._obs_buffer = x.asarray(torch.zeros(n, len(OBSERVATION_NAMES), dtype=torch.float32, device=self.device))
        self._noise_x = arr(self._noise.view(-1, NOISE_SLOTS))
        self._scales_x = arr(self._scales.view(-1))
        self._scale_row = arr(torch.arange(n, device=self.device) * self.noise_episodes)
        self._noise_row = arr(torch.arange(n, device=self.device) * self._noise.shape[1])
        self._overdispersion_x = arr(self.overdispersion)
        self._traits_x = arr(self._traits) if self._traits is not None else None
        if self.market == "structural":
            self.truth_x = {group: SimpleNamespace(**{key: arr(v) for key, v in vars(ns).items()}) for group, ns in self.truth.items()}

    def _f(self, values: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=self.dtype, device=self.device)

    def _build_tables(self, pid: torch.Tensor) -> None:
        """Per-market constants and per-(pair, step) calendar tables, computed with the single env's formulas."""
        T = self.t_max + 1
        dyn = np.zeros((len(self.pairs), T, len(_DYN)))
        cal = np.zeros((len(self.pairs), T, len(_OBS_CAL)))
        const: dict[str, list[float]] = {k: [] for k in (
            "n", "k", "ref", "cost", "stock0", "budget0", "decay", "flash_ratio", "flash_max", "holding", "salvage",
            "launch_cost", "log_stock", "earliest", "deadline", "overdispersion", "market_estimate", "prelaunch_signups",
            "reads_adopters",
        )}  # fmt: skip
        self.timelines = []
        for i, (s, p) in enumerate(self.pairs):
            tl = Timeline.from_scenario(s)
            self.timelines.append(tl)
            prod, nt = s.products[p], tl.n_steps
            ref = float(prod.reference_price)
            options = self.layouts[i].bundle_options
            for t in range(nt):
                angle = 2.0 * math.pi * (tl.week_of_year[t] - 1) / 52.0
                dyn[i, t] = (tl.season[t], tl.holiday[t], tl.competitor_strength[t], tl.competitor_price[t] / ref, tl.flash_open[t])
                cal[i, t] = (
                    math.sin(angle), math.cos(angle), tl.season[t], tl.holiday[t],
                    tl.holiday[t + 1] if t + 1 < nt else 0.0, 1.0 if tl.competitor_strength[t] > 0 else 0.0,
                    tl.competitor_price[t] / ref, tl.competitor_strength[t], 1.0 if tl.flash_open[t] else 0.0,
                    sum(tl.partner_open[o.item][t] for o in options) / len(options) if options else 0.0,
                )  # fmt: skip
            flash = s.pricing.flash_sale
            stock0 = float(prod.stock)
            values = {
                "n": nt, "k": float(s.step_weeks), "ref": ref, "cost": float(prod.unit_cost), "stock0": stock0,
                "budget0": float(s.ads.budget), "decay": float(s.ads.carryover) ** s.step_weeks,
                "flash_ratio": 1.0 - flash.discount if flash else 1.0, "flash_max": flash.max_uses if flash else 0,
                "holding": float(s.reward.holding_cost_per_unit_week) * s.step_weeks,
                "salvage": float(s.reward.salvage_value_per_unit), "launch_cost": float(s.launch.launch_cost),
                "log_stock": math.log1p(max(stock0, 1.0)), "earliest": tl.earliest_launch_step,
                "deadline": tl.deadline_step, "overdispersion": float(s.truth.demand_overdispersion),
                "market_estimate": float(prod.market_estimate or 0.0),
                "prelaunch_signups": float(prod.prelaunch_signups or 0.0),
                "reads_adopters": float(prod.reads_adopters),
            }  # fmt: skip
            for key, value in values.items():
                const[key].append(value)
        self.c = SimpleNamespace(**{k: self._f(v)[pid] for k, v in const.items()})
        self._t_cols = T  # tables are flattened to (pair * T + step, column) for index_select
        self._dyn = self._f(dyn).reshape(-1, len(_DYN))
        self._cal = self._f(cal).reshape(-1, len(_OBS_CAL))

    def _build_actions(self, pid: torch.Tensor, nvec: np.ndarray) -> None:
        """Decoding tables: each action index of the shared space -> this market's lever values."""
        P, O, A, C = (int(x) for x in nvec[1:])
        price, is_flash = np.zeros((len(self.pairs), P)), np.zeros((len(self.pairs), P), dtype=bool)
        spend = np.zeros((len(self.pairs), A))
        item, discount = np.full((len(self.pairs), O), -1), np.zeros((len(self.pairs), O))
        partner_open = np.zeros((len(self.pairs), O, self.t_max + 1), dtype=bool)
        item_price, item_cost = np.zeros((len(self.pairs), O)), np.zeros((len(self.pairs), O))
        native = np.zeros((len(self.pairs), 5), dtype=np.int64)
        box = np.zeros((len(self.pairs), 5))  # price lo, price hi, bundle options, max ad share, creatives
        for i, ((s, _), lay) in enumerate(zip(self.pairs, self.layouts)):
            native[i] = lay.nvec
            for a in range(P):
                j = min(a, lay.nvec[1] - 1)  # the shared-space clipping rule (envs.vector.clip_action)
                price[i, a] = lay.price_levels[min(j, len(lay.price_levels) - 1)]
                is_flash[i, a] = lay.has_flash and j == len(lay.price_levels)
            spend[i] = [lay.spend_levels[min(a, lay.nvec[3] - 1)] for a in range(A)]
            for o in range(O):
                j = min(o, lay.nvec[2] - 1)
                if j > 0:
                    opt = lay.bundle_options[j - 1]
                    cat = s.catalogue[opt.item]
                    item[i, o], discount[i, o] = opt.item, opt.discount
                    item_price[i, o], item_cost[i, o] = cat.price, cat.unit_cost
                    partner_open[i, o, : self.timelines[i].n_steps] = self.timelines[i].partner_open[opt.item]
            box[i] = (min(lay.price_levels), max(lay.price_levels), len(lay.bundle_options), max(lay.spend_levels), lay.n_creatives)
        self.a = SimpleNamespace(
            price=self._f(price)[pid], is_flash=torch.as_tensor(is_flash, device=self.device)[pid],
            spend=self._f(spend)[pid], discount=self._f(discount)[pid],
            item_price=self._f(item_price)[pid], item_cost=self._f(item_cost)[pid],
            partner_open=torch.as_tensor(partner_open, device=self.device)[pid],  # (N, options, T), contiguous
            native=torch.as_tensor(native, device=self.device)[pid], box=self._f(box)[pid],
            has_flash=torch.as_tensor([lay.has_flash for lay in self.layouts], device=self.device)[pid],
        )  # fmt: skip
        self._item, self._discount = item, discount  # per pair, for the response models' text parts
        self._flat_masks_offsets = np.concatenate([[0], np.cumsum(nvec)])

    def _build_learned(self, predictor: Any, pid: torch.Tensor, head_dtype: torch.dtype) -> None:
        self.predictor = predictor
        self.overdispersion = torch.full_like(self.c.n, float(predictor.demand_overdispersion))
        # An ensemble (models.ensemble) runs each member's heads and averages the responses.
        self._members = [self._member_heads(m, pid, head_dtype) for m in getattr(predictor, "members", [predictor])]
        self.heads, self.parts = self._members[0]

    def _member_heads(self, predictor: Any, pid: torch.Tensor, head_dtype: torch.dtype) -> tuple[Any, Any]:
        """One predictor's batched heads and its text parts for every market."""
        from launchsim.models.batched_heads import BatchedHeads

        heads = BatchedHeads(
            predictor.heads, predictor.cannibalisation, dtype=head_dtype, unknown_estimate=predictor.default_market_estimate
        ).to(self.device)
        O, C = int(self.nvec[2]), int(self.nvec[4])
        prods, creatives, partners, discounts = [], [], [], []
        for i, (s, p) in enumerate(self.pairs):
            prods.append(predictor.encode([s.products[p].text], "product")[0])
            own = predictor.encode([c.text for c in s.ads.creatives], "creative")
            creatives.append(torch.stack([own[min(c, len(own) - 1)] for c in range(C)]))
            cat = predictor.encode([c.text for c in s.catalogue], "partner") if s.catalogue else []
            zero = torch.zeros_like(prods[-1])
            partners.append(torch.stack([cat[self._item[i, o]] if self._item[i, o] >= 0 else zero for o in range(O)]))
            discounts.append(torch.as_tensor(self._discount[i]))
        dev = self.device
        parts = heads.prepare(
            torch.stack(prods).to(dev), torch.stack(creatives).to(dev), torch.stack(partners).to(dev), torch.stack(discounts).to(dev)
        )
        return heads, type(parts)(*(x[pid] for x in parts))

    def _build_structural(self, pid: torch.Tensor) -> None:
        fields: dict[str, dict[str, list[float]]] = {"product": {}, "creative": {}, "partner": {}, "ads": {}, "bundle": {}, "flash": {}}
        C, O = int(self.nvec[4]), int(self.nvec[2])
        for i, (s, p) in enumerate(self.pairs):
            m = StructuralMarket(s)
            records = {
                "product": [m.encode([s.products[p].text], "product")[0]],
                "creative": [m.encode([s.ads.creatives[min(c, len(s.ads.creatives) - 1)].text], "creative")[0] for c in range(C)],
                "partner": [m.encode([s.catalogue[self._item[i, o]].text], "partner")[0] if self._item[i, o] >= 0 else None for o in range(O)],
                "ads": [s.truth.ads], "bundle": [s.truth.bundle], "flash": [s.truth.flash],
            }  # fmt: skip
            for group, recs in records.items():
                for r_i, rec in enumerate(recs):
                    values = rec._asdict() if hasattr(rec, "_asdict") else (rec.model_dump() if rec is not None else {"affinity": 0.0, "cannibalisation": 0.0})
                    for key, value in values.items():
                        if isinstance(value, int | float):
                            fields[group].setdefault(key, []).append(float(value))
        counts = {"product": 1, "creative": C, "partner": O, "ads": 1, "bundle": 1, "flash": 1}
        self.truth = {}
        for group, values in fields.items():
            shaped = {k: self._f(np.reshape(v, (len(self.pairs), counts[group]))) [pid] for k, v in values.items()}
            per_text = group in ("creative", "partner")  # one column per creative / bundle option
            self.truth[group] = SimpleNamespace(**{k: (v if per_text else v[:, 0]) for k, v in shaped.items()})
        self.overdispersion = self.c.overdispersion

    # ------------------------------------------------------------------ VecEnv API

    def reset(self) -> np.ndarray:
        # A market given a seed (or never reset) starts a new stream; the others go on to their next
        # episode of uniforms, as a single env's reset without a seed draws the next from its generator.
        fresh = [i for i in range(self.num_envs) if self._seeds[i] is not None or self._generators[i] is None]
        for i in fresh:
            self._generators[i], _ = seeding.np_random(self._seeds[i])
            self._scale_generators[i] = demand_scale_generator(self._generators[i])
        self._seeds = [None] * self.num_envs
        self._state_reset(self.x.full(self.num_envs, True))
        going_on = np.ones(self.num_envs, dtype=bool)
        going_on[fresh] = False
        self._episode_in_block = self._episode_in_block + self.x.i64(self.x.asarray(going_on))
        self._refill_spent(np.flatnonzero(going_on))
        if fresh:
            self._draw_noise(fresh)
            self._episode_in_block[self.x.asarray(np.array(fresh))] = 0
        self._options = [{} for _ in range(self.num_envs)]
        self._rebind_static()
        return self.x.host(self._observe())

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        x = self.x
        if not x.numpy:
            return self._step_wait_device()
        obs_x, reward, done = self._step(x.asarray(np.asarray(self._actions)))
        obs, rewards, dones = x.host(obs_x), x.host(x.f32(reward)), x.host(done)
        # Markets whose episode goes on share one read-only empty info (SB3 and its wrappers write only
        # into the infos of ended episodes); N fresh dicts cost 3 ms a step at 65,536 markets.
        infos: list[Any] = [_NO_INFO] * self.num_envs
        ended = np.flatnonzero(dones)
        if len(ended):
            infos = self._episode_infos(infos, obs, ended, x.host(self._ep_return), x.host(self._ep_len))
            self._state_reset(done)
            self._episode_in_block = self._episode_in_block + x.i64(done)
            self._refill_spent(ended)
            obs[ended] = x.host(self._observe())[ended]
        return obs, rewards, dones, infos

    def _episode_infos(self, infos: list[Any], obs: np.ndarray, ended: np.ndarray, ep_return: np.ndarray, ep_len: np.ndarray) -> list[Any]:
        """SB3's infos of the ended markets: the terminal observation (a row of one copy) and the episode's
        return, length and time. Where every market ended (markets in lockstep), one comprehension."""
        now = round(time.perf_counter() - self._t0, 6)
        made = [
            {"terminal_observation": row, "episode": {"r": r, "l": steps, "t": now}, "TimeLimit.truncated": False}
            for row, r, steps in zip(obs[ended], ep_return[ended].tolist(), ep_len[ended].tolist())  # rows by iteration: half the cost of indexing
        ]
        if len(ended) == len(infos):
            return made
        for i, info in zip(ended.tolist(), made):
            infos[i] = info
        return infos

    def _refill_spent(self, ended: np.ndarray) -> None:
        """New uniforms for the ended markets whose block of episodes is used up; their episode counter
        is zeroed in place (a captured graph reads that tensor)."""
        spent = ended[self.x.host(self._episode_in_block)[ended] >= self.noise_episodes]
        if len(spent):
            self._draw_noise(spent)
            self._episode_in_block[self.x.asarray(spent)] = 0

    # ------------------------------------------------------------------ the device route (GPU)

    def _device_step(self, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """A whole step on the device with no host round trip: the step, the reset of every ended market
        (masked: a no-op for the others) and the observation after it, so that it can be a CUDA graph.
        Returns the observation, reward, done, episode return and length (before the reset), the
        observation after the reset, and the Poisson walk's unconverged count (a zero tensor outside graphs)."""
        x = self.x
        obs, profit, done = self._step(actions)
        ep_return, ep_len = self._ep_return, self._ep_len
        self._state_reset(done)
        self._episode_in_block = self._episode_in_block + x.i64(done)
        unconverged = self._walk_unconverged if self._walk_unconverged is not None else self._no_walk
        return obs, x.f32(profit), done, ep_return, ep_len, self._observe(), unconverged

    def _step_wait_device(self):
        x, n = self.x, self.num_envs
        actions = np.asarray(self._actions)
        if self._graph_wanted and self._graph is None:
            self._capture(actions)
        if self._graph is not None:
            self._static_actions.copy_(torch.as_tensor(actions, dtype=self._static_actions.dtype))
            self._graph.replay()
            obs_x, reward, done, ep_return, ep_len, after, unconverged = self._graph_out
            if int(unconverged):  # a mean beyond what the fixed walk covers: this step's counts are off there
                warnings.warn(
                    f"{int(unconverged)} Poisson counts needed more than {self._fixed_walk} walk steps (means far above 1e6); "
                    "stepping without the CUDA graph from now on", RuntimeWarning, stacklevel=2,
                )  # fmt: skip
                self._drop_graph()
        else:
            obs_x, reward, done, ep_return, ep_len, after, _ = self._device_step(x.asarray(actions))
        obs, rewards, dones = x.host(obs_x), x.host(reward), x.host(done)
        infos: list[Any] = [_NO_INFO] * n
        ended = np.flatnonzero(dones)
        if len(ended):
            infos = self._episode_infos(infos, obs, ended, x.host(ep_return), x.host(ep_len))
            self._refill_spent(ended)
            obs[ended] = x.host(after)[ended]
            if self.critic_demand_draw:  # drawn after the step for markets that began a new block
                obs[ended, -1] = x.host(self._critic_draw())[ended]
        return obs, rewards, dones, infos

    _STATE = (
        "_t", "_launched", "_launch_step", "_since_flash", "_flash_left", "_stock", "_budget", "_adstock", "_adopters",
        "_last_sales", "_last_clicks", "_last_price", "_ep_return", "_ep_len", "_episode_in_block",
    )  # fmt: skip

    def _capture(self, actions: np.ndarray) -> None:
        """Record ``_device_step`` as a CUDA graph over static state tensors (the state the graph reads
        and writes back in place); on failure, warn and step eagerly."""
        saved = {name: getattr(self, name).clone() for name in self._STATE}
        self._static_actions = torch.as_tensor(actions, device=self.device).clone()
        self._fixed_walk = 8
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up: allocations and library handles outside the capture
                self._device_step(self._static_actions)  # one step: a second could read past a market's uniforms
            torch.cuda.current_stream(self.device).wait_stream(side)
            self._static = saved  # untouched by the warm-up, which only rebinds the attributes
            for name in self._STATE:
                setattr(self, name, self._static[name])
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self._device_step(self._static_actions)
                for name in self._STATE:
                    self._static[name].copy_(getattr(self, name))
            for name in self._STATE:
                setattr(self, name, self._static[name])
            self._graph, self._graph_out = graph, out
        except RuntimeError as err:
            warnings.warn(f"CUDA graph capture failed, stepping eagerly: {err}", RuntimeWarning, stacklevel=3)
            for name, value in saved.items():
                setattr(self, name, value)
            self._drop_graph()

    def _drop_graph(self) -> None:
        self._graph, self._graph_wanted, self._fixed_walk, self._walk_unconverged = None, False, None, None

    def _rebind_static(self) -> None:
        """After an eager change of the state (a reset), copy it into the tensors a captured graph reads."""
        if self._graph is None:
            return
        for name in self._STATE:
            value = getattr(self, name)
            if value is not self._static[name]:
                self._static[name].copy_(value)
                setattr(self, name, self._static[name])

    @property
    def graphed(self) -> bool:
        """Whether steps replay a captured CUDA graph."""
        return self._graph is not None

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in self._indices(indices)]
        raise AttributeError(f"BatchedMarketVecEnv has no per-env method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices: Any) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)

    # ------------------------------------------------------------------ masks

    def action_masks(self) -> np.ndarray:
        """(N, sum(nvec)) valid values of every MultiDiscrete dimension, as ``LaunchMarketEnv.action_masks``."""
        x, k, a, t = self.x, self.k, self.ax, self._t
        tc = x.minimum(t, self.t_max)
        launch = x.stack([~self._launched & (t < k.deadline_i), self._launched | (t >= k.earliest_i)])
        flash_ok = (self._dyn_x[k.table_row + tc, _DYN.index("flash_open")] > 0) & (self._flash_left > 0)
        price = a.price_offered & (~a.is_flash | flash_ok[:, None])
        # A duplicate produced by clipping is masked: only each market's own indices are offered.
        bundle = a.bundle_offered & (x.take(a.partner_open_flat, a.option_cols * self._t_cols + tc[:, None]) | a.no_bundle)
        return x.host(x.cat([launch, price, bundle, a.ads_offered, a.creative_offered]))

    # ------------------------------------------------------------------ dynamics

    def _state_reset(self, mask: Any) -> None:
        x, k, n = self.x, self.k, self.num_envs
        if not hasattr(self, "_t"):
            for name in ("t", "launch_step", "since_flash", "flash_left", "ep_len"):
                setattr(self, f"_{name}", x.zeros(n, "long"))
            self._launched = x.zeros(n, "bool")
            for name in ("stock", "budget", "adstock", "adopters", "last_sales", "last_clicks", "last_price", "ep_return"):
                setattr(self, f"_{name}", x.zeros(n, "float"))
            self._t0 = time.perf_counter()
        # New arrays rather than in-place writes: last_step's arrays of the ending step stay intact.
        self._t = x.where(mask, 0, self._t)
        self._launched = x.where(mask, False, self._launched)
        self._launch_step = x.where(mask, NEVER, self._launch_step)
        self._since_flash = x.where(mask, NEVER, self._since_flash)
        self._flash_left = x.where(mask, k.flash_max_i, self._flash_left)
        self._stock = x.where(mask, k.stock0, self._stock)
        self._budget = x.where(mask, k.budget0, self._budget)
        for name in ("adstock", "adopters", "last_sales", "last_clicks", "last_price", "ep_return"):
            setattr(self, f"_{name}", x.where(mask, 0.0, getattr(self, f"_{name}")))
        self._ep_len = x.where(mask, 0, self._ep_len)

    def _draw_noise(self, indices: Any) -> None:
        """Each market's next ``noise_episodes`` episodes of uniforms from its own generator, in the order
        in which a single env's resets would draw them."""
        n_steps, k = self._n_steps, self.noise_episodes
        indices = [int(i) for i in indices]
        if self.demand_spread > 0.0:
            block = np.stack([draw_demand_scales(self._scale_generators[i], self.demand_spread, k) for i in indices])
            self._scales[torch.as_tensor(indices, device=self.device)] = torch.as_tensor(block, dtype=self.dtype).to(self.device)
        if self._noise_np is not None:  # straight into the tensor's memory
            for i in indices:
                self._generators[i].random(out=self._noise_np[i, : k * n_steps[i]])
            return
        stage = np.zeros((len(indices), *self._noise.shape[1:]))  # one host-to-device copy for all

        def fill(rows: range) -> None:
            for j in rows:  # a generator fills without the GIL: threads draw in parallel
                i = indices[j]
                self._generators[i].random(out=stage[j, : k * n_steps[i]])

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = min(16, cores, max(1, len(indices) // 1024))
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(fill, [range(w, len(indices), workers) for w in range(workers)]))
        else:
            fill(range(len(indices)))
        block = torch.as_tensor(stage, dtype=self.dtype)
        if self.dtype != torch.float64:  # a uniform just below 1 must not round to 1 (an infinite quantile)
            block.clamp_(max=1.0 - torch.finfo(self.dtype).eps)
        self._noise[torch.as_tensor(indices, device=self.device)] = block.to(self.device)

    def _decode(self, actions: Any) -> SimpleNamespace:
        x, a = self.x, self.ax
        if self.action_type == "multidiscrete":
            act = x.minimum(x.maximum(x.i64(actions), 0), a.native_max)  # the shared and the market's own ranges
            return SimpleNamespace(
                launch=act[:, 0] > 0, ratio=x.take(a.price, act[:, 1]), flash=x.take(a.is_flash, act[:, 1]),
                bundle=act[:, 2], share=x.take(a.spend, act[:, 3]), creative=act[:, 4],
            )  # fmt: skip
        v = x.minimum(x.maximum(x.f(actions), -1.0), 1.0)
        u = (v + 1.0) / 2.0
        return SimpleNamespace(
            launch=v[:, 0] > 0, ratio=a.box_lo + u[:, 1] * a.box_span, flash=a.has_flash & (v[:, 2] > 0),
            bundle=x.minimum(x.i64(x.round(u[:, 3] * a.box_options)), a.native_max[:, 2]), share=u[:, 4] * a.box_share,
            creative=x.minimum(x.i64(x.round(u[:, 5] * a.box_creatives)), a.native_max[:, 4]),
        )  # fmt: skip

    def _step(self, actions: Any) -> tuple[Any, Any, Any]:
        x, k, a, t = self.x, self.k, self.ax, self._t
        d = self._decode(actions)
        row = k.table_row + t
        dyn = self._dyn_x[row]
        season, holiday, comp_strength, comp_price, flash_open = (dyn[:, j] for j in range(len(_DYN)))

        # Launch timing.
        before = self._launched
        launch_now = ~before & x.where(d.launch, t >= k.earliest_i, t >= k.deadline_i)
        launched = before | launch_now
        launch_cost = x.where(launch_now, k.launch_cost, 0.0)
        self._launch_step = x.where(launch_now, t, self._launch_step)
        self._launched = launched

        # Price, flash sale and bundle only once on sale.
        flash = launched & d.flash & (flash_open > 0) & (self._flash_left > 0)
        self._flash_left = self._flash_left - x.i64(flash)
        ratio = x.where(flash, k.flash_ratio, d.ratio)
        active = launched & (d.bundle > 0) & x.take(a.partner_open_flat, d.bundle * self._t_cols + t)
        option = x.where(active, d.bundle, 0)
        discount = x.take(a.discount, option)
        creative = d.creative

        # Ads: a share of what is left; adstock carries over. Paused when sold out (env v2).
        spend = x.where(self._stock > 0.0, x.minimum(x.maximum(d.share, 0.0), 1.0) * self._budget, 0.0)
        self._budget = self._budget - spend
        self._adstock = k.decay * self._adstock + spend

        on_sale_ratio = x.where(launched, ratio, 0.0)
        ctx = MarketContext(
            launched=x.f(launched), step_weeks=k.k, season=season, holiday=holiday,
            price_ratio=x.where(launched, ratio, 1.0), reference_price=k.ref, flash=x.f(flash),
            weeks_since_flash=x.f(self._since_flash), competitor_strength=comp_strength,
            competitor_price_ratio=comp_price, adstock=self._adstock, adopters=self._adopters * k.reads_adopters,
            bundle_discount=discount, market_estimate=k.market_estimate, prelaunch_signups=k.prelaunch_signups,
        )  # fmt: skip
        resp = self._respond(ctx, creative, option)
        take = x.where(active, resp.bundle_take, 0.0)
        mu_demand, imp, ctr = resp.demand, resp.impressions, resp.ctr
        if self.demand_spread > 0.0:
            mu_demand = mu_demand * self._scales_x[self._scale_row + self._episode_in_block]
        if self.outcomes == "sampled":
            u = self._noise_x[self._noise_row + self._episode_in_block * k.n_i + t]
            mu = x.maximum(mu_demand, 0.0)
            if self._overdispersed:
                mu = mu * gamma_multiplier_batch(x.column(u, GAMMA), self._overdispersion_x)
            take = x.minimum(x.maximum(take, 0.0), 1.0)
            imp, ctr = x.maximum(imp, 0.0), x.minimum(x.maximum(ctr, 0.0), 1.0)
            # The three (four) counts in one call: per-call costs are paid once.
            slots, means = [SOLO, BUNDLE, CLICKS], [mu * (1.0 - take), mu * take, imp * ctr]
            if self.record_impressions:
                slots.append(NON_CLICKS), means.append(imp * (1.0 - ctr))
            n = self.num_envs
            if self._fixed_walk is None:
                counts = poisson_quantile_batch(x.columns(u, slots), x.cat_flat(means))
            else:  # inside a CUDA graph: a fixed number of walk steps, no device sync
                counts, self._walk_unconverged = poisson_quantile_fixed(x.columns(u, slots), x.cat_flat(means), self._fixed_walk)
            solo, bundle_demand, clicks = counts[:n], counts[n : 2 * n], counts[2 * n : 3 * n]
            demand = solo + bundle_demand
            impressions = clicks + counts[3 * n :] if self.record_impressions else imp
        else:
            demand, bundle_demand = mu_demand, mu_demand * x.minimum(x.maximum(take, 0.0), 1.0)
            impressions, clicks = imp, imp * ctr

        sold = x.minimum(demand, self._stock)
        wanted = demand > 0
        share = x.where(wanted, bundle_demand * sold / x.where(wanted, demand, 1.0), 0.0)
        if self.outcomes == "sampled":
            share = x.floor(share)
        bundled = x.where(sold >= demand, bundle_demand, share)
        self._stock = self._stock - sold
        self._adopters = self._adopters + sold * resp.first_purchase_share

        price = on_sale_ratio * k.ref
        revenue = price * (sold - bundled) + price * (1.0 - discount) * bundled
        item_price, item_cost = x.take(a.item_price, option), x.take(a.item_cost, option)
        # Option 0 has item price, cost and discount 0, so these vanish without a bundle.
        partner_revenue = item_price * (1.0 - discount) * bundled
        partner_cost = item_cost * bundled
        cannibalised = resp.cannibalisation * bundled * (item_price - item_cost)
        cogs = k.cost * sold
        holding = k.holding * self._stock
        self._t = t + 1
        terminated = self._t >= k.n_i
        salvage = x.where(terminated, k.salvage * self._stock, 0.0)
        profit = revenue + partner_revenue - cogs - partner_cost - cannibalised - spend - holding - launch_cost + salvage

        self._since_flash = x.where(flash, 0, x.minimum(self._since_flash + 1, NEVER))
        self._last_sales, self._last_clicks = sold, clicks
        self._last_price = on_sale_ratio
        self._ep_return = self._ep_return + profit
        self._ep_len = self._ep_len + 1
        step = {
            "launched": launched, "price": price, "flash_sale": flash, "bundle_discount": discount, "ad_spend": spend,
            "clicks": clicks, "demand": demand, "units_sold": sold, "bundled_units": bundled,
            "stock_left": self._stock, "budget_left": self._budget, "revenue": revenue, "partner_revenue": partner_revenue,
            "cogs": cogs, "cannibalised_margin": cannibalised, "holding_cost": holding, "launch_cost": launch_cost,
            "salvage": salvage, "profit": profit,
        }  # fmt: skip
        if self.record_impressions or self.outcomes == "expected":
            step["impressions"] = impressions
        self._last_step_x = step
        return self._observe(), profit, terminated

    @property
    def last_step(self) -> dict[str, torch.Tensor]:
        """The last step's quantities per market (tensors; on a CPU they share the env's arrays' memory)."""
        return {key: self.x.tensor(value) for key, value in self._last_step_x.items()}

    def _respond(self, ctx: MarketContext, creative: Any, option: Any) -> Any:
        x = self.x
        if self.market == "learned":
            # The heads are torch modules: the context goes in as tensors sharing the arrays' memory.
            ctx_t = MarketContext(**{f.name: x.tensor(getattr(ctx, f.name)) for f in dataclasses.fields(ctx)})
            creative_t, option_t = x.tensor(creative), x.tensor(option)
            responses = [heads.respond(parts, ctx_t, creative_t, option_t) for heads, parts in self._members]
            resp = responses[0] if len(responses) == 1 else mean_response(responses)
            return MarketResponse(**{f.name: x.f(x.asarray(getattr(resp, f.name))) for f in dataclasses.fields(resp)})
        tr = self.truth_x
        creative_p = SimpleNamespace(ctr=x.take(tr["creative"].ctr, creative))
        partner_p = SimpleNamespace(affinity=x.take(tr["partner"].affinity, option), cannibalisation=x.take(tr["partner"].cannibalisation, option))
        return structural_response(tr["product"], creative_p, partner_p, tr["ads"], tr["bundle"], tr["flash"], ctx)

    def _observe(self) -> Any:
        """The observation of every market, column for column as ``LaunchMarketEnv._observe`` (OBSERVATION_NAMES)."""
        x, k, t = self.x, self.k, self._t
        obs, launched = self._obs_buffer, self._launched
        x.take_rows(self._obs_table_x, k.table_row + t, out=obs)  # calendar and clock columns; the rest below
        obs[:, 22] = x.where(launched, 0.0, obs[:, 22])  # deadline_left
        obs[:, 7] = launched
        obs[:, 8] = x.where(launched, x.f(t - self._launch_step) / k.n, 0.0)
        obs[:, 9] = self._adopters / k.stock_scale
        obs[:, 10] = self._stock / k.stock_scale
        obs[:, 11] = self._budget / k.budget_scale  # 0 without a budget
        obs[:, 12] = self._adstock / k.budget_scale
        obs[:, 16] = x.log1p(self._last_sales) / k.log_stock
        obs[:, 17] = x.log1p(self._last_clicks) / 16.0
        obs[:, 18] = self._last_price
        obs[:, 19] = x.f(self._flash_left) / k.flash_scale  # 0 without flash sales
        obs[:, 21] = x.minimum(x.f(self._since_flash), k.n) / k.n
        out = x.clip_obs(obs)  # a new array: callers keep observations across steps
        parts = [out] if self._traits_x is None else [out, self._traits_x]
        if self.critic_demand_draw:
            parts.append(self._critic_draw()[:, None])
        return x.cat(parts) if len(parts) > 1 else out

    def _critic_draw(self) -> Any:
        """The critic's field: log of each market's demand multiplier this episode, as the single env's
        wrapper gives it. The index wraps so that a step inside a CUDA graph never reads past a block;
        a market whose block was used up gets its new block's value once the host has drawn it."""
        x = self.x
        draw = x.log(self._scales_x[self._scale_row + self._episode_in_block % self.noise_episodes])
        return x.f32(x.minimum(x.maximum(draw, -DRAW_BOUND), DRAW_BOUND))

    def _observation_table(self) -> torch.Tensor:
        """Per (pair, step t in 0..t_max) the observation columns that depend on nothing else
        (``_OBS_TABLE_COLS``), with the formulas of ``LaunchMarketEnv._observe`` in the state's dtype."""
        T, dt, dev = self._t_cols, self.dtype, self.device
        first = [self.pair_of.index(p) for p in range(len(self.pairs))]
        c = SimpleNamespace(**{key: value[first][:, None] for key, value in vars(self.c).items()})
        steps = torch.arange(T, device=dev)[None]
        tf = steps.to(dt)
        cal = self._cal.view(len(self.pairs), T, len(_OBS_CAL))
        cal = cal.gather(1, torch.minimum(steps, c.n.long() - 1)[..., None].expand(-1, -1, len(_OBS_CAL)))  # at min(t, n - 1)
        deadline_left = torch.where(c.deadline < NEVER, (c.deadline - tf).clamp(min=0.0).minimum(c.n) / c.n, torch.ones_like(tf))
        columns = [tf / c.n, (c.n - tf) / c.n, *cal[..., :5].unbind(-1), *cal[..., 5:9].unbind(-1), deadline_left, (steps >= c.earliest.long()).to(dt), cal[..., 9]]
        return torch.stack([col.expand(len(first), T) for col in columns], dim=-1).reshape(-1, len(_OBS_TABLE_COLS))


class _ArrayOps:
    """The few array operations the dynamics use, on NumPy arrays (a CPU: about 1 us an op at a few
    thousand markets, against 2-15 us through torch's dispatcher) or on torch tensors (a GPU); the
    dynamics are written once against these names."""

    def __init__(self, device: torch.device, dtype: torch.dtype):
        self.numpy = device.type == "cpu" and NUMPY_ON_CPU
        self.device, self.dtype = device, dtype
        self._np_float = np.dtype(str(dtype).removeprefix("torch."))
        self.where = np.where if self.numpy else torch.where
        self._row_starts: dict[int, np.ndarray] = {}
        self._col_index: dict[tuple[int, ...], torch.Tensor] = {}

    def asarray(self, value: Any) -> Any:
        """A host array (actions) or a tensor as this backend's array."""
        if self.numpy:
            return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        return torch.as_tensor(value, device=self.device)

    def tensor(self, value: Any) -> torch.Tensor:
        return torch.from_numpy(value) if self.numpy else value

    def host(self, value: Any) -> np.ndarray:
        return value if self.numpy else value.cpu().numpy()

    def zeros(self, n: int, kind: str) -> Any:
        return self.full(n, 0, kind)

    def full(self, n: int, value: Any, kind: str = "bool") -> Any:
        if self.numpy:
            return np.full(n, value, dtype={"bool": bool, "long": np.int64, "float": self._np_float}[kind])
        return torch.full((n,), value, dtype={"bool": torch.bool, "long": torch.long, "float": self.dtype}[kind], device=self.device)

    def f(self, v: Any) -> Any:
        return v.astype(self._np_float, copy=False) if self.numpy else v.to(self.dtype)

    def f32(self, v: Any) -> Any:
        return v.astype(np.float32) if self.numpy else v.float()

    def i64(self, v: Any) -> Any:
        return v.astype(np.int64) if self.numpy else v.long()

    def minimum(self, v: Any, bound: Any) -> Any:
        if self.numpy:
            return np.minimum(v, bound)
        return torch.minimum(v, bound) if isinstance(bound, torch.Tensor) else v.clamp(max=bound)

    def maximum(self, v: Any, bound: Any) -> Any:
        if self.numpy:
            return np.maximum(v, bound)
        return torch.maximum(v, bound) if isinstance(bound, torch.Tensor) else v.clamp(min=bound)

    def round(self, v: Any) -> Any:
        return np.round(v) if self.numpy else torch.round(v)

    def floor(self, v: Any) -> Any:
        return np.floor(v) if self.numpy else torch.floor(v)

    def log1p(self, v: Any) -> Any:
        return np.log1p(v) if self.numpy else torch.log1p(v)

    def log(self, v: Any) -> Any:
        return np.log(v) if self.numpy else torch.log(v)

    def stack(self, cols: list[Any]) -> Any:
        return np.stack(cols, axis=1) if self.numpy else torch.stack(cols, dim=1)

    def cat(self, parts: list[Any]) -> Any:
        return np.concatenate(parts, axis=1) if self.numpy else torch.cat(parts, dim=1)

    def cat_flat(self, parts: list[Any]) -> Any:
        return np.concatenate(parts) if self.numpy else torch.cat(parts)

    def column(self, table: Any, j: int) -> Any:
        return np.ascontiguousarray(table[:, j]) if self.numpy else table[:, j].contiguous()

    def columns(self, table: Any, cols: list[int]) -> Any:
        """Columns one after another in one flat array."""
        if self.numpy:
            return table[:, cols].T.reshape(-1)
        key = tuple(cols)  # a device index, made once: a list index would be copied from the host each step
        if key not in self._col_index:
            self._col_index[key] = torch.tensor(cols, device=self.device)
        return table.index_select(1, self._col_index[key]).T.reshape(-1)

    def take(self, table: Any, index: Any) -> Any:
        """``table[i, index[i]]`` for every row i (``index`` (N,) or (N, m))."""
        if self.numpy:  # one flat gather: cheaper than take_along_axis
            width = table.shape[1]
            if width not in self._row_starts:
                self._row_starts[width] = np.arange(table.shape[0], dtype=np.int64) * width
            starts = self._row_starts[width]
            return table.reshape(-1)[(starts if index.ndim == 1 else starts[:, None]) + index]
        return table.gather(1, index.unsqueeze(1) if index.ndim == 1 else index).reshape(index.shape)

    def take_rows(self, table: Any, rows: Any, out: Any) -> None:
        """``out[i] = table[rows[i]]`` in place."""
        if self.numpy:
            np.take(table, rows, axis=0, out=out, mode="clip")  # rows are in range; "raise" would buffer a copy
        else:
            torch.index_select(table, 0, rows, out=out)

    def clip_obs(self, obs: Any) -> Any:
        """A clipped copy."""
        if self.numpy:
            return np.clip(obs, OBS_LOW, OBS_HIGH)
        return obs.clamp(OBS_LOW, OBS_HIGH)
