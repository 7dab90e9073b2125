"""Writes tests/fuzz/regressions/: hostile model files that every loader must refuse with a clean error.

    python tests/fuzz/make_regressions.py

Each file is one kind of attack on the format or the config (the name says which). The fuzzer
(tools/fuzz.sh) adds its own findings to the same folder by hand (crash-* files); this script only
(re)writes the files it names. tests/test_untrusted_files.py loads every file of the folder with
lf.load, and tests/test_cpp.py with the C++ Model::load, and expects ValueError / lstm_fast::Error.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

FOLDER = Path(__file__).resolve().parent / "regressions"
CONFIG = dict(
    input_size=2,
    hidden_size=3,
    num_layers=1,
    bias=True,
    batch_first=False,
    dropout=0.0,
    bidirectional=False,
    proj_size=0,
    peephole=False,
    forget_bias=0.0,
    dtype="float32",
    seed=None,
)


def tensors(I=2, H=3, dtype="F32", itemsize=4):
    """Header entries and data of a valid LSTM(I, H)'s tensors."""
    shapes = {"weight_ih_l0": [4 * H, I], "weight_hh_l0": [4 * H, H], "bias_ih_l0": [4 * H], "bias_hh_l0": [4 * H]}
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = int(np.prod(shape)) * itemsize
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    return header, b"\x00" * offset


def file(header: dict | bytes, data: bytes, length: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def model(config=None, **changes) -> tuple[dict, bytes]:
    header, data = tensors()
    header["__metadata__"] = {"format": "lstm_fast/1", "config": json.dumps(config or CONFIG)}
    for name, entry in changes.items():
        header[name] = entry
    return header, data


def cases() -> dict:
    h, d = model()
    out = {}
    out["empty"] = b""
    out["seven_bytes"] = b"\x01" * 7
    out["header_length_huge"] = file(h, d, length=2**63)
    out["header_length_u64_max"] = file(h, d, length=2**64 - 1)
    out["header_length_zero"] = file(b"", d, length=0)
    out["header_length_past_end"] = file(h, d, length=len(json.dumps(h)) + len(d) + 1)
    out["header_not_json"] = file(b"{not json at all", d)
    out["header_json_array"] = file(b"[1, 2, 3]", d)
    out["header_deep_nesting"] = file(b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", d)
    out["header_invalid_utf8"] = file(json.dumps(h).encode().replace(b"weight_ih_l0", b"weight_\xff\xfe_l0"), d)
    out["header_lone_surrogate"] = file(json.dumps(h).encode().replace(b"weight_ih_l0", b"weight_\\ud800_l0"), d)
    out["header_duplicate_key"] = file(b'{"x": 1, "x": 2}', b"")
    out["header_nul_in_key"] = file(json.dumps(h).encode().replace(b"weight_ih_l0", b"weight\\u0000ih_l0"), d)
    for name, entry in {
        "shape_overflow_u64": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 96]},
        "shape_product_wraps_to_zero": {"dtype": "F32", "shape": [2**32, 2**30, 16], "data_offsets": [0, 96]},
        "shape_negative": {"dtype": "F32", "shape": [-12, -2], "data_offsets": [0, 96]},
        "shape_float": {"dtype": "F32", "shape": [12.0, 2], "data_offsets": [0, 96]},
        "shape_huge_integer": {"dtype": "F32", "shape": [10**30, 2], "data_offsets": [0, 96]},
        "offsets_u64_max": {"dtype": "F32", "shape": [12, 2], "data_offsets": [2**64 - 1, 2**64 - 1]},
        "offsets_reversed": {"dtype": "F32", "shape": [12, 2], "data_offsets": [96, 0]},
        "offsets_overlap": {"dtype": "F32", "shape": [12, 3], "data_offsets": [0, 144]},
        "offsets_wrong_count": {"dtype": "F32", "shape": [12, 2], "data_offsets": [0]},
        "dtype_unknown": {"dtype": "F128", "shape": [12, 2], "data_offsets": [0, 96]},
        "dtype_bool": {"dtype": "BOOL", "shape": [12, 8], "data_offsets": [0, 96]},
        "dtype_int32": {"dtype": "I32", "shape": [12, 2], "data_offsets": [0, 96]},
        "entry_extra_field": {"dtype": "F32", "shape": [12, 2], "data_offsets": [0, 96], "x": 1},
        "entry_not_object": [1, 2, 3],
    }.items():
        out[name] = file(*model(weight_ih_l0=entry))
    # Configs: wrong, hostile or huge, with the tensors of LSTM(2, 3).
    for name, change in {
        "config_huge_sizes": dict(input_size=10**9, hidden_size=10**9),
        "config_2pow31": dict(input_size=2**31, hidden_size=2**31),
        "config_max_sizes": dict(input_size=2**31 - 1, hidden_size=2**31 - 1),
        "config_absurd_layers": dict(num_layers=2**31 - 1),
        "config_hidden_allocates_gigabytes": dict(hidden_size=20000),
        "config_negative_hidden": dict(hidden_size=-3),
        "config_proj_too_big": dict(proj_size=3),
        "config_float_size": dict(input_size=2.5),
        "config_bool_size": dict(hidden_size=True),
        "config_dtype_int": dict(dtype="int32"),
        "config_unknown_key": dict(evil=1),
        "config_dropout_nan": dict(dropout=float("nan")),
    }.items():
        out[name] = file(*model({**CONFIG, **change}))
    out["config_not_json"] = file(*model()).replace(b'"{\\"input_size', b'"{{\\"input_size', 1)
    out["config_json_array"] = file(
        {**tensors()[0], "__metadata__": {"format": "lstm_fast/1", "config": "[1]"}}, tensors()[1]
    )
    out["config_deep_nesting"] = file(
        {**tensors()[0], "__metadata__": {"format": "lstm_fast/1", "config": "[" * 5000 + "]" * 5000}}, tensors()[1]
    )
    out["metadata_not_strings"] = file({**tensors()[0], "__metadata__": {"format": 1, "config": {}}}, tensors()[1])
    out["no_metadata"] = file(tensors()[0], tensors()[1])
    h2, d2 = model()
    del h2["bias_hh_l0"]
    out["tensor_missing"] = file(h2, d2[:-48])
    h3, d3 = model(extra={"dtype": "F32", "shape": [1], "data_offsets": [336, 340]})
    out["tensor_unexpected"] = file(h3, d3 + b"\x00" * 4)
    out["data_truncated"] = file(h, d[:-1])
    out["data_trailing_bytes"] = file(h, d + b"\x00" * 8)
    return out


def main() -> None:
    FOLDER.mkdir(exist_ok=True)
    for name, data in cases().items():
        (FOLDER / f"{name}.safetensors").write_bytes(data)
    print(f"wrote {len(cases())} files to {FOLDER}")


if __name__ == "__main__":
    main()
