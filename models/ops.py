"""The one array-ops namespace the market is written against: Python floats, NumPy arrays or torch tensors.

Every part of a market step (the response equations, the context features, the predictor's heads,
the sampler, the launch/price/bundle/ads/stock dynamics and the observation) is written once as
functions of an ``ops`` object and of its inputs. The same code then runs
- on plain Python numbers for one market (``SCALAR``: a single env, several times faster than NumPy
  scalars at this size),
- on NumPy arrays for a batch on a CPU (``NumpyOps``: about 1 us an op at a few thousand markets,
  against 2-15 us through torch's dispatcher), and
- on torch tensors for a batch on a GPU (``TorchOps``; also what a CUDA graph captures) and for training.

Only what differs between the backends lives here: elementwise maths, selections, gathers and the
few places where a backend needs another strategy for the same result (a matrix product fused with
its SiLU on a CPU). Booleans are Python bools, bool arrays or bool tensors; ``not_`` negates them
(``~`` on a Python bool is an integer).
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any

import numpy as np
from scipy.special import cython_special
from scipy.special import gammaincc as _gammaincc
from scipy.special import ndtri as _ndtri

_F64_EPS = float(np.finfo(np.float64).eps)
U_EDGE = 1e-12  # a uniform is capped at 1 - U_EDGE: beyond it, float CDF sums cannot resolve it
NEVER = 10_000  # a step index past any horizon: "no deadline", "never happened"


def _scalar_where(cond: Any, a: Any, b: Any) -> Any:
    return a if cond else b


class ScalarOps:
    """One market on Python numbers; a "table" is a list indexed by a whole number. The operations are
    instance attributes bound to builtins where one exists: a step makes about a hundred of these calls."""

    kind = "scalar"

    def __init__(self) -> None:
        self.exp, self.log, self.log1p, self.sqrt = math.exp, math.log, math.log1p, math.sqrt
        self.floor = math.floor  # a whole number (an int): a count's arithmetic makes it a float again where it matters
        self.round = lambda v: float(round(v))
        self.minimum, self.maximum, self.where, self.not_ = min, max, _scalar_where, operator.not_
        self.f = self.f32 = float
        self.i64, self.any = int, bool
        self.copysign, self.erfc = math.copysign, math.erfc
        # scipy's special functions on one number through their C entry points (the ufuncs' own code, a
        # tenth of the ufunc call's cost on a Python float)
        self.ndtri, self.gammaincc = cython_special.ndtri, cython_special.gammaincc
        self.take = self.col = operator.getitem  # one market's entry of a per-market table; the j-th number of a record
        self.u_cap = 1.0 - U_EDGE
        self._orders: dict[tuple[int, ...], np.ndarray] = {}


    @staticmethod
    def sigmoid(v: float) -> float:
        return 1.0 / (1.0 + math.exp(-v))

    @staticmethod
    def softplus(v: float) -> float:
        return math.log1p(math.exp(-abs(v))) + max(v, 0.0)

    @staticmethod
    def eps(v: Any) -> float:
        return _F64_EPS

    @staticmethod
    def asarray(values: Any, float_type: bool = False) -> Any:
        return values

    def masked(self, mask: Any, fn: Any, args: tuple, otherwise: Any) -> Any:
        """``fn(ops, *args)`` where ``mask`` holds, else ``otherwise``; fn runs only where it is needed."""
        return fn(self, *args) if mask else otherwise

    @staticmethod
    def repeat_while(phases: tuple, state: tuple, args: tuple, max_steps: int, check_every: int = 1) -> tuple:
        """For each (going, step) phase in turn, ``state = step(*state, *args)`` while ``going(*state, *args)``
        (one number: a plain loop)."""
        for going, step in phases:
            while going(*state, *args):
                state = step(*state, *args)
        return state

    def lgamma(self, v: float) -> float:
        """log Gamma(v) of a whole number v >= 1, with the arithmetic of ``NumpyOps.lgamma``."""
        return _LGAMMA_LIST[int(v)] if v <= _TABLE else _stirling_lgamma(self, v)

    def choose(self, mask: Any, if_true: Any, if_false: Any, args: tuple) -> Any:
        """``if_true(ops, *args)`` where ``mask`` holds, else ``if_false(ops, *args)``, each run only where needed."""
        return (if_true if mask else if_false)(self, *args)

    @staticmethod
    def index_actions(actions: Any, highest: list[int]) -> list[int]:
        """Action indices as whole numbers, each clipped to [0, its dimension's highest index]."""
        values = actions.tolist() if isinstance(actions, np.ndarray) else [int(a) for a in actions]
        return [hi if a > hi else (a if a > 0 else 0) for a, hi in zip(values, highest)]

    @staticmethod
    def box_actions(actions: Any) -> list[float]:
        return [min(max(a, -1.0), 1.0) for a in np.asarray(actions, dtype=np.float64).tolist()]

    def fill_row(self, table: Any, row: int, cols: tuple[int, ...], values: list[Any], out: Any, low: float, high: float) -> np.ndarray:
        """Row ``row`` of ``table`` (a list of rows) with ``values`` written at ``cols``, clipped to [low, high],
        as a new float32 vector (each value rounded once)."""
        order = self._orders.get(cols)
        if order is None:  # where each position reads from: the table row, or the values after it
            width = len(table[0])
            order = np.arange(width)
            order[list(cols)] = width + np.arange(len(cols))
            self._orders[cols] = order
        merged = np.array(table[row] + values, dtype=np.float32)[order]
        return np.minimum(np.maximum(merged, low), high)


SCALAR = ScalarOps()


class NumpyOps:
    """A batch on NumPy arrays (``dtype`` the float type of the state)."""

    kind = "numpy"

    def __init__(self, dtype: Any = np.float64):
        from scipy.special import erfc

        self.dtype = np.dtype(dtype)
        self.exp, self.log, self.log1p, self.sqrt, self.floor, self.round = np.exp, np.log, np.log1p, np.sqrt, np.floor, np.round
        self.minimum, self.maximum, self.where, self.not_ = np.minimum, np.maximum, np.where, np.logical_not
        self.copysign, self.erfc, self.ndtri, self.gammaincc = np.copysign, erfc, _ndtri, _gammaincc
        self.u_cap = 1.0 - max(U_EDGE, float(np.finfo(self.dtype).eps))
        self._row_starts: dict[tuple[int, int], np.ndarray] = {}

    def f(self, v: Any) -> np.ndarray:
        return np.asarray(v).astype(self.dtype, copy=False)

    def asarray(self, values: Any, float_type: bool = False) -> np.ndarray:
        """Values as this backend's array (of the state's float type with ``float_type``)."""
        return np.asarray(values, dtype=self.dtype if float_type else None)

    @staticmethod
    def host(v: Any) -> np.ndarray:
        """An array as a host NumPy array (itself here)."""
        return np.asarray(v)

    def f32(self, v: Any) -> np.ndarray:
        return np.asarray(v, dtype=np.float32)

    def i64(self, v: Any) -> np.ndarray:
        return np.asarray(v).astype(np.int64, copy=False)

    def any(self, v: Any) -> bool:
        return bool(np.any(v))

    def take(self, table: np.ndarray, index: np.ndarray) -> np.ndarray:
        """``table[i, index[i]]`` for every row i (``index`` (N,) or (N, m)): one flat gather, cheaper
        than ``take_along_axis``."""
        key = table.shape
        if key not in self._row_starts:
            self._row_starts[key] = np.arange(table.shape[0], dtype=np.int64) * table.shape[1]
        starts = self._row_starts[key]
        return table.reshape(-1)[(starts if index.ndim == 1 else starts[:, None]) + index]

    @staticmethod
    def col(rows: np.ndarray, j: int) -> np.ndarray:
        return rows[:, j]

    def index_actions(self, actions: Any, highest: np.ndarray) -> np.ndarray:
        """Rows of action indices, each clipped to [0, its market's highest index of that dimension]."""
        return np.minimum(np.maximum(np.asarray(actions).astype(np.int64, copy=False), 0), highest)

    def box_actions(self, actions: Any) -> np.ndarray:
        return np.clip(self.f(actions), -1.0, 1.0)

    @staticmethod
    def fill_row(table: np.ndarray, rows: np.ndarray, cols: tuple[int, ...], values: list[Any], out: np.ndarray, low: float, high: float) -> np.ndarray:
        """Rows ``rows`` of ``table`` gathered into the buffer ``out`` (in place), then ``values`` written as
        columns ``cols`` (each rounded once to the buffer's type); returns a clipped copy."""
        np.take(table, rows, axis=0, out=out, mode="clip")  # rows are in range; "raise" would buffer a copy
        for j, value in zip(cols, values):
            out[:, j] = value
        return np.clip(out, low, high)

    @staticmethod
    def arange(n: int) -> np.ndarray:
        return np.arange(n)

    @staticmethod
    def stack(cols: list[Any]) -> np.ndarray:
        return np.stack(cols, axis=1)

    @staticmethod
    def cat_cols(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts, axis=1)

    @staticmethod
    def sigmoid(v: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-v))

    @staticmethod
    def softplus(v: np.ndarray) -> np.ndarray:
        return np.log1p(np.exp(-np.abs(v))) + np.maximum(v, 0.0)

    @staticmethod
    def eps(v: np.ndarray) -> float:
        return float(np.finfo(v.dtype).eps)

    @staticmethod
    def wide(*values: Any) -> list[np.ndarray]:
        return [np.asarray(v, dtype=np.float64) for v in values]

    @staticmethod
    def astype(v: np.ndarray, dtype: Any) -> np.ndarray:
        return v.astype(dtype, copy=False)

    @classmethod
    def repeat_while(cls, phases: tuple, state: tuple, args: tuple, max_steps: int, check_every: int = 1) -> tuple:
        """For each (going, step) phase in turn, ``state = step(*state, *args)`` elementwise while
        ``going(*state, *args)``, at most ``max_steps`` times: only the elements still going are carried
        along (most stop after a step or two)."""
        for going, step in phases:
            state = cls._repeat(going, step, state, args, max_steps)
        return state

    @staticmethod
    def _repeat(going: Any, step: Any, state: tuple, args: tuple, max_steps: int) -> tuple:
        idx = np.flatnonzero(going(*state, *args))
        if not len(idx):
            return state
        out = [np.array(v, copy=True) for v in state]
        sub = [v[idx] for v in state]
        sub_args = [a[idx] if isinstance(a, np.ndarray) and a.shape == out[0].shape else a for a in args]
        for _ in range(max_steps):
            sub = step(*sub, *sub_args)
            for o, v in zip(out, sub):
                o[idx] = v
            go = going(*sub, *sub_args)
            if not go.any():
                break
            idx, sub = idx[go], [v[go] for v in sub]
            sub_args = [a[go] if isinstance(a, np.ndarray) and a.shape == go.shape else a for a in sub_args]
        return tuple(out)

    def lgamma(self, v: np.ndarray) -> np.ndarray:
        """log Gamma(v) of whole numbers v >= 1 (log (v - 1)!): a table below 256, Stirling's series above
        (error below 1e-20), each only where needed; a tenth of ``gammaln``'s cost at a few thousand numbers."""
        return self.choose(v <= _TABLE, _tabled_lgamma, _stirling_lgamma, (v,))

    def choose(self, mask: np.ndarray, if_true: Any, if_false: Any, args: tuple) -> np.ndarray:
        """``where(mask, if_true(ops, *args), if_false(ops, *args))``, each computed on its own elements only."""
        if np.ndim(mask) == 0:
            return (if_true if mask else if_false)(self, *args)
        yes = np.flatnonzero(mask)
        if len(yes) == mask.size:
            return if_true(self, *args)
        if not len(yes):
            return if_false(self, *args)
        no = np.flatnonzero(~mask)
        take = lambda idx: (a[idx] if isinstance(a, np.ndarray) and a.shape == mask.shape else a for a in args)  # noqa: E731
        got = if_false(self, *take(no))
        out = np.empty(mask.shape, dtype=np.result_type(got, np.float64))
        out[no] = got
        out[yes] = if_true(self, *take(yes))
        return out

    @staticmethod
    def columns(table: np.ndarray, cols: list[int]) -> np.ndarray:
        """Columns of a (N, m) table one after another in one flat array."""
        return table[:, cols].T.reshape(-1)

    @staticmethod
    def cat_flat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts)

    # Matrix work (a predictor's small MLPs): float64 NumPy, one market's vector or a batch's rows.

    @staticmethod
    def weights(w: Any, b: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
        return w.detach().cpu().double().numpy(), b.detach().cpu().double().numpy()

    @staticmethod
    def mlp(layers: list[tuple[np.ndarray, np.ndarray]], v: np.ndarray, active: Any = None) -> np.ndarray:
        """Linear, SiLU, ..., Linear on a vector (one market) or on rows."""
        for i, (w, b) in enumerate(layers):
            v = v @ w.T + b
            if i < len(layers) - 1:
                v = v / (1.0 + np.exp(-v))
        return v

    @staticmethod
    def mlp_input(cols: list[Any], x: Any) -> np.ndarray:
        """Columns (or one market's numbers) as the rows an MLP reads."""
        if x.kind == "scalar":
            return np.array(cols, dtype=np.float64)
        return np.stack(np.broadcast_arrays(*cols), axis=1)

    def masked(self, mask: np.ndarray, fn: Any, args: tuple, otherwise: Any) -> Any:
        """``where(mask, fn(ops, *args), otherwise)`` with fn computed on the masked elements only (gathered,
        then scattered into a copy of ``otherwise``). Arguments that are not arrays pass through."""
        if np.ndim(mask) == 0:  # one flag for every element
            return fn(self, *args) if mask else otherwise
        idx = np.flatnonzero(mask)
        several = isinstance(otherwise, tuple)
        if len(idx) == mask.size:
            return fn(self, *args)
        outs = [np.array(np.broadcast_to(o, mask.shape), dtype=np.result_type(o, np.float64) if np.ndim(o) == 0 else None)
                for o in (otherwise if several else (otherwise,))]  # fmt: skip
        if len(idx):
            got = fn(self, *(a[idx] if isinstance(a, np.ndarray) and a.shape == mask.shape else a for a in args))
            for out, value in zip(outs, got if several else (got,)):
                out[idx] = value
        return tuple(outs) if several else outs[0]


_TABLE = 256
_LGAMMA_LIST = [math.lgamma(v) if v > 0 else math.inf for v in range(_TABLE + 1)]  # index v: log Gamma(v)
_LGAMMA = np.array(_LGAMMA_LIST)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _tabled_lgamma(x: NumpyOps, v: np.ndarray) -> np.ndarray:
    return _LGAMMA[v.astype(np.int64)]


def _stirling_lgamma(x: Any, v: Any) -> Any:
    """Stirling's series for log Gamma(v), in Horner form (error below 1e-20 for v > 256)."""
    r = 1.0 / v
    r2 = r * r
    return (v - 0.5) * x.log(v) - v + _HALF_LOG_2PI + r * (1.0 / 12.0 - r2 * (1.0 / 360.0 - r2 / 1260.0))


class TorchOps:
    """A batch on torch tensors of one device (a GPU, the CUDA graph, or training).

    A number bound is a clamp, not a tensor made from it: copying a number to the GPU is not allowed
    while a CUDA graph is being captured."""

    kind = "torch"

    def __init__(self, device: Any = "cpu", dtype: Any = None, fused: bool = False):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.cpu = self.device.type == "cpu"
        # On a CPU a hidden layer of an MLP runs as one oneDNN product with its SiLU applied to the tiles
        # as they are written: torch's separate SiLU pass costs as much as the product there.
        self.fused = fused and self.cpu and fused_linear_silu_works(self.dtype)
        self.exp, self.log, self.log1p, self.sqrt = torch.exp, torch.log, torch.log1p, torch.sqrt
        self.floor, self.round, self.where, self.not_ = torch.floor, torch.round, torch.where, torch.logical_not
        self.copysign, self.erfc, self.sigmoid = torch.copysign, torch.special.erfc, torch.sigmoid
        self.softplus, self.ndtri, self.lgamma = torch.nn.functional.softplus, torch.special.ndtri, torch.lgamma
        self.gammaincc = torch.special.gammaincc
        self._col_index: dict[tuple[int, ...], Any] = {}
        self.u_cap = 1.0 - max(U_EDGE, float(torch.finfo(self.dtype).eps))

    def minimum(self, a: Any, b: Any) -> Any:
        if isinstance(a, self.torch.Tensor):
            return self.torch.minimum(a, b) if isinstance(b, self.torch.Tensor) else a.clamp(max=b)
        return b.clamp(max=a)

    def maximum(self, a: Any, b: Any) -> Any:
        if isinstance(a, self.torch.Tensor):
            return self.torch.maximum(a, b) if isinstance(b, self.torch.Tensor) else a.clamp(min=b)
        return b.clamp(min=a)

    def f(self, v: Any) -> Any:
        return v.to(self.dtype)

    def asarray(self, values: Any, float_type: bool = False) -> Any:
        return self.torch.as_tensor(values, dtype=self.dtype if float_type else None, device=self.device)

    @staticmethod
    def host(v: Any) -> np.ndarray:
        return v.detach().cpu().numpy()

    def f32(self, v: Any) -> Any:
        return v.float()

    def i64(self, v: Any) -> Any:
        return v.long()

    def any(self, v: Any) -> bool:
        return bool(v.any())

    @staticmethod
    def take(table: Any, index: Any) -> Any:
        return table.gather(1, index.unsqueeze(1) if index.ndim == 1 else index).reshape(index.shape)

    @staticmethod
    def col(rows: Any, j: int) -> Any:
        return rows[:, j]

    def index_actions(self, actions: Any, highest: Any) -> Any:
        return self.torch.minimum(self.asarray(actions).long().clamp(min=0), highest)

    def box_actions(self, actions: Any) -> Any:
        return self.asarray(actions).to(self.dtype).clamp(-1.0, 1.0)

    def fill_row(self, table: Any, rows: Any, cols: tuple[int, ...], values: list[Any], out: Any, low: float, high: float) -> Any:
        self.torch.index_select(table, 0, rows, out=out)
        for j, value in zip(cols, values):
            out[:, j] = value
        return out.clamp(low, high)

    def arange(self, n: int) -> Any:
        return self.torch.arange(n, device=self.device)

    def stack(self, cols: list[Any]) -> Any:
        return self.torch.stack(cols, dim=1)

    def cat_cols(self, parts: list[Any]) -> Any:
        return self.torch.cat(parts, dim=1)

    def eps(self, v: Any) -> float:
        return float(self.torch.finfo(v.dtype).eps)

    @staticmethod
    def wide(*values: Any) -> list[Any]:
        return [v.double() for v in values]

    @staticmethod
    def astype(v: Any, dtype: Any) -> Any:
        return v.to(dtype)

    @staticmethod
    def sum(v: Any) -> Any:
        return v.sum()


    def choose(self, mask: Any, if_true: Any, if_false: Any, args: tuple) -> Any:
        """``where(mask, if_true(ops, *args), if_false(ops, *args))``: both computed everywhere (no host sync)."""
        if not isinstance(mask, self.torch.Tensor):
            return (if_true if mask else if_false)(self, *args)
        return self.torch.where(mask, if_true(self, *args), if_false(self, *args))

    def columns(self, table: Any, cols: list[int]) -> Any:
        key = tuple(cols)  # a device index, made once: a list index would be copied from the host each step
        if key not in self._col_index:
            self._col_index[key] = self.torch.tensor(cols, device=table.device)
        return table.index_select(1, self._col_index[key]).T.reshape(-1)

    def cat_flat(self, parts: list[Any]) -> Any:
        return self.torch.cat(parts)

    def repeat_while(self, phases: tuple, state: tuple, args: tuple, max_steps: int, check_every: int = 1) -> tuple:
        """For each (going, step) phase in turn, ``state = step(*state, *args)`` elementwise while
        ``going(*state, *args)``, at most ``max_steps`` times, every element in lockstep under masks; the
        device is asked whether any still goes only every ``check_every`` steps (never with 0: no host
        sync, as a CUDA graph needs)."""
        for going, step in phases:
            for i in range(max_steps):
                moving = going(*state, *args)
                if check_every and i % check_every == 0 and not bool(moving.any()):
                    break
                state = tuple(self.torch.where(moving, new, old) for new, old in zip(step(*state, *args), state))
        return state

    # Matrix work (a predictor's MLPs) in ``dtype`` on ``device``.

    def weights(self, w: Any, b: Any, dtype: Any) -> tuple[Any, Any]:
        return w.detach().to(self.device, dtype).contiguous(), b.detach().to(self.device, dtype).contiguous()

    def mlp(self, layers: list[tuple[Any, Any]], v: Any, active: Any = None) -> Any:
        """Linear, SiLU, ..., Linear on rows. On a CPU, when ``active`` (one flag per row) leaves at least
        1/32 of the rows out, only the active rows are computed (the others read 0): a row's result does
        not depend on the others."""
        torch = self.torch
        if self.cpu and active is not None and np.ndim(active) == 1:
            index = np.flatnonzero(np.asarray(active))
            if len(active) - len(index) >= max(1, len(active) // 32):
                with few_threads(self.device):
                    out = torch.zeros(v.shape[0], layers[-1][0].shape[0], dtype=v.dtype)
                    index_t = torch.from_numpy(index)
                    kept = v.index_select(0, index_t)
                if len(index):
                    rows = self.mlp(layers, kept)
                    with few_threads(self.device):
                        out.index_copy_(0, index_t, rows)
                return out
        with torch.inference_mode():
            for w, b in layers[:-1]:
                v = self._linear_silu(v, w, b)
            w, b = layers[-1]
            if self.fused:  # oneDNN's product is also the quicker one for two outputs
                return torch.ops.mkldnn._linear_pointwise(v, w, b, "none", [], "")
            return torch.addmm(b, v, w.T)

    def _linear_silu(self, v: Any, w: Any, b: Any) -> Any:
        if self.fused:
            return self.torch.ops.mkldnn._linear_pointwise(v, w, b, "swish", [], "")
        return self.torch.nn.functional.silu(self.torch.addmm(b, v, w.T), inplace=True)

    def rows(self, latent: Any, n_features: int) -> Any:
        """An MLP's input rows: the markets' ``latent`` columns, then ``n_features`` columns written each step."""
        return MlpRows(self, latent, n_features)

    def mlp_input(self, cols: list[Any], x: Any) -> Any:
        return self.torch.stack(self.torch.broadcast_tensors(*cols), dim=1).to(self.dtype)

    def to(self, x: Any, v: Any) -> Any:
        """An MLP output column as the markets' backend sees it (a NumPy view on a CPU)."""
        return v.float().numpy() if x.kind == "numpy" else v

    def masked(self, mask: Any, fn: Any, args: tuple, otherwise: Any) -> Any:
        """``where(mask, fn(ops, *args), otherwise)``: every element computed (lockstep, no host sync)."""
        if not isinstance(mask, self.torch.Tensor):  # one flag for every element
            return fn(self, *args) if mask else otherwise
        got = fn(self, *args)
        if isinstance(otherwise, tuple):
            return tuple(self.torch.where(mask, g, o) for g, o in zip(got, otherwise))
        return self.torch.where(mask, got, otherwise)


def ops_for(value: Any) -> Any:
    """The ops of a value: ``SCALAR`` for a Python number, NumPy for an array, torch for a tensor."""
    if isinstance(value, float | int | bool):
        return SCALAR
    if isinstance(value, np.ndarray | np.generic):
        return NumpyOps(value.dtype if value.dtype.kind == "f" else np.float64)
    return TorchOps(value.device, value.dtype if value.is_floating_point() else None)


class MlpRows:
    """Preallocated input rows of an MLP (latent columns fixed, feature columns written each step); on a
    CPU in another dtype than float32 the features are staged in float32 first, so that each value is
    rounded as ``context_features`` rounds it."""

    def __init__(self, m: TorchOps, latent: Any, n_features: int):
        torch = m.torch
        n, width = latent.shape
        self.width = width
        self.inputs = torch.empty(n, width + n_features, dtype=m.dtype, device=m.device)
        self.inputs[:, :width] = latent
        staged = m.dtype != torch.float32 and m.cpu
        self.stage = torch.empty(n, n_features) if staged else None
        self._m = m

    def write(self, feats: list[Any], x: Any) -> Any:
        """The rows with these feature columns (``x``: the markets' backend)."""
        m = self._m
        if x.kind == "numpy":
            with few_threads(m.device):
                cols = (self.stage if self.stage is not None else self.inputs[:, self.width :]).numpy()
                for j, value in enumerate(feats):
                    cols[:, j] = value
                if self.stage is not None:
                    self.inputs[:, self.width :] = self.stage
        else:
            n = self.inputs.shape[0]
            feats = [f.expand(n) if isinstance(f, m.torch.Tensor) else m.torch.full((n,), float(f), device=m.device) for f in feats]
            self.inputs[:, self.width :] = m.torch.stack(feats, dim=1).float()
        return self.inputs


def few_threads(device: Any) -> Any:
    """One intra-op thread on a CPU for the duration: torch splits even a 4,096-element copy across its
    threads, and the hand-over costs more than the op (tens of us idle, milliseconds on a busy machine)."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def one() -> Any:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    return one() if getattr(device, "type", device) == "cpu" else contextlib.nullcontext()


def fused_linear_silu_works(dtype: Any) -> bool:
    """Whether this torch build has oneDNN's fused linear + SiLU for ``dtype`` and it agrees with the plain ops."""
    return _fused_works(str(dtype))


@functools.cache
def _fused_works(dtype_name: str) -> bool:
    import torch

    dtype = getattr(torch, dtype_name.removeprefix("torch."))
    try:
        g = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*shape, generator=g).to(dtype) for shape in ((8, 27), (16, 27), (16,)))
        with torch.inference_mode():
            fused = torch.ops.mkldnn._linear_pointwise(x, w, b, "swish", [], "").float()
            plain = torch.nn.functional.silu(torch.addmm(b, x, w.T)).float()
        tol = 1e-5 if dtype in (torch.float32, torch.float64) else 0.05
        return bool(torch.allclose(fused, plain, rtol=tol, atol=tol))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
