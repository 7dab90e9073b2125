"""The reference's cell variants (layer norm, zoneout, recurrent dropout, cell clip, coupled gates):
every gradient against central finite differences, alone and combined with layers, directions,
projection, peepholes, lengths and dropout; identities that pin each equation; and cell_clip and
coupled_gates against ONNX Runtime's LSTM (clip, input_forget), the semantics they are named after."""

import numpy as np
import pytest
from test_reference import assert_gradients_match_finite_differences, make_problem

from lstm_fast import reference as ref


def add_variants(seed, x, params, options, *, layer_norm=False, zoneout=None, recurrent=False, **variant):
    """The problem's options with the variant's; layer_norm adds its parameters to params, zoneout
    "masks" draws 0/1 masks, recurrent draws masks scaled by 1/(1 - 0.3)."""
    rng = np.random.default_rng(seed + 100)
    T, B = x.shape[:2]
    D = 2 if options["bidirectional"] else 1
    cells = options["num_layers"] * D
    H = params["weight_hh_l0"].shape[0] // 4
    R = params["weight_hh_l0"].shape[1]
    if layer_norm:
        for k in range(options["num_layers"]):
            for sfx in ref.SUFFIXES[:D]:
                for name, size in (("ih", 4 * H), ("hh", 4 * H), ("cell", H)):
                    params[f"ln_{name}_weight_l{k}{sfx}"] = rng.uniform(0.5, 1.5, size)
                    params[f"ln_{name}_bias_l{k}{sfx}"] = rng.uniform(-0.5, 0.5, size)
    if zoneout == "masks":
        variant["zoneout_masks"] = [(rng.random((T, B, R)) < 0.3, rng.random((T, B, H)) < 0.4) for _ in range(cells)]
    elif zoneout is not None:
        variant["zoneout"] = zoneout
    if recurrent:
        variant["recurrent_masks"] = [(rng.random((B, R)) > 0.3) / 0.7 for _ in range(cells)]
    return dict(options, layer_norm=layer_norm, **variant)


FD_CONFIGS = {
    "layer_norm": dict(variant=dict(layer_norm=True)),
    "layer_norm_proj_peephole": dict(proj_size=2, peephole=True, variant=dict(layer_norm=True)),
    "cell_clip": dict(variant=dict(cell_clip=0.6)),
    "cell_clip_peephole_lengths": dict(peephole=True, lengths=[5, 1, 3], variant=dict(cell_clip=0.5)),
    "coupled_gates": dict(variant=dict(coupled_gates=True)),
    "coupled_gates_peephole": dict(peephole=True, variant=dict(coupled_gates=True)),
    "zoneout_masks": dict(variant=dict(zoneout="masks")),
    "zoneout_expectation": dict(proj_size=2, variant=dict(zoneout=(0.3, 0.2))),
    "recurrent_dropout": dict(variant=dict(recurrent=True)),
    "recurrent_dropout_bidirectional_lengths": dict(
        bidirectional=True, lengths=[2, 5, 1], variant=dict(recurrent=True)
    ),
    "everything": dict(
        num_layers=2,
        bidirectional=True,
        proj_size=2,
        peephole=True,
        lengths=[3, 5, 1],
        dropout=True,
        variant=dict(layer_norm=True, zoneout="masks", recurrent=True, cell_clip=0.8, coupled_gates=True),
    ),
    "everything_no_bias": dict(
        num_layers=2,
        bidirectional=True,
        peephole=True,
        lengths=[5, 1],
        bias=False,
        B=2,
        variant=dict(layer_norm=True, zoneout=0.25, recurrent=True, cell_clip=0.7),
    ),
}


def _problem(seed, variant=(), **config):
    x, state, params, options, weights = make_problem(seed, **config)
    return x, state, params, add_variants(seed, x, params, options, **dict(variant)), weights


@pytest.mark.parametrize("config", FD_CONFIGS.values(), ids=FD_CONFIGS.keys())
def test_gradients_match_finite_differences(config):
    assert_gradients_match_finite_differences(*_problem(2, **config))


def _forward(params, x, state, options, **variant):
    y, (h_n, c_n), _ = ref.forward(x, params, state=state, **dict(options, **variant))
    return y, h_n, c_n


