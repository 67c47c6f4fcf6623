"""Rollouts that never leave the env's device, for SB3's on-policy algorithms (PPO, A2C, MaskablePPO).

SB3 collects a rollout through the VecEnv API: each step copies the actions to the host and the
observations and rewards back, builds a list of infos and writes NumPy arrays. ``with_device_rollouts``
gives an algorithm class a ``collect_rollouts`` that, where its env is a ``BatchedMarketVecEnv``
(alone or behind ``VecNormalize``), keeps the whole rollout on the env's device: the env steps on
tensors (``BatchedMarketVecEnv.step_tensors``), the normaliser's statistics are updated there, the
policy acts there (MaskablePPO's with the env's action masks, also made there) and the rollout
buffer is torch storage on the same device (``DeviceRolloutBuffer``).
Episode statistics are read once per rollout. SB3's update (``train``), callbacks, logging and saving
are SB3's own; any other env takes SB3's VecEnv path.

On a CPU the env's NumPy step and the normaliser's NumPy statistics share the tensors' memory, and the
policy's draw makes the same torch calls in the same order as SB3's distribution objects, so the device
path gives the VecEnv path's rollouts and updates number for number for the same seeds
(``tests/agents/test_device_rollouts.py``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.distributions import MultiCategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import RolloutBufferSamples
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

DEVICE_ROLLOUT_ALGORITHMS = ("ppo", "a2c", "maskable_ppo")


def device_market(env: VecEnv | None) -> Any:
    """The ``BatchedMarketVecEnv`` that ``env`` is, or wraps in one ``VecNormalize``; None otherwise."""
    from launchsim.envs.batched_market import BatchedMarketVecEnv

    inner = env.venv if isinstance(env, VecNormalize) else env
    return inner if isinstance(inner, BatchedMarketVecEnv) else None


_CLASSES: dict[type, type] = {}


def with_device_rollouts(algorithm_class: type) -> type:
    """``algorithm_class`` (an SB3 on-policy class) with rollouts collected on the env's device. The
    subclass saves and loads as the class it extends."""
    if algorithm_class not in _CLASSES:
        _CLASSES[algorithm_class] = type(algorithm_class.__name__, (DeviceRollouts, algorithm_class), {"__module__": __name__})
    return _CLASSES[algorithm_class]


class DeviceRollouts:
    """The mixin ``with_device_rollouts`` puts before an SB3 on-policy class (module docstring)."""

    def collect_rollouts(
        self, env: VecEnv, callback: Any, rollout_buffer: RolloutBuffer, n_rollout_steps: int, use_masking: bool | None = None
    ) -> bool:  # fmt: skip
        """SB3's ``collect_rollouts`` on the env's device; ``use_masking`` is MaskablePPO's (None for the others)."""
        market = device_market(env)
        if market is None or self.use_sde:
            extra = () if use_masking is None else (use_masking,)
            return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps, *extra)  # type: ignore[misc]
        if torch.device(market.device) != torch.device(self.device):
            raise ValueError(f"device rollouts need the policy on the env's device ({market.device}), found {self.device}")
        masking = bool(use_masking)
        if not isinstance(rollout_buffer, DeviceRolloutBuffer):
            rollout_buffer = self.rollout_buffer = DeviceRolloutBuffer(
                self.n_steps, self.observation_space, self.action_space, device=self.device, gamma=self.gamma,
                gae_lambda=self.gae_lambda, n_envs=self.n_envs, masks=use_masking is not None,
            )  # fmt: skip
        normalizer = tensor_normalizer(env, self.device)
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        callback.on_rollout_start()
        obs = torch.as_tensor(self._last_obs, device=self.device)
        starts = torch.as_tensor(self._last_episode_starts, device=self.device)
        n_steps, masks = 0, None
        while n_steps < n_rollout_steps:
            with torch.no_grad():
                if masking:
                    masks = market.action_mask_tensor()
                    actions, values, log_probs = self.policy(obs, action_masks=masks)
                else:
                    actions, values, log_probs = act(self.policy, obs)
            new_obs, rewards, dones = market.step_tensors(actions)
            new_obs, rewards = normalizer.step(new_obs, rewards, dones)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                self._keep_last(obs, starts, normalizer)
                return False
            n_steps += 1
            rollout_buffer.add(obs, actions, rewards, starts, values, log_probs, action_masks=masks)
            obs, starts = new_obs, dones
        self._keep_last(obs, starts, normalizer)
        self.ep_info_buffer.extend(market.finished_episodes(limit=self.ep_info_buffer.maxlen))
        with torch.no_grad():
            values = self.policy.predict_values(obs)
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _keep_last(self, obs: torch.Tensor, starts: torch.Tensor, normalizer: Any) -> None:
        """The rollout's last observation and episode starts where SB3 keeps them (host arrays: saved with
        the model), and the normaliser's statistics back in the ``VecNormalize``: once per rollout."""
        self._last_obs, self._last_episode_starts = obs.cpu().numpy(), starts.cpu().numpy()
        normalizer.write_back()


