"""The callbacks of a training run: checkpoints, an entropy schedule, and a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launchsim.agents.run_folder import record_event, save_model
from launchsim.agents.sb3.buffers import save_replay_buffer
from stable_baselines3.common.callbacks import BaseCallback


REPLAY_BUFFER = "replay_buffer.npz"  # an off-policy run's buffer at its newest checkpoint, plain arrays


class CheckpointEvery(BaseCallback):
    """Saves the model and its VecNormalize statistics about every ``every`` steps.

    It saves when a rollout starts, i.e. right after the agent's last update: a checkpoint then
    holds every step it counts, and a resumed run ends on the same step count as an unbroken one.
    """

    def __init__(self, run_dir: Path, every: int, replay_buffer: bool):
        super().__init__()
        self.folder, self.every, self.replay_buffer = run_dir / "checkpoints", every, replay_buffer
        self.next_step = 0

    def _on_training_start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.next_step = (self.num_timesteps // self.every + 1) * self.every

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self.next_step:
            self.save()
            self.next_step = (self.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        return True

    def save(self) -> Path:
        path = self.folder / f"step_{self.num_timesteps:09d}.zip"
        save_model(self.model, self.training_env, path, path.with_suffix(".json"))
        if self.replay_buffer:
            save_replay_buffer(self.model, self.folder / REPLAY_BUFFER)
        record_event(self.folder.parent, "checkpoint", step=int(self.num_timesteps), file=path.name)
        return path


class EntropyAnnealing(BaseCallback):
    """Sets an on-policy model's entropy coefficient before each update, linearly from ``start`` at
    step 0 to ``end`` at ``total`` (SB3 takes no schedule for it). Steps are the run's, so a resumed
    run continues the same line."""

    def __init__(self, start: float, end: float, total: int):
        super().__init__()
        self.start, self.end, self.total = start, end, max(total, 1)

    def _on_rollout_end(self) -> None:
        done = min(self.num_timesteps / self.total, 1.0)
        self.model.ent_coef = self.start + (self.end - self.start) * done

    def _on_step(self) -> bool:
        return True


class ProgressBar(BaseCallback):
    """A rich progress bar with steps, elapsed time and the latest quick-evaluation profit."""

    def __init__(self, total: int, evaluate: Any, every: int, show: bool):
        super().__init__()
        self.total, self.evaluate, self.every, self.show = total, evaluate, every, show
        self.progress = self.task = None
        self.next_eval = 0
        self.latest = "…"

    def _on_training_start(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.next_eval = (self.num_timesteps // self.every + 1) * self.every if self.every else 0
        if self.show:
            from rich.console import Console

            self.progress = Progress(
                TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"), TimeElapsedColumn(),
                TextColumn("eval profit {task.fields[profit]}"), console=Console(stderr=True),
            )  # fmt: skip
            self.progress.start()
            self.task = self.progress.add_task("train", total=self.total, completed=self.num_timesteps, profit=self.latest)

    def _on_step(self) -> bool:
        if self.every and self.evaluate is not None and self.num_timesteps >= self.next_eval:
            profit = self.evaluate()
            self.logger.record("eval/profit_mean", profit)
            self.latest = f"{profit:,.0f}"
            self.next_eval = (self.num_timesteps // self.every + 1) * self.every
        if self.progress is not None:
            self.progress.update(self.task, completed=min(self.num_timesteps, self.total), profit=self.latest)
        return True

    def _on_training_end(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=min(self.num_timesteps, self.total), profit=self.latest)
            self.progress.stop()