def _assert_same(a, b, atol=0.0):
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=0, atol=atol)


@pytest.mark.parametrize("peephole", [False, True], ids=["plain", "peephole"])
def test_coupled_gates_are_a_forget_gate_of_the_negated_input_gate(peephole):
    # sigmoid(-z) = 1 - sigmoid(z): a plain LSTM whose forget rows are minus its input rows has f = 1 - i.
    x, state, params, options, _ = make_problem(3, peephole=peephole, proj_size=2, num_layers=2)
    H = params["weight_hh_l0"].shape[0] // 4
    plain = {name: value.copy() for name, value in params.items()}
    for name, value in plain.items():
        if name.startswith(("weight_ih", "weight_hh", "bias")):
            value[H : 2 * H] = -value[:H]
        elif name.startswith("weight_peep"):
            value[1] = -value[0]
    _assert_same(_forward(params, x, state, options, coupled_gates=True), _forward(plain, x, state, options), 1e-12)


def test_zoneout_masks_of_zeros_are_the_plain_cell_and_of_ones_keep_the_state():
    x, state, params, options, _ = make_problem(4, bidirectional=True, proj_size=2)
    T, B = x.shape[:2]
    R, H = 2, params["weight_hh_l0"].shape[0] // 4
    zeros = [(np.zeros((T, B, R)), np.zeros((T, B, H)))] * 2
    _assert_same(_forward(params, x, state, options, zoneout_masks=zeros), _forward(params, x, state, options))
    ones = [(np.ones((T, B, R)), np.ones((T, B, H)))] * 2
    y, h_n, c_n = _forward(params, x, state, options, zoneout_masks=ones)
    _assert_same((h_n, c_n), state)
    np.testing.assert_array_equal(y[:, :, :R], np.broadcast_to(state[0][0], (T, B, R)))


def test_zoneout_in_inference_mixes_by_the_probabilities():
    # One step from (h0, c0): h_1 = z_h h0 + (1 - z_h) h~_1, c_1 = z_c c0 + (1 - z_c) c~_1.
    x, (h0, c0), params, options, _ = make_problem(5, T=1)
    _, (h_new, c_new), _ = ref.forward(x, params, state=(h0, c0), **options)
    _, (h1, c1), _ = ref.forward(x, params, state=(h0, c0), **dict(options, zoneout=(0.3, 0.6)))
    np.testing.assert_allclose(h1, 0.3 * h0 + 0.7 * h_new, rtol=1e-14)
    np.testing.assert_allclose(c1, 0.6 * c0 + 0.4 * c_new, rtol=1e-14)


def test_recurrent_masks_of_ones_and_a_huge_clip_change_nothing():
    x, state, params, options, _ = make_problem(6, num_layers=2, peephole=True)
    B, R = x.shape[1], params["weight_hh_l0"].shape[1]
    plain = _forward(params, x, state, options)
    _assert_same(_forward(params, x, state, options, recurrent_masks=[np.ones((B, R))] * 2), plain)
    _assert_same(_forward(params, x, state, options, cell_clip=1e9), plain)


def test_recurrent_mask_multiplies_h_in_the_recurrent_product_only():
    # With W_ih = 0 and no biases, a mask of zeros leaves z = 0 at every step, whatever h0 is.
    x, state, params, options, _ = make_problem(7, bias=False)
    params["weight_ih_l0"][:] = 0
    B, R = x.shape[1], params["weight_hh_l0"].shape[1]
    y, h_n, c_n = _forward(params, x, state, options, recurrent_masks=[np.zeros((B, R))])
    c = state[1][0]
    for t in range(x.shape[0]):  # i = f = o = 1/2, g = 0
        c = 0.5 * c
        np.testing.assert_allclose(y[t], 0.5 * np.tanh(c), rtol=1e-14)