def act(policy: Any, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``policy(obs)``: actions, values and log-probabilities. For SB3's actor-critic over MultiDiscrete
    levers, the categorical draws are made directly: the same torch calls in the same order as SB3's
    distribution objects (so the same numbers), without building and checking six of them each step."""
    if type(policy).forward is not ActorCriticPolicy.forward or not isinstance(policy.action_dist, MultiCategoricalDistribution):
        return policy(obs)
    features = policy.extract_features(obs)
    if policy.share_features_extractor:
        latent_pi, latent_vf = policy.mlp_extractor(features)
    else:
        latent_pi, latent_vf = policy.mlp_extractor.forward_actor(features[0]), policy.mlp_extractor.forward_critic(features[1])
    values = policy.value_net(latent_vf)
    draws, log_probs = [], []
    for logits in torch.split(policy.action_net(latent_pi), list(policy.action_dist.action_dims), dim=1):
        logits = logits - logits.logsumexp(-1, keepdim=True)
        draw = torch.multinomial(torch.softmax(logits, -1), 1, True)
        draws.append(draw)
        log_probs.append(logits.gather(-1, draw))
    return torch.cat(draws, 1), values, torch.cat(log_probs, 1).sum(1)


class DeviceRolloutBuffer(RolloutBuffer):
    """SB3's ``RolloutBuffer`` in torch storage on the policy's device: the same layout, returns,
    advantages and minibatches (NumPy's global generator draws the permutation, as in SB3); with
    ``masks``, sb3-contrib's ``MaskableRolloutBuffer``'s action masks and samples too."""

    def __init__(self, *args: Any, masks: bool = False, **kwargs: Any):
        self.masks = masks
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(self.buffer_size, self.n_envs, *shape, dtype=torch.float32, device=self.device)

        self.observations, self.actions = zeros(*self.obs_shape), zeros(self.action_dim)  # actions as floats, as SB3 samples them
        self.rewards, self.returns, self.episode_starts = zeros(), zeros(), zeros()
        self.values, self.log_probs, self.advantages = zeros(), zeros(), zeros()
        if self.masks:  # every value of every lever valid unless the env masks it (sb3-contrib's default)
            self.action_masks = torch.ones_like(zeros(int(sum(self.action_space.nvec))))
        self.generator_ready = False
        self.pos, self.full = 0, False

    def add(self, obs: Any, action: Any, reward: Any, episode_start: Any, value: Any, log_prob: Any, action_masks: Any = None) -> None:
        self.observations[self.pos] = obs
        self.actions[self.pos] = action.reshape(self.n_envs, self.action_dim)
        self.rewards[self.pos] = reward
        self.episode_starts[self.pos] = episode_start
        self.values[self.pos] = value.flatten()
        self.log_probs[self.pos] = log_prob
        if action_masks is not None:
            self.action_masks[self.pos] = action_masks
        self.pos += 1
        self.full = self.pos == self.buffer_size

    def compute_returns_and_advantage(self, last_values: torch.Tensor, dones: Any) -> None:
        """GAE(lambda) advantages and TD(lambda) returns, the arithmetic of SB3's in the same order."""
        last_values = last_values.flatten().float()
        last_gae_lam: Any = 0
        for step in reversed(range(self.buffer_size)):
            if step == self.buffer_size - 1:
                next_non_terminal = 1.0 - torch.as_tensor(dones, device=self.device).float()
                next_values = last_values
            else:
                next_non_terminal = 1.0 - self.episode_starts[step + 1]
                next_values = self.values[step + 1]
            delta = self.rewards[step] + self.gamma * next_values * next_non_terminal - self.values[step]
            last_gae_lam = delta + self.gamma * self.gae_lambda * next_non_terminal * last_gae_lam
            self.advantages[step] = last_gae_lam
        self.returns = self.advantages + self.values

    def get(self, batch_size: int | None = None) -> Generator[RolloutBufferSamples, None, None]:
        total = self.buffer_size * self.n_envs
        indices = torch.as_tensor(np.random.permutation(total), device=self.device)
        if not self.generator_ready:
            # SB3's swap_and_flatten; values and returns also as host arrays for the update's explained variance
            names = _SAMPLED + ("action_masks",) * self.masks
            self._flat = {name: getattr(self, name).transpose(0, 1).reshape(total, -1).squeeze(1) for name in names}
            self._flat["observations"] = self._flat["observations"].reshape(total, *self.obs_shape)
            self.values, self.returns = self._flat["values"].cpu().numpy(), self._flat["returns"].cpu().numpy()
            self.generator_ready = True
        batch_size = batch_size or total
        for start in range(0, total, batch_size):
            yield self._get_samples(indices[start : start + batch_size])

    def _get_samples(self, batch_inds: Any, env: Any = None) -> Any:
        flat = self._flat
        samples = [flat[name][batch_inds] for name in _SAMPLED]
        if not self.masks:
            return RolloutBufferSamples(*samples)
        from sb3_contrib.common.maskable.buffers import MaskableRolloutBufferSamples

        return MaskableRolloutBufferSamples(*samples, flat["action_masks"][batch_inds])


_SAMPLED = ("observations", "actions", "values", "log_probs", "advantages", "returns")  # RolloutBufferSamples' order


# ---------------------------------------------------------------------------- normalisers


def tensor_normalizer(env: VecEnv, device: Any) -> Any:
    """What ``VecNormalize`` does to a step, for tensors: nothing without one; its own NumPy code on
    the tensors' memory on a CPU; the same statistics on the device elsewhere."""
    if not isinstance(env, VecNormalize):
        return _NoNormalizer()
    return _SharedMemoryNormalizer(env) if torch.device(device).type == "cpu" else DeviceNormalizer(env, device)


class _NoNormalizer:
    def step(self, obs: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return obs, rewards

    def write_back(self) -> None:
        pass


class _SharedMemoryNormalizer(_NoNormalizer):
    """``VecNormalize.step_wait``'s own statistics and arithmetic on NumPy views of CPU tensors."""

    def __init__(self, norm: VecNormalize):
        self.norm = norm

    def step(self, obs: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        norm, obs_np, rewards_np = self.norm, obs.numpy(), rewards.numpy()
        norm.old_obs, norm.old_reward = obs_np, rewards_np
        if norm.training and norm.norm_obs:
            norm.obs_rms.update(obs_np)
        normalized = norm.normalize_obs(obs_np)
        if norm.training:
            norm._update_reward(rewards_np)
        scaled = norm.normalize_reward(rewards_np)
        norm.returns[dones.numpy()] = 0
        return torch.from_numpy(normalized), torch.from_numpy(scaled)


class DeviceNormalizer(_NoNormalizer):
    """``VecNormalize``'s running statistics (float64, SB3's update formulas) kept and applied on the
    device; ``write_back`` copies them into the ``VecNormalize``, which saves them with checkpoints."""

    def __init__(self, norm: VecNormalize, device: Any):
        def tensor(value: Any) -> torch.Tensor:
            return torch.as_tensor(np.asarray(value, dtype=np.float64), device=device)

        self.norm = norm
        self.obs_mean, self.obs_var, self.obs_count = tensor(norm.obs_rms.mean), tensor(norm.obs_rms.var), float(norm.obs_rms.count)
        self.ret_mean, self.ret_var, self.ret_count = tensor(norm.ret_rms.mean), tensor(norm.ret_rms.var), float(norm.ret_rms.count)
        self.returns = tensor(norm.returns)

    @staticmethod
    def _update(mean: torch.Tensor, var: torch.Tensor, count: float, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        batch_mean, batch_var, n = batch.mean(0), batch.var(0, correction=0), batch.shape[0]
        delta, total = batch_mean - mean, count + n
        m2 = var * count + batch_var * n + delta.square() * count * n / total
        return mean + delta * n / total, m2 / total, total

    def step(self, obs: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        norm = self.norm
        if norm.training and norm.norm_obs:
            self.obs_mean, self.obs_var, self.obs_count = self._update(self.obs_mean, self.obs_var, self.obs_count, obs.double())
        if norm.norm_obs:
            obs = ((obs - self.obs_mean) / torch.sqrt(self.obs_var + norm.epsilon)).clamp(-norm.clip_obs, norm.clip_obs).float()
        if norm.training:
            self.returns = self.returns * norm.gamma + rewards
            self.ret_mean, self.ret_var, self.ret_count = self._update(self.ret_mean, self.ret_var, self.ret_count, self.returns)
        if norm.norm_reward:
            rewards = (rewards / torch.sqrt(self.ret_var + norm.epsilon)).clamp(-norm.clip_reward, norm.clip_reward).float()
        self.returns = torch.where(dones, 0.0, self.returns)
        return obs, rewards

    def write_back(self) -> None:
        norm = self.norm
        norm.obs_rms.mean, norm.obs_rms.var, norm.obs_rms.count = self.obs_mean.cpu().numpy(), self.obs_var.cpu().numpy(), self.obs_count
        norm.ret_rms.mean, norm.ret_rms.var, norm.ret_rms.count = self.ret_mean.cpu().numpy(), self.ret_var.cpu().numpy(), self.ret_count
        norm.returns = self.returns.cpu().numpy()
