"""BatchedMarketVecEnv: N launch markets as tensors, stepped in one call, behind SB3's VecEnv API.

Each market is a (scenario, product) pair; pairs may differ across the N slots. Everything a step
reads that depends only on the pair and the week (calendar, competitor, windows, the observation's
calendar fields) is tabulated once per pair; texts are encoded once and reduced to per-market text
parts of the predictor's heads (``models.batched_heads``). A step decodes all actions, applies the
launch, flash, bundle and ad rules, runs the response model once for the batch, samples the counts
from each market's pre-drawn uniforms and updates stock, budget, adstock and adoption, exactly as
``LaunchMarketEnv`` does for one market. Markets whose episode ends are reset in the same call
(SB3 auto-reset: ``infos[i]["terminal_observation"]`` and ``infos[i]["episode"]``).

Seeding follows SB3: ``seed(s)`` gives market i the seed ``s + i`` at the next reset, and each
market then draws from its own ``numpy`` generator exactly as a single env seeded ``s + i`` does,
so the N markets reproduce N single envs (``tests/envs/test_batched_market.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv

from envs.actions import ActionLayout, ActionType
from envs.launch_market import OBS_HIGH, OBS_LOW
from envs.timeline import NEVER, Timeline
from envs.vector import observation_space, product_traits, union_nvec
from models.outcomes import (
    BUNDLE,
    CLICKS,
    GAMMA,
    NON_CLICKS,
    NOISE_SLOTS,
    SOLO,
    gamma_multiplier_batch,
    poisson_quantile_batch,
)
from models.response import MarketContext
from models.structural_market import StructuralMarket, structural_response
from scenarios.schema import Scenario

# Per (pair, step) tables used by the dynamics and by the observation, in this column order.
_DYN = ("season", "holiday", "competitor_strength", "competitor_price_ratio", "flash_open")
_OBS_CAL = (
    "week_sin", "week_cos", "season", "holiday_now", "holiday_next", "competitor_present", "competitor_price",
    "competitor_strength", "flash_open", "bundles_open",
)  # fmt: skip


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
    ):
        if market == "learned" and predictor is None:
            raise ValueError("market='learned' needs a predictor")
        if outcomes not in ("sampled", "expected"):
            raise ValueError(f"outcomes must be 'sampled' or 'expected', found {outcomes!r}")
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
        obs_space = observation_space(len(traits[0]) if traits else 0)
        act_space = spaces.MultiDiscrete(nvec) if action_type == "multidiscrete" else spaces.Box(-1.0, 1.0, (6,), np.float32)
        self.render_mode = None
        super().__init__(n, obs_space, act_space)

        pid = torch.tensor(self.pair_of, device=self.device)
        self._pid = pid
        self._rows = torch.arange(n, device=self.device)
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
        budget = 2**22 if self.device.type == "cpu" else 2**26  # numbers held: 32 MB of float64 on a CPU, 256 MB of float32 on a GPU
        self.noise_episodes = noise_episodes or max(1, min(64, budget // (n * self.t_max * NOISE_SLOTS)))
        self._noise = torch.zeros(n, self.noise_episodes * self.t_max, NOISE_SLOTS, dtype=self.dtype, device=self.device)
        self._noise_np = self._noise.numpy() if self.device.type == "cpu" and self.dtype == torch.float64 else None
        self._episode_in_block = torch.zeros(n, dtype=torch.long, device=self.device)
        self._actions: np.ndarray | None = None
        self._state_reset(torch.ones(n, dtype=torch.bool, device=self.device))
        self.last_step: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ construction

    def _f(self, values: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=self.dtype, device=self.device)

    def _build_tables(self, pid: torch.Tensor) -> None:
        """Per-market constants and per-(pair, step) calendar tables, computed with the single env's formulas."""
        T = self.t_max + 1
        dyn = np.zeros((len(self.pairs), T, len(_DYN)))
        cal = np.zeros((len(self.pairs), T, len(_OBS_CAL)))
        const: dict[str, list[float]] = {k: [] for k in (
            "n", "k", "ref", "cost", "stock0", "budget0", "decay", "flash_ratio", "flash_max", "holding", "salvage",
            "launch_cost", "log_stock", "earliest", "deadline", "overdispersion", "market_estimate",
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
        from models.batched_heads import BatchedHeads

        self.predictor = predictor
        self.overdispersion = torch.full_like(self.c.n, float(predictor.demand_overdispersion))
        self.heads = BatchedHeads(
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
        parts = self.heads.prepare(
            torch.stack(prods).to(dev), torch.stack(creatives).to(dev), torch.stack(partners).to(dev), torch.stack(discounts).to(dev)
        )
        self.parts = type(parts)(*(x[pid] for x in parts))

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
        every = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        for i in range(self.num_envs):
            seed = self._seeds[i]
            if seed is not None or self._generators[i] is None:
                self._generators[i], _ = seeding.np_random(seed)
        self._seeds = [None] * self.num_envs
        self._state_reset(every)
        self._draw_noise(range(self.num_envs))
        self._episode_in_block.zero_()
        self._options = [{} for _ in range(self.num_envs)]
        return self._observe().cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs_t, reward, done = self._step(torch.as_tensor(np.asarray(self._actions), device=self.device))
        obs = obs_t.cpu().numpy()
        rewards = reward.float().cpu().numpy()
        dones = done.cpu().numpy()
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        ended = np.flatnonzero(dones)
        if len(ended):
            ret = self._ep_return.cpu().numpy()
            length = self._ep_len.cpu().numpy()
            now = round(time.perf_counter() - self._t0, 6)
            for i in ended:
                infos[i] = {"terminal_observation": obs[i].copy(), "episode": {"r": float(ret[i]), "l": int(length[i]), "t": now}, "TimeLimit.truncated": False}
            idx = torch.as_tensor(ended, device=self.device)
            mask = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
            mask[idx] = True
            self._state_reset(mask)
            self._episode_in_block[idx] += 1
            spent = ended[(self._episode_in_block[idx] >= self.noise_episodes).cpu().numpy()]
            if len(spent):
                self._draw_noise(spent)
                self._episode_in_block[torch.as_tensor(spent, device=self.device)] = 0
            obs[ended] = self._observe()[idx].cpu().numpy()
        return obs, rewards, dones, infos

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
        t, a, c = self._t, self.a, self.c
        tc = t.clamp(max=self.t_max)
        launch = torch.stack([~self._launched & (t < c.deadline), self._launched | (t >= c.earliest)], dim=1)
        P, O, A, C = (int(x) for x in self.nvec[1:])
        cols = torch.arange(P, device=self.device)
        price = cols[None] < a.native[:, 1:2]
        flash_ok = self._dyn.index_select(0, self._pid * self._t_cols + tc)[:, _DYN.index("flash_open")].bool() & (self._flash_left > 0)
        price = price & (~a.is_flash | flash_ok[:, None])
        # A duplicate produced by clipping is masked: only each market's own indices are offered.
        bundle = (torch.arange(O, device=self.device)[None] < a.native[:, 2:3]) & (
            a.partner_open[self._rows, :, tc] | (torch.arange(O, device=self.device)[None] == 0)
        )
        ads = torch.arange(A, device=self.device)[None] < a.native[:, 3:4]
        creative = torch.arange(C, device=self.device)[None] < a.native[:, 4:5]
        return torch.cat([launch, price, bundle, ads, creative], dim=1).cpu().numpy()

    # ------------------------------------------------------------------ dynamics

    def _state_reset(self, mask: torch.Tensor) -> None:
        n, dev, dt = self.num_envs, self.device, self.dtype
        if not hasattr(self, "_t"):
            self._t = torch.zeros(n, dtype=torch.long, device=dev)
            self._launched = torch.zeros(n, dtype=torch.bool, device=dev)
            self._launch_step = torch.full((n,), NEVER, dtype=torch.long, device=dev)
            self._since_flash = torch.full((n,), NEVER, dtype=torch.long, device=dev)
            self._flash_left = torch.zeros(n, dtype=torch.long, device=dev)
            for name in ("stock", "budget", "adstock", "adopters", "last_sales", "last_clicks", "last_price", "ep_return"):
                setattr(self, f"_{name}", torch.zeros(n, dtype=dt, device=dev))
            self._ep_len = torch.zeros(n, dtype=torch.long, device=dev)
            self._t0 = time.perf_counter()
        # New tensors rather than in-place writes: last_step's tensors of the ending step stay intact.
        c = self.c

        def fresh(current: torch.Tensor, start: Any) -> torch.Tensor:
            return torch.where(mask, start, current)

        self._t = fresh(self._t, 0)
        self._launched = fresh(self._launched, False)
        self._launch_step = fresh(self._launch_step, NEVER)
        self._since_flash = fresh(self._since_flash, NEVER)
        self._flash_left = fresh(self._flash_left, c.flash_max.long())
        self._stock = fresh(self._stock, c.stock0)
        self._budget = fresh(self._budget, c.budget0)
        for name in ("adstock", "adopters", "last_sales", "last_clicks", "last_price", "ep_return"):
            setattr(self, f"_{name}", fresh(getattr(self, f"_{name}"), 0.0))
        self._ep_len = fresh(self._ep_len, 0)

    def _draw_noise(self, indices: Any) -> None:
        """Each market's next ``noise_episodes`` episodes of uniforms from its own generator, in the order
        in which a single env's resets would draw them."""
        n_steps, k = self._n_steps, self.noise_episodes
        indices = [int(i) for i in indices]
        if self._noise_np is not None:  # straight into the tensor's memory
            for i in indices:
                self._generators[i].random(out=self._noise_np[i, : k * n_steps[i]])
            return
        stage = np.zeros((len(indices), *self._noise.shape[1:]))  # one host-to-device copy for all
        for j, i in enumerate(indices):
            self._generators[i].random(out=stage[j, : k * n_steps[i]])
        self._noise[torch.as_tensor(indices, device=self.device)] = torch.as_tensor(stage, dtype=self.dtype).to(self.device)

    def _decode(self, actions: torch.Tensor) -> SimpleNamespace:
        a = self.a
        if self.action_type == "multidiscrete":
            act = torch.minimum(actions.long(), torch.as_tensor(self.nvec, device=self.device) - 1).clamp(min=0)
            act = torch.minimum(act, a.native - 1)
            return SimpleNamespace(
                launch=act[:, 0] > 0, ratio=_pick(a.price, act[:, 1]), flash=_pick(a.is_flash, act[:, 1]),
                bundle=act[:, 2], share=_pick(a.spend, act[:, 3]), creative=act[:, 4],
            )  # fmt: skip
        x = actions.to(self.dtype).clamp(-1.0, 1.0)
        unit = (x + 1.0) / 2.0
        lo, hi, n_opt, max_share, n_cre = a.box.unbind(1)
        return SimpleNamespace(
            launch=x[:, 0] > 0, ratio=lo + unit[:, 1] * (hi - lo), flash=a.has_flash & (x[:, 2] > 0),
            bundle=torch.round(unit[:, 3] * n_opt).long(), share=unit[:, 4] * max_share,
            creative=torch.round(unit[:, 5] * (n_cre - 1)).long(),
        )  # fmt: skip

    def _step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c, a, rows, t = self.c, self.a, self._rows, self._t
        d = self._decode(actions)
        dyn = self._dyn.index_select(0, self._pid * self._t_cols + t)
        season, holiday, comp_strength, comp_price, flash_open = dyn.unbind(1)

        # Launch timing.
        before = self._launched
        may = t >= c.earliest.long()
        launch_now = ~before & ((d.launch & may) | (~d.launch & (t >= c.deadline.long())))
        launched = before | launch_now
        launch_cost = torch.where(launch_now, c.launch_cost, 0.0)
        self._launch_step = torch.where(launch_now, t, self._launch_step)
        self._launched = launched

        # Price, flash sale and bundle only once on sale.
        flash = launched & d.flash & (flash_open > 0) & (self._flash_left > 0)
        self._flash_left = self._flash_left - flash.long()
        ratio = torch.where(flash, c.flash_ratio, d.ratio)
        bundle = d.bundle.clamp(max=a.native[:, 2] - 1)
        active = launched & (bundle > 0) & _pick(a.partner_open.view(self.num_envs, -1), bundle * self._t_cols + t)
        option = torch.where(active, bundle, 0)
        discount = _pick(a.discount, option)
        creative = torch.minimum(d.creative.clamp(min=0), a.native[:, 4] - 1)

        # Ads: a share of what is left; adstock carries over.
        spend = d.share.clamp(0.0, 1.0) * self._budget
        self._budget = self._budget - spend
        self._adstock = c.decay * self._adstock + spend

        lf = launched.to(self.dtype)
        ctx = MarketContext(
            launched=lf, step_weeks=c.k, season=season, holiday=holiday,
            price_ratio=torch.where(launched, ratio, 1.0), reference_price=c.ref, flash=flash.to(self.dtype),
            weeks_since_flash=self._since_flash.to(self.dtype), competitor_strength=comp_strength,
            competitor_price_ratio=comp_price, adstock=self._adstock, adopters=self._adopters, bundle_discount=discount,
            market_estimate=c.market_estimate,
        )  # fmt: skip
        resp = self._respond(ctx, creative, option)
        take = torch.where(active, resp.bundle_take.to(self.dtype), 0.0)
        mu_demand = resp.demand.to(self.dtype)
        imp = resp.impressions.to(self.dtype)
        ctr = resp.ctr.to(self.dtype)
        if self.outcomes == "sampled":
            row = self._episode_in_block * c.n.long() + t
            u = self._noise.view(-1, NOISE_SLOTS).index_select(0, rows * self._noise.shape[1] + row)
            mu = mu_demand.clamp(min=0.0)
            if self._overdispersed:
                mu = mu * gamma_multiplier_batch(u[:, GAMMA], self.overdispersion)
            take = take.clamp(0.0, 1.0)
            bundle_demand = torch.zeros_like(mu)
            if bool(active.any()):
                bundle_demand = torch.where(take > 0, poisson_quantile_batch(u[:, BUNDLE], mu * take), 0.0)
            demand = poisson_quantile_batch(u[:, SOLO], mu * (1.0 - take)) + bundle_demand
            imp, ctr = imp.clamp(min=0.0), ctr.clamp(0.0, 1.0)
            clicks = poisson_quantile_batch(u[:, CLICKS], imp * ctr)
            impressions = clicks + poisson_quantile_batch(u[:, NON_CLICKS], imp * (1.0 - ctr)) if self.record_impressions else imp
        else:
            demand, bundle_demand = mu_demand, mu_demand * take.clamp(0.0, 1.0)
            impressions, clicks = imp, imp * ctr

        sold = torch.minimum(demand, self._stock)
        share = torch.where(demand > 0, bundle_demand * sold / torch.where(demand > 0, demand, 1.0), 0.0)
        if self.outcomes == "sampled":
            share = torch.floor(share)
        bundled = torch.where(sold >= demand, bundle_demand, share)
        self._stock = self._stock - sold
        self._adopters = self._adopters + sold * resp.first_purchase_share.to(self.dtype)

        price = torch.where(launched, ratio, 0.0) * c.ref
        revenue = price * (sold - bundled) + price * (1.0 - discount) * bundled
        item_price, item_cost = _pick(a.item_price, option), _pick(a.item_cost, option)
        partner_revenue = torch.where(active, item_price * (1.0 - discount) * bundled, 0.0)
        partner_cost = torch.where(active, item_cost * bundled, 0.0)
        cannibalised = torch.where(
            active, resp.cannibalisation.to(self.dtype) * bundled * (item_price - item_cost), 0.0
        )
        cogs = c.cost * sold
        holding = c.holding * self._stock
        self._t = t + 1
        terminated = self._t >= c.n.long()
        salvage = torch.where(terminated, c.salvage * self._stock, 0.0)
        profit = revenue + partner_revenue - cogs - partner_cost - cannibalised - spend - holding - launch_cost + salvage

        self._since_flash = torch.where(flash, 0, (self._since_flash + 1).clamp(max=NEVER))
        self._last_sales, self._last_clicks = sold, clicks
        self._last_price = torch.where(launched, ratio, 0.0)
        self._ep_return = self._ep_return + profit
        self._ep_len = self._ep_len + 1
        self.last_step = {
            "launched": launched, "price": price, "flash_sale": flash, "bundle_discount": discount, "ad_spend": spend,
            "clicks": clicks, "demand": demand, "units_sold": sold, "bundled_units": bundled,
            "stock_left": self._stock, "budget_left": self._budget, "revenue": revenue, "partner_revenue": partner_revenue,
            "cogs": cogs, "cannibalised_margin": cannibalised, "holding_cost": holding, "launch_cost": launch_cost,
            "salvage": salvage, "profit": profit,
        }  # fmt: skip
        if self.record_impressions or self.outcomes == "expected":
            self.last_step["impressions"] = impressions
        return self._observe(), profit, terminated

    def _respond(self, ctx: MarketContext, creative: torch.Tensor, option: torch.Tensor):
        if self.market == "learned":
            return self.heads.respond(self.parts, ctx, creative, option)
        tr = self.truth
        creative_p = SimpleNamespace(ctr=_pick(tr["creative"].ctr, creative))
        partner_p = SimpleNamespace(affinity=_pick(tr["partner"].affinity, option), cannibalisation=_pick(tr["partner"].cannibalisation, option))
        return structural_response(tr["product"], creative_p, partner_p, tr["ads"], tr["bundle"], tr["flash"], ctx)

    def _observe(self) -> torch.Tensor:
        """The observation of every market, column for column as ``LaunchMarketEnv._observe`` (OBSERVATION_NAMES)."""
        c, t = self.c, self._t
        n_steps = c.n
        tc = torch.minimum(t, n_steps.long() - 1)
        cal = self._cal.index_select(0, self._pid * self._t_cols + tc)
        tf = t.to(self.dtype)
        launched = self._launched
        lf = launched.to(self.dtype)
        budget0 = c.budget0
        has_budget = budget0 > 0
        safe_budget = torch.where(has_budget, budget0, 1.0)
        deadline = c.deadline
        deadline_left = torch.where(
            deadline < NEVER, (deadline - tf).clamp(min=0.0).minimum(n_steps) / n_steps, torch.ones_like(tf)
        )
        cols = [
            tf / n_steps, (n_steps - tf) / n_steps, cal[:, 0], cal[:, 1], cal[:, 2], cal[:, 3], cal[:, 4], lf,
            torch.where(launched, (t - self._launch_step).to(self.dtype) / n_steps, 0.0),
            self._adopters / c.stock0.clamp(min=1.0), self._stock / c.stock0.clamp(min=1.0),
            torch.where(has_budget, self._budget / safe_budget, 0.0), torch.where(has_budget, self._adstock / safe_budget, 0.0),
            cal[:, 5], cal[:, 6], cal[:, 7],
            torch.log1p(self._last_sales) / c.log_stock, torch.log1p(self._last_clicks) / 16.0, self._last_price,
            torch.where(c.flash_max > 0, self._flash_left.to(self.dtype) / c.flash_max.clamp(min=1.0), 0.0), cal[:, 8],
            self._since_flash.to(self.dtype).minimum(n_steps) / n_steps,
            torch.where(launched, 0.0, deadline_left), (t >= c.earliest.long()).to(self.dtype), cal[:, 9],
        ]  # fmt: skip
        obs = torch.stack(cols, dim=1).float().clamp(OBS_LOW, OBS_HIGH)
        if self._traits is not None:
            obs = torch.cat([obs, self._traits], dim=1)
        return obs


def _pick(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[i, index[i]]`` for every row i (a gather, much cheaper than advanced indexing on a CPU)."""
    return table.gather(1, index.unsqueeze(1)).squeeze(1)
