"""BatchedMarketVecEnv: N launch markets as arrays, stepped in one call, behind SB3's VecEnv API.

Each market is a (scenario, product) pair; pairs may differ across the N slots. A step runs the very
code a single env runs (``envs.dynamics``, ``models.outcomes``, the response model's responder) on
arrays of N markets instead of one market's numbers: NumPy views of the state on a CPU (an op on a
few thousand numbers costs about 1 us there against 2-15 us through torch; only the predictor's MLPs
run in torch), torch tensors on a GPU, where the step with its auto-reset is captured once as a CUDA
graph and replayed (``cuda_graph``). Texts are encoded once and bound to the markets when the env is
built. Markets whose episode ends are reset in the same call (SB3 auto-reset:
``infos[i]["terminal_observation"]`` and ``infos[i]["episode"]``).

Seeding follows SB3: ``seed(s)`` gives market i the seed ``s + i`` at the next reset, and each
market then draws from its own ``numpy`` generator exactly as a single env seeded ``s + i`` does,
so the N markets reproduce N single envs (``tests/envs/test_batched_market.py``), also through
auto-resets and through a ``reset()`` without a new seed (each market goes on to its next episode).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from launchsim.envs.actions import ActionType
from launchsim.envs.dynamics import (
    MarketState,
    action_masks,
    describe_market,
    market_texts,
    observe,
    reset_state,
    stack_markets,
    step,
    with_model_terms,
)
from launchsim.envs.launch_market import checked_demand_spread, demand_scale_generator, draw_demand_scales, rival_generator
from launchsim.envs.spaces import (
    CRITIC_FIELDS,
    OBSERVATION_NAMES,
    log_demand_draw,
    observation_space,
    product_traits,
    union_nvec,
)
from launchsim.models.ops import NumpyOps, TorchOps
from launchsim.models.outcomes import NOISE_SLOTS
from launchsim.models.structural_market import StructuralMarket, StructuralResponder
from launchsim.scenarios.schema import Scenario
from stable_baselines3.common.vec_env import VecEnv

# The step runs on NumPy views of the state on a CPU; False runs the torch code a GPU uses (tests).
NUMPY_ON_CPU = True
_NO_INFO = MappingProxyType({})
_WHOLE = ("t", "launch_step", "since_flash", "flash_left", "changes_left")  # state fields that count steps or uses


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
        keys = list(dict.fromkeys((id(s), p) for s, p in markets))
        by_key = {(id(s), p): (s, p) for s, p in markets}
        self.pairs = [by_key[k] for k in keys]
        self.pair_of = np.array([keys.index((id(s), p)) for s, p in markets], dtype=np.int64)
        self.t_max = max(s.n_steps for s, _ in self.pairs)
        nvec = union_nvec(self.pairs) if nvec is None else np.asarray(nvec)
        if (nvec < union_nvec(self.pairs)).any():
            raise ValueError(f"nvec {list(nvec)} is smaller than the markets' own action sizes {list(union_nvec(self.pairs))}")
        self.nvec = nvec
        traits = [product_traits(s, p, predictor) for s, p in self.pairs] if product_features else []
        self.critic_demand_draw = bool(critic_demand_draw)  # the critic's field after the traits (envs.spaces)
        obs_space = observation_space(len(traits[0]) if traits else 0, len(CRITIC_FIELDS) if self.critic_demand_draw else 0)
        act_space = spaces.MultiDiscrete(nvec) if action_type == "multidiscrete" else spaces.Box(-1.0, 1.0, (6,), np.float32)
        self.render_mode = None
        super().__init__(n, obs_space, act_space)

        numpy = self.device.type == "cpu" and NUMPY_ON_CPU and self.dtype == torch.float64
        self.x = x = NumpyOps(np.float64) if numpy else TorchOps(self.device, self.dtype)
        if market == "learned":
            from launchsim.models.learned_market import check_levers

            for s, _ in self.pairs:
                check_levers(predictor, s)
            self.predictor = predictor
            models = [predictor] * len(self.pairs)
        else:
            models = [StructuralMarket(s) for s, _ in self.pairs]
        described = [with_model_terms(describe_market(s, p, nvec, steps=self.t_max + 1), model, s, p) for model, (s, p) in zip(models, self.pairs)]
        self.c, self.tab, self.a = stack_markets(x, described, self.pair_of)
        self._n_steps = [s.n_steps for s, _ in (self.pairs[i] for i in self.pair_of)]
        self._traits = x.asarray(np.stack(traits)[self.pair_of].astype(np.float32)) if traits else None
        if market == "learned":
            self.responder = predictor.responder(x, self._texts(models, described), head_dtype)
        else:
            self.responder = StructuralResponder(x, self._texts(models, described))
        self.overdispersion = self.responder.overdispersion

        self._generators: list[np.random.Generator | None] = [None] * n
        # Uniforms for several episodes per market are drawn in one call (a generator fills blocks in
        # stream order, so this equals one draw per reset) to keep per-market Python calls rare.
        budget = 2**22 if self.device.type == "cpu" else 2**28  # numbers held: 32 MB of float64 on a CPU, 1 GB of float32 on a GPU
        self.noise_episodes = noise_episodes or max(1, min(64, budget // (n * self.t_max * NOISE_SLOTS)))
        self._noise = torch.zeros(n, self.noise_episodes * self.t_max, NOISE_SLOTS, dtype=self.dtype, device=self.device)
        self._noise_np = self._noise.numpy() if numpy else None
        # Per-episode demand multipliers (demand_spread > 0), drawn with the uniforms, block by block.
        self._scale_generators: list[np.random.Generator | None] = [None] * n
        self._scales = torch.ones(n, self.noise_episodes, dtype=self.dtype, device=self.device)
        # Per-episode uniforms that decide whether a rival answers (a rival with answer_probability < 1).
        self._rival_drawn = bool((x.host(self.c.rival_chance) < 1.0).any())
        self._rival_generators: list[np.random.Generator | None] = [None] * n
        self._rivals = torch.zeros(n, self.noise_episodes, dtype=self.dtype, device=self.device)
        self._rivals_x = self._as_x(self._rivals.view(-1))
        self._noise_x = self._as_x(self._noise.view(-1, NOISE_SLOTS))
        self._scales_x = self._as_x(self._scales.view(-1))
        self._scale_row = x.asarray(np.arange(n, dtype=np.int64) * self.noise_episodes)
        self._noise_row = x.asarray(np.arange(n, dtype=np.int64) * self._noise.shape[1])
        # float32, the observation's dtype: a column written from a state array rounds as a final cast would.
        self._obs_buffer = self._as_x(torch.zeros(n, len(OBSERVATION_NAMES), dtype=torch.float32, device=self.device))
        self._actions: np.ndarray | None = None
        self._episode_in_block = x.asarray(np.zeros(n, dtype=np.int64))
        whole, flags = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
        zero = MarketState(*(x.asarray(whole if f in _WHOLE else flags if f == "launched" else np.zeros(n), float_type=f not in _WHOLE and f != "launched") for f in MarketState._fields))
        self._all = x.asarray(np.ones(n, dtype=bool))
        self._state = reset_state(x, self.c, zero, self._all)
        self._ep_return = x.asarray(np.zeros(n), float_type=True)
        self._ep_len = x.asarray(np.zeros(n, dtype=np.int64))
        self._t0 = time.perf_counter()
        self._last_step_x: dict[str, Any] = {}
        self._seeds: list[int | None] = [None] * n
        # On a GPU a step is one CUDA graph replay (captured at the first step; ``cuda_graph=False``
        # steps eagerly): a few hundred small kernels launched as one.
        self._graph_wanted = self.device.type == "cuda" if cuda_graph is None else bool(cuda_graph)
        if self._graph_wanted and self.device.type != "cuda":
            raise ValueError("cuda_graph=True needs a CUDA device")
        self._graph: Any = None
        self._in_graph = False
        self._unfinished: Any = 0
        self._no_walk = torch.zeros((), dtype=torch.long, device=self.device)  # outside a graph the walk always finishes
        # The device path (step_tensors): ended episodes' statistics kept on the device, and on a GPU the
        # host's clock of when episodes end.
        self._finished: list[tuple[Any, Any]] = []  # (returns, lengths) of the episodes ended on each step
        self._unfinished_walks: Any = 0
        self._clock: EpisodeClock | None = None

    def _as_x(self, tensor: torch.Tensor) -> Any:
        """A tensor as the step's array: a NumPy view sharing its memory on a CPU, the tensor elsewhere."""
        return tensor.numpy() if self.x.kind == "numpy" else tensor

    def _texts(self, models: list[Any], described: list[Any]) -> list[Any]:
        """Every slot's encoded texts (encoded once per distinct market)."""
        per_pair = [market_texts(model, s, p, d.option_items) for model, (s, p), d in zip(models, self.pairs, described)]
        return [per_pair[i] for i in self.pair_of]

    # ------------------------------------------------------------------ VecEnv API

    def reset(self) -> np.ndarray:
        # A market given a seed (or never reset) starts a new stream; the others go on to their next
        # episode of uniforms, as a single env's reset without a seed draws the next from its generator.
        x = self.x
        fresh = [i for i in range(self.num_envs) if self._seeds[i] is not None or self._generators[i] is None]
        for i in fresh:
            self._generators[i], _ = seeding.np_random(self._seeds[i])
            self._scale_generators[i] = demand_scale_generator(self._generators[i])
            self._rival_generators[i] = rival_generator(self._generators[i])
        self._seeds = [None] * self.num_envs
        self._reset_markets(self._all)
        going_on = np.ones(self.num_envs, dtype=bool)
        going_on[fresh] = False
        self._episode_in_block = self._episode_in_block + x.asarray(going_on.astype(np.int64))
        self._refill_spent(np.flatnonzero(going_on))
        if fresh:
            self._draw_noise(fresh)
            self._episode_in_block[x.asarray(np.array(fresh))] = 0
        self._options = [{} for _ in range(self.num_envs)]
        self._clock = None
        self._rebind_static()
        return x.host(self._observe())

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        if self.x.kind != "numpy":
            return self._step_wait_device()
        obs, rewards, dones, ended, terminal, ep_return, ep_len = self._step_numpy(np.asarray(self._actions))
        # Markets whose episode goes on share one read-only empty info (SB3 and its wrappers write only
        # into the infos of ended episodes); N fresh dicts cost 3 ms a step at 65,536 markets.
        infos: list[Any] = [_NO_INFO] * self.num_envs
        if len(ended):
            infos = self._episode_infos(infos, terminal, ended, ep_return, ep_len)
        return obs, rewards, dones, infos

    def _step_numpy(self, actions: np.ndarray) -> tuple[Any, ...]:
        """A step on the CPU's NumPy route with the auto-reset of ended markets: observations (after the
        reset), float32 rewards, dones, the ended markets, their terminal observations and the episode
        returns and lengths before the reset."""
        obs, reward, done = self._step(actions)
        ended = np.flatnonzero(done)
        ep_return, ep_len, terminal = self._ep_return, self._ep_len, obs
        if len(ended):
            terminal = obs[ended]
            self._reset_markets(done)
            self._episode_in_block = self._episode_in_block + done.astype(np.int64)
            self._refill_spent(ended)
            obs[ended] = self._observe()[ended]
        return obs, reward.astype(np.float32), done, ended, terminal, ep_return, ep_len

    # ------------------------------------------------------------------ the device path (agents.sb3.device_rollouts)

    def step_tensors(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of every market on tensors of the env's device, for rollouts that never leave it: the
        observations after the auto-reset of ended markets, float32 rewards and bool dones, the numbers
        ``step`` returns, without infos. Ended episodes' returns and lengths stay on the device until
        ``finished_episodes``. On a GPU no step reads the device from the host: an episode lasts its
        scenario's steps, so the host knows which markets end when (``EpisodeClock``)."""
        x = self.x
        if x.kind == "numpy":
            obs, reward, done, ended, _, ep_return, ep_len = self._step_numpy(actions.numpy())
            if len(ended):
                self._note_finished(ended, ep_return, ep_len)
            return torch.from_numpy(obs), torch.from_numpy(reward), torch.from_numpy(done)
        if self._clock is None:
            self._clock = EpisodeClock(np.array(self._n_steps), x.host(self._state.t), x.host(self._episode_in_block))
        actions = actions.to(self.device)
        if self._graph_wanted and self._graph is None:
            self._capture(actions)
        if self._graph is not None:
            self._static_actions.copy_(actions)
            self._graph.replay()
            obs_x, reward, done, ep_return, ep_len, after, unfinished = self._graph_out
            reward, done = reward.clone(), done.clone()  # the graph's outputs are overwritten by its next replay
            self._unfinished_walks = self._unfinished_walks + unfinished
        else:
            obs_x, reward, done, ep_return, ep_len, after, _ = self._device_step(actions)
        obs = torch.where(done[:, None], after, obs_x)
        ended = self._clock.tick()
        if len(ended):
            index = torch.as_tensor(ended, device=self.device)
            self._note_finished(index, ep_return, ep_len)
            spent = ended[self._clock.block[ended] >= self.noise_episodes]
            if len(spent):
                self._draw_noise(spent)
                self._episode_in_block[torch.as_tensor(spent, device=self.device)] = 0
                self._clock.block[spent] = 0
            if self.critic_demand_draw:  # drawn after the step for markets that began a new block
                obs[index, -1] = self._critic_draw()[index]
        return obs, reward, done

    def _note_finished(self, ended: Any, ep_return: Any, ep_len: Any) -> None:
        self._finished.append((ep_return[ended], ep_len[ended]))  # gathered on the device, read by finished_episodes

    def finished_episodes(self, limit: int | None = None) -> list[dict[str, float]]:
        """The episodes ended since the previous call (the last ``limit`` of them) in the order the VecEnv
        path's infos report them, as SB3's ``info["episode"]`` ({"r", "l", "t"}): one read from the device."""
        x, finished = self.x, self._finished
        self._finished = []
        returns = x.host(x.cat_flat([r for r, _ in finished])) if finished else np.zeros(0)
        lengths = x.host(x.cat_flat([steps for _, steps in finished])) if finished else np.zeros(0, dtype=np.int64)
        returns, lengths = returns[-limit if limit else None :].tolist(), lengths[-limit if limit else None :].tolist()
        if isinstance(self._unfinished_walks, torch.Tensor) and int(self._unfinished_walks):
            self._unfinished_walks = 0
            warnings.warn(
                "some Poisson counts needed more walk steps than a CUDA graph holds (means far above 1e6); "
                "stepping without the CUDA graph from now on", RuntimeWarning, stacklevel=2,
            )  # fmt: skip
            self._drop_graph()
        now = round(time.perf_counter() - self._t0, 6)
        return [{"r": r, "l": steps, "t": now} for r, steps in zip(returns, lengths)]

    def _reset_markets(self, mask: Any) -> None:
        """Markets in ``mask`` back at the start of an episode (new arrays: last_step's stay intact)."""
        x = self.x
        self._state = reset_state(x, self.c, self._state, mask)
        self._ep_return = x.where(mask, 0.0, self._ep_return)
        self._ep_len = x.where(mask, 0, self._ep_len)

    def _episode_infos(self, infos: list[Any], terminal: np.ndarray, ended: np.ndarray, ep_return: Any, ep_len: Any) -> list[Any]:
        """SB3's infos of the ended markets: the terminal observation (``terminal``, a row per ended market)
        and the episode's return, length and time. Where every market ended (markets in lockstep), one comprehension."""
        now = round(time.perf_counter() - self._t0, 6)
        ep_return, ep_len = self.x.host(ep_return), self.x.host(ep_len)
        made = [
            {"terminal_observation": row, "episode": {"r": r, "l": steps, "t": now}, "TimeLimit.truncated": False}
            for row, r, steps in zip(terminal, ep_return[ended].tolist(), ep_len[ended].tolist())  # rows by iteration: half the cost of indexing
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
        observation after the reset, and the Poisson walk's unfinished count (a zero tensor outside graphs)."""
        obs, profit, done = self._step(actions)
        ep_return, ep_len = self._ep_return, self._ep_len
        self._reset_markets(done)
        self._episode_in_block = self._episode_in_block + done.long()
        unfinished = self._unfinished if isinstance(self._unfinished, torch.Tensor) else self._no_walk
        return obs, profit.float(), done, ep_return, ep_len, self._observe(), unfinished

    def _step_wait_device(self):
        x, n = self.x, self.num_envs
        self._clock = None  # step_tensors reads the device once to set its clock again
        actions = np.asarray(self._actions)
        if self._graph_wanted and self._graph is None:
            self._capture(actions)
        if self._graph is not None:
            self._static_actions.copy_(torch.as_tensor(actions, dtype=self._static_actions.dtype))
            self._graph.replay()
            obs_x, reward, done, ep_return, ep_len, after, unfinished = self._graph_out
            if int(unfinished):  # a mean beyond what the fixed walk covers: this step's counts are off there
                warnings.warn(
                    f"{int(unfinished)} Poisson counts needed more walk steps than a CUDA graph holds (means far above 1e6); "
                    "stepping without the CUDA graph from now on", RuntimeWarning, stacklevel=2,
                )  # fmt: skip
                self._drop_graph()
        else:
            obs_x, reward, done, ep_return, ep_len, after, _ = self._device_step(x.asarray(actions))
        obs, rewards, dones = x.host(obs_x), x.host(reward), x.host(done)
        infos: list[Any] = [_NO_INFO] * n
        ended = np.flatnonzero(dones)
        if len(ended):
            infos = self._episode_infos(infos, obs[ended], ended, ep_return, ep_len)
            self._refill_spent(ended)
            obs[ended] = x.host(after)[ended]
            if self.critic_demand_draw:  # drawn after the step for markets that began a new block
                obs[ended, -1] = x.host(self._critic_draw())[ended]
        return obs, rewards, dones, infos

    def _static_names(self) -> list[str]:
        return [*(f"state.{f}" for f in MarketState._fields), "_ep_return", "_ep_len", "_episode_in_block"]

    def _get(self, name: str) -> Any:
        return getattr(self._state, name[6:]) if name.startswith("state.") else getattr(self, name)

    def _set(self, name: str, value: Any) -> None:
        if name.startswith("state."):
            self._state = self._state._replace(**{name[6:]: value})
        else:
            setattr(self, name, value)

    def _capture(self, actions: np.ndarray) -> None:
        """Record ``_device_step`` as a CUDA graph over static state tensors (the state the graph reads
        and writes back in place); on failure, warn and step eagerly."""
        names = self._static_names()
        saved = {name: self._get(name).clone() for name in names}
        self._static_actions = torch.as_tensor(actions, device=self.device).clone()
        self._in_graph = True
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up: allocations and library handles outside the capture
                self._device_step(self._static_actions)  # one step: a second could read past a market's uniforms
            torch.cuda.current_stream(self.device).wait_stream(side)
            self._static = saved  # untouched by the warm-up, which only rebinds the attributes
            for name in names:
                self._set(name, self._static[name])
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self._device_step(self._static_actions)
                for name in names:
                    self._static[name].copy_(self._get(name))
            for name in names:
                self._set(name, self._static[name])
            self._graph, self._graph_out = graph, out
        except RuntimeError as err:
            warnings.warn(f"CUDA graph capture failed, stepping eagerly: {err}", RuntimeWarning, stacklevel=3)
            for name, value in saved.items():
                self._set(name, value)
            self._drop_graph()

    def _drop_graph(self) -> None:
        self._graph, self._graph_wanted, self._in_graph, self._unfinished = None, False, False, 0

    def _rebind_static(self) -> None:
        """After an eager change of the state (a reset), copy it into the tensors a captured graph reads."""
        if self._graph is None:
            return
        for name in self._static_names():
            value = self._get(name)
            if value is not self._static[name]:
                self._static[name].copy_(value)
                self._set(name, self._static[name])

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

    def action_masks(self) -> np.ndarray:
        """(N, sum(nvec)) valid values of every MultiDiscrete dimension, as ``LaunchMarketEnv.action_masks``."""
        return self.x.host(action_masks(self.x, self.c, self.tab, self.a, self._state, self.nvec))

    def action_mask_tensor(self) -> torch.Tensor:
        """The same masks as a bool tensor on the env's device (the device path's MaskablePPO)."""
        masks = action_masks(self.x, self.c, self.tab, self.a, self._state, self.nvec)
        return torch.from_numpy(masks) if self.x.kind == "numpy" else masks

    # ------------------------------------------------------------------ the step

    def _step(self, actions: Any) -> tuple[Any, Any, Any]:
        x, t = self.x, self._state.t
        sampled = self.outcomes == "sampled"
        u = self._noise_x[self._noise_row + self._episode_in_block * self.c.n_i + t] if sampled else None
        scale = self._scales_x[self._scale_row + self._episode_in_block] if self.demand_spread > 0.0 else None
        r = step(
            x, self.c, self.tab, self.a, self._state, x.asarray(actions), self.action_type, self.responder, u, scale,
            sampled=sampled, with_impressions=self.record_impressions, graph_walk=self._in_graph, rival_draw=self._rival_draw(),
        )  # fmt: skip
        self._state, self._unfinished = r.state, r.unfinished
        self._ep_return = self._ep_return + r.profit
        self._ep_len = self._ep_len + 1
        self._last_step_x = r.quantities
        return self._observe(), r.profit, r.terminated

    @property
    def last_step(self) -> dict[str, torch.Tensor]:
        """The last step's quantities per market (tensors; on a CPU they share the env's arrays' memory)."""
        as_tensor = torch.from_numpy if self.x.kind == "numpy" else (lambda v: v)
        return {key: as_tensor(np.asarray(value)) if self.x.kind == "numpy" else value for key, value in self._last_step_x.items()}

    def _observe(self) -> Any:
        """The observation of every market, column for column as ``LaunchMarketEnv`` (``envs.dynamics.observe``)."""
        x = self.x
        out = observe(x, self.c, self.tab, self._state, self._obs_buffer, self._rival_draw())  # a new array: callers keep observations
        parts = [out] if self._traits is None else [out, self._traits]
        if self.critic_demand_draw:
            parts.append(self._critic_draw()[:, None])
        return x.cat_cols(parts) if len(parts) > 1 else out

    def _rival_draw(self) -> Any:
        """Each market's uniform of this episode that decides whether its rival answers (None without a
        rival that answers by chance). The index wraps as in ``_critic_draw``: a market just reset into a
        new block reads an old value, which no rival reads before our launch."""
        if not self._rival_drawn:
            return None
        return self._rivals_x[self._scale_row + self._episode_in_block % self.noise_episodes]

    def _critic_draw(self) -> Any:
        """The critic's field: log of each market's demand multiplier this episode, as the single env gives
        it. The index wraps so that a step inside a CUDA graph never reads past a block; a market whose
        block was used up gets its new block's value once the host has drawn it."""
        x = self.x
        draw = log_demand_draw(x, self._scales_x[self._scale_row + self._episode_in_block % self.noise_episodes])
        return draw.astype(np.float32) if x.kind == "numpy" else draw.float()

    def _draw_noise(self, indices: Any) -> None:
        """Each market's next ``noise_episodes`` episodes of uniforms from its own generator, in the order
        in which a single env's resets would draw them."""
        n_steps, k = self._n_steps, self.noise_episodes
        indices = [int(i) for i in indices]
        if self.demand_spread > 0.0:
            block = np.stack([draw_demand_scales(self._scale_generators[i], self.demand_spread, k) for i in indices])
            self._scales[torch.as_tensor(indices, device=self.device)] = torch.as_tensor(block, dtype=self.dtype).to(self.device)
        if self._rival_drawn:
            block = np.stack([self._rival_generators[i].random(k) for i in indices])
            self._rivals[torch.as_tensor(indices, device=self.device)] = torch.as_tensor(block, dtype=self.dtype).to(self.device)
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


class EpisodeClock:
    """The host's copy of where each market is in its episode and its block of uniforms, kept without
    reading the device: every episode lasts its scenario's steps. ``tick`` after each step returns the
    markets whose episode ended on it, and costs one comparison on the steps between such events."""

    def __init__(self, n_steps: np.ndarray, t: np.ndarray, block: np.ndarray):
        self.n_steps = np.asarray(n_steps, dtype=np.int64)
        self.left = self.n_steps - np.asarray(t, dtype=np.int64)  # steps to each market's episode end
        self.block = np.array(block, dtype=np.int64)  # episodes each market has used of its block of uniforms
        self.elapsed, self.next = 0, int(self.left.min())
        self._none = np.zeros(0, dtype=np.int64)

    def tick(self) -> np.ndarray:
        self.elapsed += 1
        if self.elapsed < self.next:
            return self._none
        self.left -= self.elapsed
        ended = np.flatnonzero(self.left == 0)
        self.left[ended] = self.n_steps[ended]
        self.block[ended] += 1
        self.elapsed, self.next = 0, int(self.left.min())
        return ended
