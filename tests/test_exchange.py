"""Model exchange: ONNX export run by ONNX Runtime, and Keras weights both ways."""

import itertools

import numpy as np
import pytest

import lstm_fast as lf

# -- ONNX ---------------------------------------------------------------------------------------------

ONNX_CONFIGS = list(itertools.product([1, 2], [False, True], [True, False], [False, True], [False, True]))


@pytest.fixture(scope="module")
def ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def model_and_inputs(rng, num_layers, bidirectional, bias, batch_first, peephole, dtype):
    T, B, I, H = 7, 3, 4, 5
    model = lf.LSTM(
        I,
        H,
        num_layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
        peephole=peephole,
        forget_bias=1.0 if bias else 0.0,
        dtype=dtype,
        seed=1,
    )
    LD = num_layers * model.num_directions
    x = rng.normal(size=(B, T, I) if batch_first else (T, B, I)).astype(dtype)
    h0, c0 = rng.normal(size=(LD, B, H)).astype(dtype), rng.normal(size=(LD, B, H)).astype(dtype)
    return model, x, h0, c0


def assert_outputs(actual, expected, tol):
    for name, a, e in zip(("y", "h_n", "c_n"), actual, expected):
        assert a.dtype == e.dtype and a.shape == e.shape, name
        np.testing.assert_allclose(a, e, **tol, err_msg=name)


@pytest.mark.parametrize("num_layers,bidirectional,bias,batch_first,peephole", ONNX_CONFIGS)
def test_onnx_runtime_reproduces_the_model(ort, tmp_path, rng, num_layers, bidirectional, bias, batch_first, peephole):
    model, x, h0, c0 = model_and_inputs(rng, num_layers, bidirectional, bias, batch_first, peephole, np.float32)
    lengths = np.array([7, 2, 5], np.int32)  # the ONNX operator's sequence_lens
    model.to_onnx(tmp_path / "model.onnx", with_lengths=True)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x", "h0", "c0", "lengths"]
    actual = session.run(None, {"x": x, "h0": h0, "c0": c0, "lengths": lengths})
    y, (h_n, c_n) = model(x, (h0, c0), lengths)
    assert_outputs(actual, (y, h_n, c_n), dict(rtol=1e-5, atol=1e-5))


@pytest.mark.parametrize("num_layers,bidirectional,bias,batch_first,peephole", ONNX_CONFIGS[::3])
def test_float64_graphs_by_the_onnx_reference_evaluator(
    tmp_path, rng, num_layers, bidirectional, bias, batch_first, peephole
):
    # ONNX Runtime's LSTM kernel is float32 only ("does not support double yet"); the float64 graph is
    # checked by the onnx package's own evaluator of the operator's definition.
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    model, x, h0, c0 = model_and_inputs(rng, num_layers, bidirectional, bias, batch_first, peephole, np.float64)
    model.to_onnx(tmp_path / "model.onnx")
    actual = ReferenceEvaluator(str(tmp_path / "model.onnx")).run(None, {"x": x, "h0": h0, "c0": c0})
    y, (h_n, c_n) = model(x, (h0, c0))
    assert_outputs(actual, (y, h_n, c_n), dict(rtol=1e-12, atol=1e-12))


def test_onnx_graph_without_state_takes_x_only_and_any_sizes(ort, tmp_path, rng):
    model = lf.LSTM(3, 4, 2, seed=2)
    model.to_onnx(tmp_path / "m.onnx", with_state=False)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"]
    for T, B in ((1, 1), (9, 5)):  # T and B are free dimensions of the graph
        x = rng.normal(size=(T, B, 3)).astype(np.float32)
        y, h_n, _ = session.run(None, {"x": x})
        expected_y, (expected_h, _) = model(x)
        np.testing.assert_allclose(y, expected_y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h_n, expected_h, rtol=1e-5, atol=1e-5)


def test_onnx_export_of_a_projection_is_refused(tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match="no projection; this model has proj_size=2"):
        lf.LSTM(3, 4, proj_size=2).to_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_export_from_the_torch_module(ort, tmp_path, rng):
    torch = pytest.importorskip("torch")
    import lstm_fast.torch as lft

    module = lft.LSTM(3, 4, batch_first=True, peephole=True)
    module.to_onnx(tmp_path / "m.onnx", with_state=False)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-5)


