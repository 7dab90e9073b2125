"""lstm_fast against torch.nn.LSTM and ONNX Runtime, side by side in one run: inference, training
(forward + backward) in fp32 and in bf16 mixed precision (against torch under CPU autocast), training
through the torch module (lstm_fast.torch.LSTM against torch.nn.LSTM,
both driven by torch autograd), padded batches (half the sequences at half length: lstm_fast's
`lengths` against torch's pack_padded_sequence) and the streaming per-step call, at the shapes of the
performance issue. Prints medians, the ratio lstm_fast / best peer (below 1 means lstm_fast is faster),
GFLOP/s (forward 2*T*B*4H*(I+H) per layer and direction, training 3x) and its fraction of this
machine's FP32 peak (measured: FMA throughput on lstm_fast's threads); --json writes the same to a file.

    python benchmarks/bench_torch.py [--repeats 7] [--shapes small,long] [--modes training,train-bf16]
        [--json out.json]

torch and ONNX Runtime are benchmark-only dependencies: `pip install torch==2.13.0 onnx onnxruntime`.
The ONNX graph is the standard ONNX LSTM operator (the one torch.onnx emits for nn.LSTM), written by
lstm_fast's to_onnx from the same parameters; ONNX Runtime runs it with as many threads as lstm_fast.
Without onnxruntime the ORT column is left empty.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import numpy as np

import lstm_fast as lf

# name: (T, B, I, H, num_layers, bidirectional)
SHAPES = {
    "small": (100, 32, 64, 128, 1, False),
    "medium": (100, 64, 256, 256, 1, False),
    "large": (50, 128, 512, 512, 1, False),
    "long": (1000, 16, 16, 128, 1, False),
    "b1": (1000, 1, 64, 256, 1, False),
    "deep": (100, 32, 128, 128, 2, True),
    "xl": (50, 64, 1024, 1024, 1, False),
}


def cpu_model() -> str:
    """The CPU's model name and family/model numbers from /proc/cpuinfo (Linux), else the platform's."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in info.items()}
        return f"{fields['model name']} (family {fields['cpu family']}, model {fields['model']})"
    except (OSError, KeyError):
        return platform.processor() or platform.machine()


def median_ms(fn, repeats: int, min_seconds: float = 0.2) -> float:
    """Median wall time of fn() in milliseconds, after one warm-up call; each sample runs fn enough
    times to last about min_seconds / repeats.

    Starts with a pause: the previous measurement's library may still have threads spinning for work
    (OpenMP's and ONNX Runtime's pools spin a while after a call), which would take the cores from
    the next one. Measured here: lstm_fast's long inference right after ONNX Runtime's took 13.6 ms,
    alone 7.5 ms."""
    time.sleep(0.3)
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    inner = max(1, int(min_seconds / repeats / once))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner * 1e3)
    return statistics.median(samples)


