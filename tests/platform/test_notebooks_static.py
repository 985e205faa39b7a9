"""Static checks of the self-study notebooks (no services needed; `make notebooks` runs them).

Each notebook is paired with its percent-format script (Jupytext), was run top to bottom with its
outputs stored (nbval compares against them), shows at least one picture, ends with exercises
that point to an existing lab, and never spells out a host, port or password.
"""

from __future__ import annotations

import re

import jupytext
import nbformat
import pytest

from harness.runtime.config import ENV_FILE, ROOT

NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = [
    "01_batch_vs_streaming.ipynb",
    "02_kafka_basics.ipynb",
    "03_clickhouse_basics.ipynb",
    "04_debezium_cdc.ipynb",
    "05_s3_minio.ipynb",
]
IGNORE_TAG = "nbval-ignore-output"
MAX_BYTES = 1_000_000
LAB_LINK = re.compile(r"\]\(\.\./labs/(lab(\d\d)_[a-z0-9_]+)/README\.md\)")
MAKE_LAB = re.compile(r"make lab-(\d)")
PORTS = re.compile(r"(?<![\d.])(9092|9093|8083|5432|9000|9001|8123|7077|8081|8082|8888)(?![\d.])")


def _secrets() -> list[str]:
    """Local-development passwords and user names from infra/.env (none may appear literally)."""
    values = []
    for line in ENV_FILE.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith(("_PASSWORD", "_ROOT_USER", "_TOKEN")) and len(value.strip()) > 4:
            values.append(value.strip())
    return values


def _load(name: str) -> nbformat.NotebookNode:
    path = NOTEBOOK_DIR / name
    assert path.exists(), (
        f"{path} is missing; make it from its script: jupytext --sync {path.with_suffix('.py')}"
    )
    return nbformat.read(path, as_version=4)


def _code(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def _text_outputs(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        for mime in ("text/plain", "text/html"):
            parts.append(out.get("data", {}).get(mime, ""))
        parts.append(out.get("evalue", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_and_uses_the_python3_kernel(name: str) -> None:
    """The notebook is valid nbformat 4 and runs on the `python3` kernel (the venv's python)."""
    nb = _load(name)
    nbformat.validate(nb)
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    assert kernel == "python3", f"{name}: kernelspec {kernel!r}, expected 'python3'"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), (
        f"{name}: the first cell should be the Markdown title"
    )


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_in_step_with_its_script(name: str) -> None:
    """The `.ipynb` and its percent-format script (what authors edit) hold the same cells and tags."""
    script = (NOTEBOOK_DIR / name).with_suffix(".py")
    assert script.exists(), f"{script} is missing: jupytext --sync notebooks/{name}"
    in_script = _cells(jupytext.read(script))
    in_notebook = _cells(_load(name))
    differ = [
        i for i, pair in enumerate(zip(in_script, in_notebook, strict=False)) if pair[0] != pair[1]
    ]
    assert len(in_script) == len(in_notebook) and not differ, (
        f"{name} and {script.name} differ (cells {differ[:5]}, counts {len(in_notebook)} vs "
        f"{len(in_script)}); run `jupytext --sync notebooks/{script.name}`, then re-run the "
        "notebook to store its outputs"
    )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_outputs_are_stored_from_one_run_top_to_bottom(name: str) -> None:
    """Every code cell ran once, in order, without an error; compared cells carry output."""
    nb = _load(name)
    cells = _code(nb)
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{name}: execution counts {counts}; run the notebook once from the top "
        "(see notebooks/README.md, Changing a notebook)"
    )
    errors = [i for i, c in enumerate(cells) if any(o.output_type == "error" for o in c.outputs)]
    assert not errors, f"{name}: code cells {errors} stored an error"
    compared_with_output = [
        c for c in cells if IGNORE_TAG not in c.metadata.get("tags", []) and c.outputs
    ]
    assert len(compared_with_output) >= 5, (
        f"{name}: only {len(compared_with_output)} compared cells have output; the teaching "
        "output (counts, query results) must be compared by nbval, not ignored"
    )
    assert (NOTEBOOK_DIR / name).stat().st_size < MAX_BYTES, f"{name} is over {MAX_BYTES} bytes"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_shows_pictures(name: str) -> None:
    """At least one inline PNG (matplotlib), in a cell whose output nbval does not compare."""
    nb = _load(name)
    pictures = [c for c in _code(nb) if any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert pictures, f"{name}: no inline PNG output; plots are part of the lesson"
    for cell in pictures:
        assert IGNORE_TAG in cell.metadata.get("tags", []), (
            f"{name} cell {cell.id}: a plot cell should be tagged {IGNORE_TAG}"
        )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_ends_with_exercises_pointing_to_a_lab(name: str) -> None:
    """The last cell is the exercises, linking an existing lab README and its `make lab-N`."""
    nb = _load(name)
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and "## Exercises" in last.source, (
        f"{name}: the last cell should be the '## Exercises' Markdown cell"
    )
    links = LAB_LINK.findall(last.source)
    assert links, f"{name}: the exercises link no lab README (../labs/labNN_topic/README.md)"
    make_targets = {int(n) for n in MAKE_LAB.findall(last.source)}
    for folder, number in links:
        readme = ROOT / "labs" / folder / "README.md"
        assert readme.exists(), f"{name}: links {readme.relative_to(ROOT)}, which does not exist"
        assert int(number) in make_targets, (
            f"{name}: links {folder} but not `make lab-{int(number)}`"
        )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_hard_coded_endpoints_or_credentials(name: str) -> None:
    """Hosts, ports and passwords come from harness.runtime.config; none is written in a cell or output."""
    nb = _load(name)
    secrets = _secrets()
    for cell in _code(nb):
        source = cell.source
        for literal in ("127.0.0.1", "localhost", "0.0.0.0"):
            assert literal not in source, f"{name} cell {cell.id}: hard-coded host {literal!r}"
        port = PORTS.search(source)
        assert port is None, (
            f"{name} cell {cell.id}: hard-coded port {port.group(0) if port else ''}"
        )
        text = source + "\n" + _text_outputs(cell)
        for secret in secrets:
            assert secret not in text, (
                f"{name} cell {cell.id}: a credential from infra/.env appears"
            )


def test_helpers_have_no_hard_coded_endpoints() -> None:
    """notebooks/_nb_helpers.py reaches services only through harness.runtime.services."""
    text = (NOTEBOOK_DIR / "_nb_helpers.py").read_text()
    assert "127.0.0.1" not in text and "localhost" not in text
    assert PORTS.search(text) is None
    for secret in _secrets():
        assert secret not in text


def test_sanitize_file_has_patterns() -> None:
    """notebooks/sanitize.cfg holds regex/replace pairs nbval can read."""
    text = (NOTEBOOK_DIR / "sanitize.cfg").read_text()
    pairs = re.findall(r"^regex: (.*)$\n^replace: (.*)$", text, flags=re.MULTILINE)
    assert pairs, "sanitize.cfg has no 'regex:'/'replace:' pairs"
    for pattern, _ in pairs:
        re.compile(pattern)