# -- Keras --------------------------------------------------------------------------------------------


def keras_lstm(x, kernel, recurrent_kernel, bias):
    """Keras's LSTM layer (activation tanh, recurrent_activation sigmoid), written from its
    definition: z = x_t kernel + h recurrent_kernel + bias, split into (i, f, c, o) column blocks.
    x: (B, T, I) -> the sequence of h, (B, T, H)."""
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    B, T, _ = x.shape
    H = recurrent_kernel.shape[0]
    h, c, out = np.zeros((B, H)), np.zeros((B, H)), []
    for t in range(T):
        z = x[:, t] @ kernel + h @ recurrent_kernel + bias
        i, f, c_hat, o = (z[:, k * H : (k + 1) * H] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(c_hat)
        h = sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


def hand_made_keras_weights(I=2, H=3):
    """Weights with a distinct value per gate block, so a swapped block or a missed transpose shows."""
    kernel = np.zeros((I, 4 * H))
    recurrent_kernel = np.zeros((H, 4 * H))
    for gate, scale in enumerate((0.5, -0.3, 0.8, 0.2)):  # i, f, c, o
        kernel[:, gate * H : (gate + 1) * H] = scale * (1 + np.arange(I * H).reshape(I, H) / 10)
        recurrent_kernel[:, gate * H : (gate + 1) * H] = -scale * (np.eye(H) + 0.1)
    bias = np.concatenate([np.full(H, 0.1), np.full(H, 1.0), np.full(H, -0.2), np.full(H, 0.3)])
    return kernel, recurrent_kernel, bias


def test_from_keras_weights_follows_keras_equations(rng):
    kernel, recurrent_kernel, bias = hand_made_keras_weights()
    model = lf.LSTM.from_keras_weights(kernel, recurrent_kernel, bias, batch_first=True, dtype=np.float64)
    x = rng.normal(size=(4, 6, 2))
    y, (h_n, _) = model(x)
    expected = keras_lstm(x, kernel, recurrent_kernel, bias)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n[0], expected[:, -1], rtol=1e-12, atol=1e-12)


def test_keras_weights_round_trip():
    kernel, recurrent_kernel, bias = hand_made_keras_weights()
    model = lf.LSTM.from_keras_weights(kernel, recurrent_kernel, bias, dtype=np.float64)
    back = model.to_keras_weights()
    for a, b in zip(back, (kernel, recurrent_kernel, bias)):
        np.testing.assert_array_equal(a, b)
    # A model with both biases: Keras gets their sum, and the outputs agree.
    model = lf.LSTM(2, 3, dtype=np.float64, seed=3)
    x = np.random.default_rng(0).normal(size=(2, 5, 2))
    np.testing.assert_allclose(
        keras_lstm(x, *model.to_keras_weights()),
        model(x.transpose(1, 0, 2))[0].transpose(1, 0, 2),
        rtol=1e-12,
        atol=1e-12,
    )


def test_keras_without_bias():
    kernel, recurrent_kernel, _ = hand_made_keras_weights()
    model = lf.LSTM.from_keras_weights(kernel, recurrent_kernel, None, dtype=np.float64)
    assert not model.bias and len(model.to_keras_weights()) == 2


@pytest.mark.parametrize(
    "args,match",
    [
        ((np.zeros((2, 10)), np.zeros((3, 12)), None), r"kernel must have shape \(input_size, 4 \* units\)"),
        ((np.zeros((2, 12)), np.zeros((12, 3)), None), r"recurrent_kernel must have shape \(3, 12\)"),
        ((np.zeros((2, 12)), np.zeros((3, 12)), np.zeros(3)), r"bias must have shape \(12,\)"),
    ],
)
def test_bad_keras_weights_are_named(args, match):
    with pytest.raises(ValueError, match=match):
        lf.LSTM.from_keras_weights(*args)


def test_to_keras_refuses_what_keras_cannot_hold():
    with pytest.raises(ValueError, match="one unidirectional layer"):
        lf.LSTM(2, 3, 2).to_keras_weights()