def step_calls(rng):
    """The streaming case: one step per call, the state carried (B = 1, I = 64, H = 256), on equal
    weights; returns (lstm_fast's call, torch's call)."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.LSTM(64, 256)
    model = lf.LSTM.from_torch(module)
    x_t = rng.standard_normal((1, 64), dtype=np.float32)
    state = model.initial_state(1)
    xt = torch.from_numpy(x_t)[None]
    tstate = (torch.zeros(1, 1, 256), torch.zeros(1, 1, 256))

    def torch_step():
        with torch.no_grad():
            module(xt, tstate)

    return (lambda: model.step(x_t, state)), torch_step


def shape_case(name, rng):
    """The case `name` of SHAPES on equal weights: (torch.nn.LSTM, lstm_fast's LSTM, x, dy) and x, dy as
    torch tensors; x (T, B, I), dy (T, B, D*H), float32."""
    import torch

    T, B, I, H, layers, bidirectional = SHAPES[name]
    module = torch.nn.LSTM(I, H, layers, bidirectional=bidirectional)
    model = lf.LSTM.from_torch(module)
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    D = 2 if bidirectional else 1
    dy = rng.standard_normal((T, B, D * H), dtype=np.float32)
    return module, model, x, dy, torch.from_numpy(x), torch.from_numpy(dy)


def gflops(T, B, I, H, layers, bidirectional, ms, factor=1.0):
    """Forward: 2*T*B*4H*(I+H) per layer and direction (the two GEMMs); training counts 3x."""
    D = 2 if bidirectional else 1
    flops = 0.0
    for k in range(layers):
        layer_in = I if k == 0 else D * H
        flops += D * 2 * T * B * 4 * H * (layer_in + H)
    return factor * flops / (ms * 1e-3) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated subset of " + ",".join(SHAPES))
    parser.add_argument("--modes", help="comma-separated subset of the modes (default: all)")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()

    import torch

    import lstm_fast.torch as lft
    from lstm_fast import _core

    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    tmp = tempfile.mkdtemp()

    # The machine's FP32 peak: independent FMA chains of the active ISA on lstm_fast's threads.
    peak = _core.fma_peak_gflops(1.0, lf.get_num_threads())
    # bf16 training's: vdpbf16ps's multiply-adds (GOP/s, a multiply-add 2), or the fallback's this CPU runs.
    bf16_peak = _core.dot_peak_gops("bf16", 1.0, lf.get_num_threads())
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); lstm_fast {lf.__version__} "
        f"({lf.isa()}, {lf.get_num_threads()} threads); FP32 peak {peak:.0f} GFLOP/s (measured FMA throughput), "
        f"bf16 {bf16_peak:.0f}"
    )
    rows = []
    header = (
        f"{'shape':8} {'mode':9} {'lstm_fast ms':>12} {'torch ms':>10} {'ORT ms':>8} {'ratio':>7} "
        f"{'GFLOP/s':>8} {'of peak':>7}"
    )
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for name in args.shapes.split(","):
        T, B, I, H, layers, bidirectional = SHAPES[name]
        torch.manual_seed(0)
        module, model, x, dy, xt, dyt = shape_case(name, rng)

        def torch_infer():
            with torch.no_grad():
                module(xt)

        def torch_train():
            module.zero_grad(set_to_none=True)
            y, _ = module(xt)
            y.backward(dyt)

        def ours_train():
            model.forward(x, train=True)
            model.backward(dy)

        def ours_train_bf16():
            model.forward(x, train=True, precision="bf16")
            model.backward(dy)

        def torch_train_bf16():  # oneDNN's bf16 RNN where the CPU has AVX512_BF16
            with torch.autocast("cpu", dtype=torch.bfloat16):
                torch_train()

        # The same training step through torch autograd, with lstm_fast's module in torch's place.
        twin = lft.LSTM(I, H, layers, bidirectional=bidirectional)
        twin.load_state_dict(module.state_dict())

        def twin_train():
            twin.zero_grad(set_to_none=True)
            y, _ = twin(xt)
            y.backward(dyt)

        ort_infer = None
        if ort is not None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = lf.get_num_threads()
            path = os.path.join(tmp, f"{name}.onnx")
            model.to_onnx(path, with_state=False)
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

            def ort_infer():
                session.run(None, {"x": x})

        # Padded batch: half the sequences at half length, so 3/4 of the steps are real.
        lengths = np.where(np.arange(B) % 2 == 0, T, max(T // 2, 1))
        tlengths = torch.from_numpy(lengths)

        def torch_packed():
            with torch.no_grad():
                packed = torch.nn.utils.rnn.pack_padded_sequence(xt, tlengths, enforce_sorted=False)
                torch.nn.utils.rnn.pad_packed_sequence(module(packed)[0], total_length=T)

        real = float(lengths.sum()) / (T * B)
        for mode, ours, theirs, onnx_rt, factor in (
            ("inference", lambda: model(x), torch_infer, ort_infer, 1.0),
            ("training", ours_train, torch_train, None, 3.0),
            ("train-bf16", ours_train_bf16, torch_train_bf16, None, 3.0),
            ("torch-api", twin_train, torch_train, None, 3.0),
            ("padded", lambda: model(x, lengths=lengths), torch_packed, None, real),
        ):
            if args.modes and mode not in args.modes.split(","):
                continue
            ours_ms = median_ms(ours, args.repeats)
            torch_ms = median_ms(theirs, args.repeats)
            ort_ms = median_ms(onnx_rt, args.repeats) if onnx_rt else None
            best = min(torch_ms, ort_ms) if ort_ms else torch_ms
            row = dict(
                shape=name,
                mode=mode,
                T=T,
                B=B,
                I=I,
                H=H,
                layers=layers,
                bidirectional=bidirectional,
                lstm_fast_ms=ours_ms,
                torch_ms=torch_ms,
                ort_ms=ort_ms,
                ratio=ours_ms / best,
                gflops=gflops(T, B, I, H, layers, bidirectional, ours_ms, factor),
            )
            rows.append(row)
            row["fraction_of_peak"] = row["gflops"] / (bf16_peak if mode == "train-bf16" else peak)
            ort_text = f"{ort_ms:8.2f}" if ort_ms else f"{'':8}"
            print(
                f"{name:8} {mode:9} {ours_ms:12.2f} {torch_ms:10.2f} {ort_text} {row['ratio']:7.2f} "
                f"{row['gflops']:8.1f} {row['fraction_of_peak']:7.0%}"
            )

    ours_step, torch_step = step_calls(rng)
    ours_ms, torch_ms = median_ms(ours_step, args.repeats), median_ms(torch_step, args.repeats)
    rows.append(
        dict(
            shape="step",
            mode="streaming",
            T=1,
            B=1,
            I=64,
            H=256,
            layers=1,
            bidirectional=False,
            lstm_fast_ms=ours_ms,
            torch_ms=torch_ms,
            ratio=ours_ms / torch_ms,
            gflops=gflops(1, 1, 64, 256, 1, False, ours_ms),
        )
    )
    print(
        f"{'step':8} {'streaming':9} {ours_ms:12.3f} {torch_ms:10.3f} {'':8} {ours_ms / torch_ms:7.2f} "
        f"{rows[-1]['gflops']:8.1f}"
    )
    print(
        "ratio: lstm_fast / the best peer measured on the row (ORT runs inference only). train-bf16: "
        "precision='bf16' against torch under torch.autocast('cpu', dtype=torch.bfloat16), of the bf16 peak. "
        "torch-api: training "
        "through lstm_fast.torch.LSTM against torch.nn.LSTM, both under torch autograd. padded: inference on a "
        "batch whose odd sequences stop at T/2; GFLOP/s counts real steps only."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(fp32_peak_gflops=peak, isa=lf.isa(), threads=lf.get_num_threads(), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
