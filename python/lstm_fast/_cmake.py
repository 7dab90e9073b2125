"""Where the installed package keeps its CMake package config, for C++ projects that link lstm_fast.

cmake -S . -B build -Dlstm_fast_DIR="$(python -m lstm_fast --cmakedir)"
"""

from __future__ import annotations

import os

_CONFIG_DIR = os.path.join("share", "cmake", "lstm_fast")


def get_cmake_dir() -> str:
    """The folder holding ``lstm_fastConfig.cmake``: give it to CMake as ``lstm_fast_DIR``.

    The wheel installs it as ``lstm_fast/share/cmake/lstm_fast`` beside the headers
    (``lstm_fast/include``) and the static core library (``lstm_fast/lib``). Raises FileNotFoundError
    when this copy of the package has none (e.g. a source tree that was never installed).
    """
    from . import __path__ as package_dirs  # an editable install spans the source and the install tree

    for root in package_dirs:
        folder = os.path.join(root, _CONFIG_DIR)
        if os.path.isfile(os.path.join(folder, "lstm_fastConfig.cmake")):
            return folder
    raise FileNotFoundError(
        f"lstm_fast's CMake package config ({_CONFIG_DIR}/lstm_fastConfig.cmake) is not in "
        f"{list(package_dirs)}; install the package with pip to get it"
    )
