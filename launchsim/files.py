"""Writing outputs so that a crash never leaves half a file: each output is written to a temporary file
in its folder, flushed to disk, then moved over the target in one step."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from launchsim.errors import OutputError


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces ``path`` in one step when the block ends (temporary file in
    the same folder, fsync, replace); on an error the target is left as it was. The folder is made if needed.
    A system error while writing (a full disk, no permission) becomes an ``OutputError`` naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OutputError(f"{path}: cannot write: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write: {err.strerror or err}; the file was left as it was") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, replace); the folder is made if needed."""
    with atomic_file(path) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def write_json(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    """``value`` as strict JSON at ``path``, atomically (NumPy numbers and paths written as plain values; a
    NaN or infinite number, which JSON cannot hold, as null)."""
    return atomic_write(path, json.dumps(finite(value), indent=indent, default=json_default, allow_nan=False) + "\n")


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (NumPy's too) replaced by None, in nested dicts, lists and tuples."""
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return finite(value.tolist())
    return value


def json_default(value: Any) -> Any:
    """JSON for the values outputs hold besides plain ones: NumPy scalars and arrays, paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG at ``path`` atomically, and close it."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    if not fig.get_constrained_layout():  # a figure laid out by constraints keeps its own layout
        fig.tight_layout()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    return atomic_write(path, buffer.getvalue())


def write_frame(path: str | Path, frame: Any) -> Path:
    """A DataFrame as CSV or Parquet (by the file's extension), atomically."""
    import io

    path = Path(path)
    frame = frame.replace([np.inf, -np.inf], np.nan)  # an infinite figure is no figure
    if path.suffix == ".parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return atomic_write(path, buffer.getvalue())
    return atomic_write(path, frame.to_csv(index=False))  # NaN: an empty cell
