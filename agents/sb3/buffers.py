"""An off-policy model's replay buffer saved as plain arrays (NumPy ``.npz``, read without pickle), so
that resuming a run folder never runs code from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from launchsim.errors import TrainingError
from launchsim.files import atomic_file

ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def save_replay_buffer(model: Any, path: str | Path) -> Path:
    """The model's replay buffer at ``path`` (``.npz``), written atomically."""
    buffer, path = model.replay_buffer, Path(path)
    arrays = {name: getattr(buffer, name) for name in ARRAYS if isinstance(getattr(buffer, name, None), np.ndarray)}
    with atomic_file(path) as handle:
        np.savez(handle, pos=np.int64(buffer.pos), full=np.bool_(buffer.full), **arrays)
    return path


def load_replay_buffer(model: Any, path: str | Path) -> None:
    """Fill the model's (fresh) replay buffer from ``path``; a file that does not fit it is refused."""
    buffer = model.replay_buffer
    try:
        with np.load(path, allow_pickle=False) as saved:
            for name in ARRAYS:
                mine = getattr(buffer, name, None)
                if not isinstance(mine, np.ndarray):
                    continue
                if name not in saved or saved[name].shape != mine.shape or saved[name].dtype != mine.dtype:
                    raise TrainingError(f"{path}: {name} does not fit this model's replay buffer {mine.shape} {mine.dtype}")
                mine[...] = saved[name]
            buffer.pos, buffer.full = int(saved["pos"]), bool(saved["full"])
    except (OSError, ValueError, KeyError) as err:
        raise TrainingError(f"{path}: not a readable replay buffer ({err})") from err
