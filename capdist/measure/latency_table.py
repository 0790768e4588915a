"""Per-layer latency table over the widths a schedule may choose (NetAdapt, ECCV 2018; HALP, NeurIPS 2022).

Every convolution and linear layer of the plain network is timed alone, as a layer of its own
shape on an input of the shape it sees in the network, on the target device, at a grid of
kept fractions of its input and output channels. A pruned network's latency is predicted as
the sum of its layers' entries (bilinear between grid points) plus the rest of the network
(activations, additions, pooling: what the layers alone leave of the whole network's measured
time), which is scaled by the fraction of activation elements kept. Entries are made monotone
in width (a narrower layer is never predicted slower; a spike lowers to its wider neighbours), so
a schedule's search is well posed.

Every entry is the fastest block of a blocked run through one :class:`~capdist.measure.timer.Timer`
(default: eager PyTorch through ``torch.utils.benchmark``), so a stall of the machine during one
block does not enter the table; the side-by-side probes of the latency budget calibrate what
remains. Tables are cached as JSON per device, torch version, timer, threads, batch, input size,
grid and layer shapes, so a second run on the same machine reads instead of measuring.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    >>> t = build_latency_table(net, (3, 16, 16), grid=(0.5, 1.0), min_run_time=0.001, cache_dir=None)
    >>> round(t.predict_model(net) / t.full_ms, 6)
    1.0
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..compactor.layers import COMPACTOR_TYPES
from ..io.atomic import atomic_write_json
from ..progress import progress
from .timer import Timer, get_timer

log = logging.getLogger("capdist")
TABLE_VERSION = 3
GRID = (0.0625, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
SPIKE = 1.5
RECHECKS = 2


@dataclass
class LayerEntry:
    """One timed layer.

    Attributes:
        kind: ``"conv"`` or ``"linear"``.
        in_channels: input channels (features) in the unpruned network.
        out_channels: output channels (features) in the unpruned network.
        input_shape: the input tensor's shape in the network, batch included.
        conv: kernel, stride, padding, dilation and groups of a convolution.
        varies: whether the input and the output width may change.
        out_elements: output elements per pass (weights the rest of the network).
        ms: ``len(grid) x len(grid)`` milliseconds, rows: input fraction, columns: output fraction.
    """

    kind: str
    in_channels: int
    out_channels: int
    input_shape: list[int]
    conv: dict = field(default_factory=dict)
    varies: list[bool] = field(default_factory=lambda: [True, True])
    out_elements: int = 0
    ms: list[list[float]] = field(default_factory=list)

    @property
    def depthwise(self) -> bool:
        return self.kind == "conv" and self.conv["groups"] > 1 and self.conv["groups"] == self.in_channels

    def signature(self) -> str:
        return json.dumps([self.kind, self.in_channels, self.out_channels, self.input_shape, self.conv,
                           self.varies], sort_keys=True)


def _widths(entry: LayerEntry, f_in: float, f_out: float) -> tuple[int, int]:
    """Channels a layer keeps at fractions ``f_in``, ``f_out`` (a depthwise layer follows its output;
    a grouped layer keeps multiples of its groups)."""
    if entry.depthwise:
        c = max(1, round(f_out * entry.out_channels))
        return c, c
    groups = entry.conv.get("groups", 1) if entry.kind == "conv" else 1
    c_in = max(groups, round(f_in * entry.in_channels / groups) * groups)
    c_out = max(groups, round(f_out * entry.out_channels / groups) * groups)
    return c_in, c_out


def standalone(entry: LayerEntry, f_in: float, f_out: float, device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    """A layer of ``entry``'s shape at the given kept fractions, with an input of the shape it sees."""
    c_in, c_out = _widths(entry, f_in, f_out)
    shape = list(entry.input_shape)
    if entry.kind == "linear":
        layer = nn.Linear(c_in, c_out)
        shape[-1] = c_in
    else:
        cv = entry.conv
        groups = c_in if entry.depthwise else cv["groups"]
        layer = nn.Conv2d(c_in, c_out, cv["kernel"], cv["stride"], cv["padding"], cv["dilation"], groups, bias=True)
        shape[1] = c_in
    return layer.eval().to(device), torch.randn(*shape, device=device)


