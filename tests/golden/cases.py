"""The fixed configurations whose outputs and gradients tests/test_golden.py holds bitwise.

make_golden.py ran them once per instruction set, at one thread, on the build before the redesign of
issue 14 and saved the results (golden_<isa>.npz). Inputs and parameters are saved with them, so the
check depends on no random stream. The cases cover both paths of each kernel: packed weights
(N >= 64 rows) and Eigen's products (fewer rows), tails of the SIMD width (H = 19, 11), projection,
peepholes, no bias, two layers, both directions, padded batches and batch_first.
"""

import numpy as np

import lstm_fast as lf

# name: (constructor arguments, T, B, with lengths)
CASES = {
    "f32_packed_bidir_peep_lengths": (
        dict(input_size=5, hidden_size=19, num_layers=2, bidirectional=True, peephole=True, dtype=np.float32),
        70,
        3,
        True,
    ),
    "f32_small_proj": (dict(input_size=4, hidden_size=16, proj_size=7, dtype=np.float32), 5, 2, False),
    "f32_batch_first_2layers": (
        dict(input_size=8, hidden_size=32, num_layers=2, batch_first=True, dtype=np.float32),
        20,
        16,
        False,
    ),
    "f64_packed_bidir_proj_peep": (
        dict(input_size=3, hidden_size=11, bidirectional=True, proj_size=5, peephole=True, dtype=np.float64),
        40,
        4,
        True,
    ),
    "f64_nobias_b1": (dict(input_size=2, hidden_size=8, bias=False, dtype=np.float64), 3, 1, False),
    "f32_packed_proj_2layers": (
        dict(input_size=6, hidden_size=24, num_layers=2, proj_size=10, dtype=np.float32),
        30,
        5,
        True,
    ),
}


# Cases large enough that two threads share each cell's steps (a team, plan.hpp): the unit split with
# and without packing and a projection, the row split, both directions side by side, the streaming
# step. make_golden.py --team saved them at two threads from the build before issue 15 changed how a
# team shares out its work (test_golden.py holds that change to these bits).
TEAM_CASES = {
    "team_units_packed_peep_lengths": (
        dict(input_size=24, hidden_size=64, peephole=True, dtype=np.float32),
        24,
        8,
        True,
    ),
    "team_units_proj": (dict(input_size=16, hidden_size=96, proj_size=40, dtype=np.float32), 20, 6, False),
    "team_rows_2layers": (dict(input_size=16, hidden_size=48, num_layers=2, dtype=np.float32), 16, 16, True),
    "team_bidir": (dict(input_size=20, hidden_size=64, bidirectional=True, dtype=np.float32), 24, 8, True),
    "team_b1": (dict(input_size=32, hidden_size=96, dtype=np.float32), 8, 1, False),
}


def inputs(name, seed=0):
    """A case's model, x, state, lengths and dy, dstate (x and dy in the model's layout)."""
    kwargs, T, B, with_lengths = {**CASES, **TEAM_CASES}[name]
    rng = np.random.default_rng(seed)
    model = lf.LSTM(seed=seed, **kwargs)
    D, R, H, L = model.num_directions, model.output_size, model.hidden_size, model.num_layers
    shape = (B, T) if model.batch_first else (T, B)
    x = rng.normal(size=shape + (model.input_size,))
    state = (rng.normal(size=(L * D, B, R)), rng.normal(size=(L * D, B, H)))
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[0] = T
    dy = rng.normal(size=shape + (D * R,))
    dstate = (rng.normal(size=state[0].shape), rng.normal(size=state[1].shape))
    return model, x, state, lengths, dy, dstate


def run(model, x, state, lengths, dy, dstate):
    """Every output and gradient of the case, by name: inference, training and step (when unidirectional)."""
    out = {}
    y, (h, c) = model(x, state, lengths)
    out.update(inf_y=y, inf_h=h, inf_c=c)
    y, (h, c) = model.forward(x, state, lengths, train=True)
    dx, (dh0, dc0) = model.backward(dy, dstate)
    out.update(y=y, h=h, c=c, dx=dx, dh0=dh0, dc0=dc0)
    out.update({"grad_" + k: v for k, v in model.grads.items()})
    if not model.bidirectional:
        st = (state[0].astype(model.dtype), state[1].astype(model.dtype))
        xs = x.swapaxes(0, 1) if model.batch_first else x
        for t in range(min(len(xs), 4)):
            y_t, st = model.step(xs[t], st)
            out[f"step{t}_y"] = y_t
        out["step_h"], out["step_c"] = st
    return out
