"""The shape of the C++ core (issue 14): files of a readable length and functions that fit on a screen;
and the map of the code: docs/development.md names every source and test file, README.md stays a
front page whose links lead somewhere. (The Python package's own shape, import cycles and function
lengths, is checked in test_package.py.)"""

import json
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 80
MAX_CPP_FILE_LINES = 450
MAX_README_LINES = 200
# The folders whose every file docs/development.md names, with a line on what it is, and the files there.
DOCUMENTED = {
    "cpp/src": ("*/*.cpp", "*/*.hpp"),
    "cpp/include/lstm_fast": ("*.hpp",),
    "cpp/bindings": ("*.cpp", "*.hpp"),
    "python/lstm_fast": ("*.py", "*.pyi"),
    "tests": ("*.py",),
}
# The folders of cpp/src, lowest first: a file includes headers of its own folder or of one below it only.
LAYERS = ("runtime", "plan", "weights", "kernels", "cell", "stack", "io", "api")
# The kernels each tested once per instruction set by tests/cpp/kernels/test_<name>.cpp: every header of
# cpp/src/kernels, and these of cpp/src/cell (the products compiled per instruction set with the passes).
PER_ISA_KERNELS = ("kernels/*.hpp", "cell/bf16_training.hpp")
# The README's two commands, which .ci/run runs exactly as written there.
README_COMMANDS = ("pip install . && python -m lstm_fast", 'pip install ".[test]" && python -m pytest')

pytestmark = pytest.mark.skipif(not (ROOT / "cpp").is_dir(), reason="needs the source tree (cpp/)")


def test_cpp_files_are_at_most_450_lines():
    files = [p for p in (ROOT / "cpp").rglob("*") if p.suffix in (".cpp", ".hpp")]
    assert files
    long = [
        f"{p.relative_to(ROOT)} ({n} lines)"
        for p in files
        if (n := len(p.read_text().splitlines())) > MAX_CPP_FILE_LINES
    ]
    assert not long, long


def test_cpp_functions_fit_on_a_screen():
    if shutil.which("ctags") is None:
        pytest.skip(
            "universal-ctags is not installed (apt-get install universal-ctags): C++ function lengths not checked"
        )
    out = subprocess.run(
        ["ctags", "-R", "--languages=C++", "--kinds-C++=f", "--fields=+ne", "--output-format=json", "-f", "-", "cpp"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    tags = [json.loads(line) for line in out.stdout.splitlines()]
    assert tags, "ctags found no C++ functions"
    long = [
        f"{t['path']}:{t['line']} {t['name']} ({n} lines)"
        for t in tags
        if (n := t.get("end", t["line"]) - t["line"] + 1) > MAX_FUNCTION_LINES
    ]
    assert not long, long


def test_cpp_src_folders_include_only_downwards():
    src = ROOT / "cpp" / "src"
    assert sorted(p.name for p in src.iterdir()) == sorted(LAYERS), "a file or folder of cpp/src outside LAYERS"
    upward = []
    for p in sorted(src.rglob("*")):
        if p.suffix not in (".cpp", ".hpp"):
            continue
        level = LAYERS.index(p.parent.name)
        for target in re.findall(r'^#include "([^"]+)"', p.read_text(), re.M):
            folder = target.split("/")[0]
            if folder != "lstm_fast" and (folder not in LAYERS or LAYERS.index(folder) > level):
                upward.append(f"{p.relative_to(ROOT)} includes {target}")
    assert not upward, f"includes that point up the layers {LAYERS} (or name no folder): {upward}"


def test_every_kernel_has_its_test_per_instruction_set():
    # kernels.cmake compiles every tests/cpp/kernels/test_*.cpp into each test_kernels_<isa>: a kernel
    # header without its test file, including it, would land untested.
    headers = sorted(p for pattern in PER_ISA_KERNELS for p in (ROOT / "cpp" / "src").glob(pattern))
    assert len(headers) >= 6, headers
    untested = []
    for header in headers:
        test = ROOT / "tests" / "cpp" / "kernels" / f"test_{header.stem}.cpp"
        include = f'#include "{header.parent.name}/{header.name}"'
        if not test.is_file() or include not in test.read_text():
            untested.append(f"{header.relative_to(ROOT)}: no {test.relative_to(ROOT)} with {include}")
    assert not untested, untested


def names(text: str, name: str) -> bool:
    """Whether text names the file `name` on its own (model.cpp is not named by models.cpp or _model.py)."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", text) is not None


def test_development_md_names_every_source_and_test_file():
    text = (ROOT / "docs" / "development.md").read_text()
    files = [
        p for folder, patterns in DOCUMENTED.items() for pattern in patterns for p in (ROOT / folder).glob(pattern)
    ]
    assert len(files) > 50, files
    missing = sorted(str(p.relative_to(ROOT)) for p in files if not names(text, p.name))
    assert not missing, f"docs/development.md does not name these files (add a line on each): {', '.join(missing)}"


def test_readme_is_a_front_page_of_at_most_200_lines():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines, more than {MAX_README_LINES}: move the details into docs/ and link them"
    )
    for command in README_COMMANDS:  # .ci/run runs them as the README gives them
        assert command in lines, f"README.md no longer gives the command {command!r} on a line of its own"


def heading_anchors(markdown: str) -> set:
    """The anchors GitHub gives a page's headings: lowercased, punctuation dropped, spaces as hyphens."""
    anchors, seen = set(), {}
    for heading in re.findall(r"^#+ +(.+?) *$", re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M), re.M):
        anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        seen[anchor] = seen.get(anchor, -1) + 1
        anchors.add(anchor if seen[anchor] == 0 else f"{anchor}-{seen[anchor]}")
    return anchors


def test_the_links_of_the_readme_and_the_docs_lead_somewhere():
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
        for link in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", link):  # https: and mailto: are not checked
                continue
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            if not target.exists():
                broken.append(f"{page.relative_to(ROOT)}: {link} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in heading_anchors(target.read_text()):
                broken.append(f"{page.relative_to(ROOT)}: {link} (no such heading)")
    assert not broken, broken