def record_layers(model: nn.Module, example: torch.Tensor) -> dict[str, LayerEntry]:
    """The convolutions and linear layers of ``model`` (compactors excluded), in call order, with the
    input shapes one pass of ``example`` gives them."""
    entries: dict[str, LayerEntry] = {}
    hooks = []

    def hook(module: nn.Module, args: tuple, output: torch.Tensor, name: str) -> None:
        if name in entries or not args or not isinstance(args[0], torch.Tensor):
            return
        x = args[0]
        if isinstance(module, nn.Conv2d):
            if isinstance(module.padding, str):
                return
            conv = {"kernel": list(module.kernel_size), "stride": list(module.stride), "padding": list(module.padding),
                    "dilation": list(module.dilation), "groups": module.groups}
            entries[name] = LayerEntry("conv", module.in_channels, module.out_channels, list(x.shape), conv,
                                       out_elements=int(output.numel()))
        else:
            entries[name] = LayerEntry("linear", module.in_features, module.out_features, list(x.shape),
                                       out_elements=int(output.numel()))

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not isinstance(module, COMPACTOR_TYPES):
            hooks.append(module.register_forward_hook(lambda m, a, o, n=name: hook(m, a, o, n)))
    was = model.training
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return entries


class LatencyTable:
    """Measured per-layer latencies and the prediction built from them.

    Attributes:
        key: what the table was measured for (device, threads, batch, input size, ...).
        grid: kept fractions at which every varying width was timed.
        layers: layer name -> :class:`LayerEntry`.
        total_ms: the unpruned network's measured latency.
        full_ms: the prediction at full width (``total_ms``, or the layers' sum where the layers timed
            alone add up to more than the whole network); fractions are taken against it.
    """

    def __init__(self, key: dict, grid: tuple[float, ...], layers: dict[str, LayerEntry], total_ms: float) -> None:
        self.key = key
        self.grid = np.asarray(grid, dtype=np.float64)
        self.layers = layers
        self.total_ms = float(total_ms)
        self.names = list(layers)
        self._ms = np.array([e.ms for e in layers.values()], dtype=np.float64).reshape(len(layers), len(grid),
                                                                                        len(grid))
        self._elements = np.array([e.out_elements for e in layers.values()], dtype=np.float64)
        self._c_in = np.array([e.in_channels for e in layers.values()], dtype=np.float64)
        self._c_out = np.array([e.out_channels for e in layers.values()], dtype=np.float64)
        self.rest_ms = max(0.0, self.total_ms - float(self._ms[:, -1, -1].sum()))
        self.full_ms = float(self._ms[:, -1, -1].sum()) + self.rest_ms

    def _interp(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = np.clip(f, self.grid[0], 1.0)
        hi = np.clip(np.searchsorted(self.grid, f), 1, len(self.grid) - 1)
        lo = hi - 1
        w = (f - self.grid[lo]) / (self.grid[hi] - self.grid[lo])
        return np.stack([lo, hi]), np.stack([1 - w, w])

    def layer_ms(self, f_in: np.ndarray, f_out: np.ndarray) -> np.ndarray:
        """Milliseconds of every layer (order: :attr:`names`) at kept fractions ``f_in``, ``f_out``:
        bilinear between grid points, the lowest grid point's entry below it."""
        (i0, i1), (wi0, wi1) = self._interp(np.asarray(f_in, dtype=np.float64))
        (o0, o1), (wo0, wo1) = self._interp(np.asarray(f_out, dtype=np.float64))
        rows = np.arange(len(self.names))
        t = self._ms
        return (wi0 * wo0 * t[rows, i0, o0] + wi0 * wo1 * t[rows, i0, o1]
                + wi1 * wo0 * t[rows, i1, o0] + wi1 * wo1 * t[rows, i1, o1])

    def predict(self, f_in: np.ndarray, f_out: np.ndarray) -> float:
        """Predicted milliseconds of the network at per-layer kept fractions (order: :attr:`names`)."""
        f_out = np.asarray(f_out, dtype=np.float64)
        kept_elements = float(self._elements @ f_out) / max(float(self._elements.sum()), 1.0)
        return float(self.layer_ms(f_in, f_out).sum()) + self.rest_ms * kept_elements

    def predict_model(self, model: nn.Module) -> float:
        """Predicted milliseconds of a pruned copy of the table's network (same layer names)."""
        return self.predict(*self.fractions_of(model))

    def fractions_of(self, model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """Kept input and output fractions of every layer (order: :attr:`names`) in a pruned copy of the
        table's network (same layer names; a layer it lacks counts as full width)."""
        modules = dict(model.named_modules())
        f_in, f_out = np.ones(len(self.names)), np.ones(len(self.names))
        for i, name in enumerate(self.names):
            m = modules.get(name)
            if isinstance(m, nn.Conv2d):
                f_in[i], f_out[i] = m.in_channels / self._c_in[i], m.out_channels / self._c_out[i]
            elif isinstance(m, nn.Linear):
                f_in[i], f_out[i] = m.in_features / self._c_in[i], m.out_features / self._c_out[i]
        return f_in, f_out

    def to_dict(self) -> dict:
        return {"version": TABLE_VERSION, "key": self.key, "grid": self.grid.tolist(), "total_ms": self.total_ms,
                "layers": {n: vars(e) for n, e in self.layers.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> LatencyTable:
        layers = {n: LayerEntry(**e) for n, e in data["layers"].items()}
        return cls(data["key"], tuple(data["grid"]), layers, data["total_ms"])


def default_cache_dir() -> Path:
    """``$CAPDIST_CACHE_DIR/latency`` or ``~/.cache/capdist/latency``."""
    root = os.environ.get("CAPDIST_CACHE_DIR") or Path.home() / ".cache" / "capdist"
    return Path(root) / "latency"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _monotone(ms: np.ndarray) -> np.ndarray:
    """Each entry no larger than any entry at a wider width: a narrower layer is never predicted slower,
    and a load spike during one measurement lowers to its wider neighbours instead of raising them."""
    flipped = ms[::-1, ::-1]
    return np.minimum.accumulate(np.minimum.accumulate(flipped, axis=0), axis=1)[::-1, ::-1]


def _time_entry(entry: LayerEntry, f_in: float, f_out: float, device: torch.device, timer: Timer,
                min_run_time: float, measured: dict[tuple, float], again: bool = False) -> float:
    """Milliseconds of ``entry`` at the kept fractions, timed once per distinct shape (``again``: timed once
    more, the faster of the two kept)."""
    widths = (entry.signature(),) + _widths(entry, f_in, f_out)
    if widths not in measured or again:
        layer, x = standalone(entry, f_in, f_out, device)
        measured[widths] = min(measured.get(widths, np.inf), timer.prepare(layer, x).fastest_ms(min_run_time))
    return measured[widths]


def _suspect(ms: np.ndarray, entry: LayerEntry, grid: tuple[float, ...], ins: range | list[int],
             outs: range | list[int]) -> list[tuple[int, int]]:
    """Entries more than :data:`SPIKE` times what their nearest narrower neighbour of another width
    allows (its time scaled by the channels added): most likely a stall of the machine during that
    measurement (a spike at the full width would survive :func:`_monotone` and make every narrower
    width look cheap)."""
    widths = {(i, o): _widths(entry, grid[i], grid[o]) for i in ins for o in outs}

    def narrower(i: int, o: int, axis: int) -> tuple[int, int] | None:
        step = (-1, 0) if axis == 0 else (0, -1)
        cell = (i + step[0], o + step[1])
        while cell in widths and widths[cell][axis] == widths[i, o][axis]:
            cell = (cell[0] + step[0], cell[1] + step[1])
        return cell if cell in widths else None

    suspects = []
    for (i, o), (c_in, c_out) in widths.items():
        bounds = [ms[n] * (c_in, c_out)[axis] / widths[n][axis]
                  for axis in (0, 1) if (n := narrower(i, o, axis)) is not None]
        if bounds and ms[i, o] > SPIKE * min(bounds):
            suspects.append((i, o))
    return suspects


def _measure_layer(entry: LayerEntry, grid: tuple[float, ...], device: torch.device, timer: Timer,
                   min_run_time: float, measured: dict[tuple, float]) -> np.ndarray:
    """The grid of one layer's milliseconds over the widths it may take; suspect entries (and the one
    entry of a layer whose widths are fixed) timed again, each shape once per pass."""
    n = len(grid)
    ins = range(n) if entry.varies[0] else [n - 1]
    outs = range(n) if entry.varies[1] else [n - 1]
    cells = [(i, o) for i in ins for o in outs]
    ms = np.zeros((n, n))

    def fill() -> None:
        for i, o in cells:
            ms[i, o] = _time_entry(entry, grid[i], grid[o], device, timer, min_run_time, measured)

    fill()
    again = cells if len(cells) == 1 else []
    for _ in range(RECHECKS + 1):
        shapes = {_widths(entry, grid[i], grid[o]): (i, o) for i, o in again}
        for i, o in shapes.values():
            _time_entry(entry, grid[i], grid[o], device, timer, min_run_time, measured, again=True)
        fill()
        again = _suspect(ms, entry, grid, ins, outs)
        if not again:
            break
    if not entry.varies[0]:
        ms[:] = ms[n - 1]
    if not entry.varies[1]:
        ms[:, :] = ms[:, n - 1:n]
    return ms


def build_latency_table(model: nn.Module, input_size: tuple[int, ...], batch_size: int = 1, device: str = "cpu",
                        varies: dict[str, tuple[bool, bool]] | None = None, grid: tuple[float, ...] = GRID,
                        min_run_time: float = 0.02, cache_dir: str | Path | None | bool = True,
                        timer: Timer | str | None = None) -> LatencyTable:
    """Measure (or read from the cache) the latency table of ``model``.

    Args:
        model: the plain network as it will be deployed (BatchNorms folded where surgery folds them).
        input_size: C, H, W of one image.
        batch_size: images per pass.
        device: where to measure.
        varies: layer name -> (input width may change, output width may change); layers not named
            are timed at their full width only (default: every width may change).
        grid: kept fractions to time, ascending, ending at 1.
        min_run_time: seconds of blocked timing behind each entry.
        cache_dir: where tables are kept (True: :func:`default_cache_dir`; None or False: no cache).
        timer: the timing back-end, or its name in :data:`~capdist.measure.timer.TIMERS` (default: eager);
            its name, runtime version, threads and precision are part of the cache key.
    """
    dev = torch.device(device)
    grid = tuple(float(g) for g in grid)
    if len(grid) < 2 or grid[-1] != 1.0 or list(grid) != sorted(set(grid)) or grid[0] <= 0:
        raise ValueError(f"grid must be two or more ascending fractions in (0, 1] ending at 1, got {grid}")
    timer = get_timer(timer)
    model = model.eval().to(dev)
    example = torch.randn(batch_size, *input_size, device=dev)
    described = timer.describe(example)
    layers = record_layers(model, example)
    for name, entry in layers.items():
        if varies is not None:
            entry.varies = list(varies.get(name, (False, False)))
        if entry.depthwise:
            entry.varies = [False, entry.varies[0] or entry.varies[1]]
    key = {"version": TABLE_VERSION, "device": str(dev), "device_name": _device_name(dev),
           "cpu": [os.cpu_count(), torch.backends.cpu.get_cpu_capability()],
           "torch": torch.__version__, "threads": described["threads"], "batch": batch_size,
           "input_size": list(input_size), "grid": list(grid), "min_run_time": min_run_time,
           "timer": timer.name, "runtime": described["runtime"], "precision": described["precision"],
           "layers": hashlib.sha256("".join(n + e.signature() for n, e in layers.items()).encode()).hexdigest()}
    cache = default_cache_dir() if cache_dir is True else (Path(cache_dir) if cache_dir else None)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = cache / f"{digest}.json" if cache else None
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("key") == key:
                log.info("latency table read from %s", path)
                return LatencyTable.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("latency table cache %s is unreadable; measuring again", path)
    measured: dict[tuple, float] = {}
    for entry in progress(list(layers.values()), "latency table", unit="layer"):
        entry.ms = _monotone(_measure_layer(entry, grid, dev, timer, min_run_time, measured)).tolist()
    whole = timer.prepare(model, example)
    total = min(whole.fastest_ms(min_run_time) for _ in range(2))
    table = LatencyTable(key, grid, layers, total)
    log.info("latency table: %d layers, %d widths timed, network %.2f ms (%s, batch %d, %s)", len(layers),
             len(measured), total, key["device_name"], batch_size, "x".join(map(str, input_size)))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, table.to_dict())
        except OSError as exc:
            log.warning("latency table not cached (%s)", exc)
    return table
