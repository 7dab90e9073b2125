"""The LSTM's forward in torch operations: the graph that second-order gradients differentiate.

``lstm_fast.torch.LSTM`` runs its forward and first-order backward on the C++ kernels. A backward
asked for with ``create_graph=True`` (gradient penalties, MAML, Hessian-vector products) must itself
be differentiable; as torch's own oneDNN path does, it then recomputes the layer from its saved inputs
with differentiable torch operations and takes their gradient, with a graph. The equations are those
of lstm_fast.reference (gate order i, f, g, o; the variants of its module docstring), on the core's
packed layout: x [N, I], rows of step t after those of step t - 1, batch_sizes[t] rows at step t, the
longest sequences first. A sequence's state stays where its sequence has ended (forward direction)
or not yet begun (reverse direction), as in the kernels.
"""

from __future__ import annotations

from itertools import accumulate
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _core
from ._config import CELL_KINDS, LN_KINDS

_LN_EPS = 1e-5  # as lstm_fast.reference.LN_EPS and the kernels'


def forward(
    config: "_core.Config",
    batch_sizes: Sequence[int],
    x: Tensor,
    h0: Optional[Tensor],
    c0: Optional[Tensor],
    params: Sequence[Optional[Tensor]],
    masks: Sequence[Tensor],
    recurrent: Optional[Tensor],
    zoneout_seed: Optional[int],
) -> Tuple[Tensor, Tensor, Tensor]:
    """(y [N, D*R], h_n [L*D, B, R], c_n [L*D, B, H]) of _core.forward's training call with the same
    arguments: params per cell in CELL_KINDS order (None where absent), masks the inter-layer dropout
    masks [N, D*R], recurrent the recurrent dropout masks [L*D, B, R] or None, zoneout_seed the seed of
    zoneout's masks in training (None: the inference form d = z)."""
    D = 2 if config.bidirectional else 1
    starts = [0, *accumulate(batch_sizes)]
    zones = _zoneout(config, zoneout_seed, starts[-1], x.dtype)
    layer_input, h_n, c_n = x, [], []
    for k in range(config.num_layers):
        if k > 0 and masks:
            layer_input = layer_input * masks[k - 1]
        outputs = []
        for d in range(D):
            cell = k * D + d
            p = dict(zip(CELL_KINDS, params[cell * len(CELL_KINDS) : (cell + 1) * len(CELL_KINDS)]))
            state = _initial_state(config, cell, batch_sizes[0], h0, c0, x)
            r = None if recurrent is None else recurrent[cell]
            y, h, c = _direction(config, layer_input, state, p, r, zones[cell], batch_sizes, starts, d == 1)
            outputs.append(y)
            h_n.append(h)
            c_n.append(c)
        layer_input = torch.cat(outputs, dim=1)
    return layer_input, torch.stack(h_n), torch.stack(c_n)


def _initial_state(config, cell: int, batch: int, h0: Optional[Tensor], c0: Optional[Tensor], x: Tensor):
    """(h, c) of one cell at the first step it runs: h0[cell], c0[cell], or zeros (B, R), (B, H)."""
    R = config.proj_size or config.hidden_size
    h = x.new_zeros((batch, R)) if h0 is None else h0[cell]
    c = x.new_zeros((batch, config.hidden_size)) if c0 is None else c0[cell]
    return h, c


def _zoneout(config, seed: Optional[int], rows: int, dtype: torch.dtype) -> List[Optional[tuple]]:
    """Per cell, zoneout's (d_h [N, R], d_c [N, H]): the masks a training forward drew from `seed`
    (lstm_fast._lstm.zoneout_masks_of), the probabilities (z_h, z_c) without a seed, None without zoneout."""
    D = 2 if config.bidirectional else 1
    cells = config.num_layers * D
    z_h, z_c = config.zoneout_h, config.zoneout_c
    if z_h == 0.0 and z_c == 0.0:
        return [None] * cells
    if seed is None:
        return [(z_h, z_c)] * cells
    R = config.proj_size or config.hidden_size
    d_h, d_c = _core.zoneout_masks(seed, cells, rows, R, config.hidden_size, z_h, z_c)
    as_tensor = lambda d: torch.from_numpy(d).to(dtype)  # noqa: E731
    return [(as_tensor(d_h[cell]), as_tensor(d_c[cell])) for cell in range(cells)]


def _direction(config, x: Tensor, state, p: dict, r: Optional[Tensor], zone, batch_sizes, starts, reverse: bool):
    """One layer and direction over the packed rows x [N, I_k] from state (h [B, R], c [B, H]):
    (y [N, R], h_n [B, R], c_n [B, H]). Rows past batch_sizes[t] keep their state at step t."""
    h, c = state
    steps = range(len(batch_sizes) - 1, -1, -1) if reverse else range(len(batch_sizes))
    y: List[Optional[Tensor]] = [None] * len(batch_sizes)
    for t in steps:
        b, rows = batch_sizes[t], slice(starts[t], starts[t + 1])
        d = None if zone is None else tuple(z if isinstance(z, float) else z[rows] for z in zone)
        h_t, c_t = _step(config, x[rows], h[:b], c[:b], p, None if r is None else r[:b], d)
        y[t] = h_t
        h, c = torch.cat([h_t, h[b:]]), torch.cat([c_t, c[b:]])
    return torch.cat(y), h, c


def _step(config, x_t: Tensor, h: Tensor, c: Tensor, p: dict, r: Optional[Tensor], zone) -> Tuple[Tensor, Tensor]:
    """One step (lstm_fast.reference._cell_forward): x_t (b, I_k), h (b, R), c (b, H) -> (h_t, c_t)."""
    a_x = x_t @ p["weight_ih"].T
    a_h = (h if r is None else h * r) @ p["weight_hh"].T
    if config.layer_norm:
        a_x = _layer_norm(a_x, p, "ih")
        a_h = _layer_norm(a_h, p, "hh")
    z = a_x + a_h
    for bias in (p["bias_ih"], p["bias_hh"]):
        z = z if bias is None else z + bias
    i, f, g, o = z.chunk(4, dim=1)
    peep = p["weight_peep"]
    if peep is not None:
        i, f = i + peep[0] * c, f + peep[1] * c
    i, f, g = (_clip(v, config.cell_clip) for v in (i, f, g))
    i, g = torch.sigmoid(i), torch.tanh(g)
    f = 1 - i if config.coupled_gates else torch.sigmoid(f)
    c_t = f * c + i * g
    if peep is not None:
        o = o + peep[2] * c_t  # the output gate looks at c_t
    o = torch.sigmoid(_clip(o, config.cell_clip))
    m = o * torch.tanh(_layer_norm(c_t, p, "cell") if config.layer_norm else c_t)
    h_t = m if p["weight_hr"] is None else m @ p["weight_hr"].T
    if zone is not None:  # zoneout: a unit keeps its previous state where d = 1
        d_h, d_c = zone
        h_t, c_t = d_h * h + (1 - d_h) * h_t, d_c * c + (1 - d_c) * c_t
    return h_t, c_t


def _layer_norm(v: Tensor, p: dict, name: str) -> Tensor:
    """LN(v; ln_{name}) over the last axis (Ba et al. 2016), as the kernels'."""
    gain, bias = (p[kind] for kind in LN_KINDS if kind.startswith(f"ln_{name}_"))
    return F.layer_norm(v, (v.shape[-1],), gain, bias, eps=_LN_EPS)


def _clip(v: Tensor, clip: float) -> Tensor:
    """v clamped to [-clip, clip] (ONNX's clip; 0: none)."""
    return v if clip == 0.0 else v.clamp(-clip, clip)
