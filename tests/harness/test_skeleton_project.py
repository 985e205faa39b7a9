"""The skeleton generator on project labs (dbt): SQL and YAML blocks become stubs, data is copied."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from harness.grading import skeleton

SQL = textwrap.dedent(
    """\
    -- One row per flight.
    -- BEGIN SOLUTION (part C)
    select icao24, min(seen_at) as first_seen
    from {{ ref('stg_processed_flights') }}
    group by icao24
    -- END SOLUTION
    """
)
YAML = textwrap.dedent(
    """\
    # The raw tables.
    sources:
      - name: opensky
        # BEGIN SOLUTION (part A)
        tables:
          - name: processed_flights
        # END SOLUTION
    """
)


def make_lab(root: Path) -> Path:
    lab = root / "lab07_dbt"
    (lab / "models").mkdir(parents=True)
    (lab / "seeds").mkdir()
    (lab / "tests").mkdir()
    (lab / "models" / "fct_flights.sql").write_text(SQL)
    (lab / "models" / "_sources.yml").write_text(YAML)
    (lab / "seeds" / "blocks.csv").write_text("first,last,country\n004000,0043ff,Zimbabwe\n")
    (lab / "tests" / "ignored.sql").write_text("select 1\n")
    return lab


def test_sql_block_becomes_a_jinja_error_that_names_the_part(tmp_path: Path) -> None:
    """The stub keeps the file's comment, drops the answer and fails only when dbt runs it."""
    text = skeleton.render_project_file(SQL, "lab07_dbt", "models/fct_flights.sql")
    assert "ref('stg_processed_flights')" not in text and "min(seen_at)" not in text
    assert "-- One row per flight." in text
    assert "{% if execute %}{{ exceptions.raise_compiler_error(" in text
    assert "Lab 07, part C: your part of models/fct_flights.sql goes here" in text
    assert skeleton.is_pristine(text) is True
    assert skeleton.is_pristine(text.replace("-- One row", "-- Two rows")) is False


def test_yaml_block_becomes_a_comment_and_stays_valid_yaml() -> None:
    text = skeleton.render_project_file(YAML, "lab07_dbt", "models/_sources.yml")
    assert "processed_flights" not in text
    assert "# Lab 07, part A: your part of models/_sources.yml goes here" in text
    assert yaml.safe_load(text) == {"sources": [{"name": "opensky"}]}


def test_yaml_block_that_breaks_the_document_is_a_marker_error() -> None:
    """Markers inside a flow sequence leave invalid YAML: refused, naming the fix."""
    source = "key: [\n# BEGIN SOLUTION\n1]\n# END SOLUTION\n"
    with pytest.raises(skeleton.MarkerError, match="around whole entries"):
        skeleton.render_project_file(source, "lab07_dbt", "x.yml")


def test_project_files_are_generated_and_data_copied(tmp_path: Path) -> None:
    """SQL/YAML/CSV under the lab (not tests/) get a student copy, keeping their folders."""
    make_lab(tmp_path / "solutions")
    written = skeleton.write_tree(tmp_path / "solutions", tmp_path / "labs")
    names = sorted(p.relative_to(tmp_path / "labs").as_posix() for p in written)
    assert names == [
        "lab07_dbt/models/_sources.yml",
        "lab07_dbt/models/fct_flights.sql",
        "lab07_dbt/seeds/blocks.csv",
    ]
    csv = (tmp_path / "labs" / "lab07_dbt" / "seeds" / "blocks.csv").read_text()
    assert csv == "first,last,country\n004000,0043ff,Zimbabwe\n"
    assert skeleton.check(tmp_path / "solutions", tmp_path / "labs") == 0


def test_unpaired_sql_marker_is_reported_with_its_line() -> None:
    with pytest.raises(skeleton.MarkerError, match=r"x\.sql:2: BEGIN SOLUTION is never closed"):
        skeleton.render_project_file("select 1\n-- BEGIN SOLUTION\n", "lab07_dbt", "x.sql", "x.sql")