def test_layer_norm_follows_the_equations():
    x, (h0, c0), params, options, _ = make_problem(8, T=1)
    options = add_variants(8, x, params, options, layer_norm=True)
    y, (h1, c1), _ = ref.forward(x, params, state=(h0, c0), **options)

    def ln(v, name):
        v_hat = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-5)
        return params[f"ln_{name}_weight_l0"] * v_hat + params[f"ln_{name}_bias_l0"]

    z = ln(x[0] @ params["weight_ih_l0"].T, "ih") + ln(h0[0] @ params["weight_hh_l0"].T, "hh")
    i, f, g, o = np.split(z + params["bias_ih_l0"] + params["bias_hh_l0"], 4, axis=1)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    c = sigmoid(f) * c0[0] + sigmoid(i) * np.tanh(g)
    np.testing.assert_allclose(c1[0], c, rtol=1e-13)
    np.testing.assert_allclose(y[0], sigmoid(o) * np.tanh(ln(c, "cell")), rtol=1e-13)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(cell_clip=0.0), "cell_clip must be None or > 0"),
        (dict(zoneout=1.0), r"zoneout must be in \[0, 1\)"),
        (dict(zoneout_masks=[]), "zoneout_masks must be 1 pairs"),
        (dict(recurrent_masks=[np.ones((2, 2))]), "recurrent_masks must be 1 arrays of shape"),
        (dict(layer_norm=True), "params is missing ln_ih_weight_l0"),
    ],
)
def test_rejects_bad_variants(bad, message):
    x, state, params, options, _ = make_problem(9)
    with pytest.raises(ValueError, match=message):
        ref.forward(x, params, state=state, **dict(options, **bad))


# --- Against ONNX Runtime: clip and input_forget ----------------------------------------------


def _onnx_lstm(params, x, state, clip, input_forget, peephole):
    """ONNX Runtime's LSTM (one layer, forward) on the reference's parameters: gate order i, o, f, c
    in ONNX against i, f, g, o here; peepholes (i, o, f) against (i, f, o)."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    def onnx_order(w):
        i, f, g, o = np.split(w, 4)
        return np.concatenate([i, o, f, g])

    f32 = lambda v: np.asarray(v, np.float32)[None]  # noqa: E731 - a direction axis
    inputs = dict(
        W=f32(onnx_order(params["weight_ih_l0"])),
        R=f32(onnx_order(params["weight_hh_l0"])),
        B=f32(np.concatenate([onnx_order(params["bias_ih_l0"]), onnx_order(params["bias_hh_l0"])])),
        initial_h=np.asarray(state[0], np.float32),
        initial_c=np.asarray(state[1], np.float32),
    )
    names = ["X", "W", "R", "B", "", "initial_h", "initial_c"]
    if peephole:
        p_i, p_f, p_o = params["weight_peep_l0"]
        inputs["P"] = f32(np.concatenate([p_i, p_o, p_f]))
        names.append("P")
    H = params["weight_hh_l0"].shape[1]
    attributes = dict(hidden_size=H, input_forget=int(input_forget)) | ({} if clip is None else dict(clip=clip))
    node = helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], **attributes)
    graph = helper.make_graph(
        [node],
        "lstm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("Y", "Y_h", "Y_c")],
        [numpy_helper.from_array(value, name) for name, value in inputs.items() if name not in ("X",)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y, h_n, c_n = session.run(None, {"X": np.asarray(x, np.float32)})
    return y[:, 0], h_n, c_n  # (T, 1, B, H) -> (T, B, H)


@pytest.mark.parametrize("peephole", [False, True], ids=["plain", "peephole"])
@pytest.mark.parametrize(
    "clip, coupled", [(0.5, False), (None, True), (0.7, True)], ids=["clip", "coupled", "clip_coupled"]
)
def test_cell_clip_and_coupled_gates_match_onnx_runtime(clip, coupled, peephole):
    x, state, params, options, _ = make_problem(10, peephole=peephole, T=6, B=3, I=4, H=5)
    for name in params:
        params[name] = params[name] * 3  # pre-activations past the clip
    params = {name: np.asarray(value, np.float32).astype(np.float64) for name, value in params.items()}
    x, state = np.asarray(x, np.float32).astype(np.float64), tuple(np.asarray(s, np.float32) for s in state)
    want = _forward(params, x, state, options, cell_clip=clip, coupled_gates=coupled)
    plain = _forward(params, x, state, options)
    assert np.abs(want[0] - plain[0]).max() > 0.05  # the variant matters here
    _assert_same(_onnx_lstm(params, x, state, clip, coupled, peephole), want, atol=2e-6)
