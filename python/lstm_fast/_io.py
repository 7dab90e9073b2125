"""Model files: one safetensors file, the parameters under torch's names and the constructor arguments
as JSON in its metadata ({"format": "lstm_fast/1", "config": "{...}"}).

Reading goes through the C++ loader (``_core.read_model_file``), the same checks a C++ program's
``Model::load`` runs: this package has no second parser of the file format.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Dict, Mapping, Tuple, Union

import numpy as np

from . import _core
from ._config import LSTMConfig

FORMAT = "lstm_fast/1"  # the "format" entry of a saved file's metadata

PathLike = Union["os.PathLike[str]", str]


def write(path: PathLike, tensors: Mapping[str, np.ndarray], config: LSTMConfig) -> None:
    """Writes `tensors` and `config` to `path`. Atomic: written to a temporary file in the same folder,
    then renamed, so an existing file survives a failed save whole."""
    from safetensors.numpy import save_file

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".lstm_fast-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        save_file(dict(tensors), tmp, metadata={"format": FORMAT, "config": json.dumps(config.to_dict())})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read(path: PathLike) -> Tuple[LSTMConfig, Dict[str, np.ndarray]]:
    """The config and the tensors of a model file, each tensor in its file dtype (float32 or float64).

    The C++ loader checked the container, the format, the config's keys and types, and that the file
    holds exactly the tensors the config implies with their shapes; the config's values are then
    checked as a constructor's are. FileNotFoundError for a missing file; ValueError naming the path
    and the problem for anything else that cannot be read as a model (a folder, a file we may not
    read, a file that is not a model).
    """
    name = os.fsdecode(os.fspath(path))
    try:
        config_json, tensors, precision = _core.read_model_file(name)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"path {name!r} is not a valid lstm_fast model file: {exc}") from exc
    if tensors is None:
        raise ValueError(
            f"path {name!r} holds a frozen {precision} model: read it with lf.load_model (lf.load reads the "
            "trainable float32 and float64 files)"
        )
    try:
        config = LSTMConfig.from_dict(json.loads(config_json))
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValueError(f"path {name!r} has an invalid config in its metadata: {exc}") from exc
    return config, tensors
