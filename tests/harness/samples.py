"""Sample lab code and graded suites shared by the harness tests."""

import textwrap


def graded_suite(lab: str, module: str, tests: str, docstring: str = "") -> str:
    """A graded suite for `lab` (indented like the samples here): its lab module `module` as a
    module-scoped fixture of that name, then `tests`, which use it."""
    head = f'    """{docstring}"""\n' if docstring else ""
    return (
        head
        + f"""\
    import pytest
    from harness.grading import lab_module


    @pytest.fixture(scope="module")
    def {module}():
        return lab_module("{lab}", "{module}")
"""
        + tests
    )


def one_point_tests(imports: tuple[str, ...] = (), **bodies: str) -> str:
    """A graded suite of tests `test_partA_<name>` worth one point each, in the order given, each
    with its body from `bodies` (Python statements); `imports`: modules imported besides pytest."""
    head = "".join(f"import {name}\n" for name in (*imports, "pytest"))
    return head + "".join(
        f"\n\n@pytest.mark.points(1)\ndef test_partA_{name}():\n"
        + textwrap.indent(textwrap.dedent(body).strip(), "    ")
        + "\n"
        for name, body in bodies.items()
    )


# A graded suite used by several tests: parts A and B of `lab01_demo`, module `demo`.
DEMO_TESTS = graded_suite(
    "lab01_demo",
    "demo",
    '''

    @pytest.mark.points(2)
    def test_partA_adds(demo):
        """add() adds two numbers."""
        assert demo.add(2, 3) == 5, "Lab 01 part A: add(2, 3) should be 5"


    @pytest.mark.points(3)
    def test_partB_doubles(demo):
        """double() doubles a number."""
        assert demo.double(4) == 8, f"Lab 01 part B: double(4) should be 8, got {demo.double(4)}"


    @pytest.mark.points(5)
    def test_partB_doubles_negative(demo):
        """double() works for negative numbers."""
        assert demo.double(-1) == -2


    def test_not_graded():
        """A test without points counts nowhere."""
''',
    docstring="Graded test suite for Lab 01 (harness self-test).",
)

DEMO_SOLUTION = '''
    """Lab 01 demo module (reference)."""


    def add(a: int, b: int) -> int:
        """Return a + b."""
        # BEGIN SOLUTION (part A)
        return a + b
        # END SOLUTION


    def double(x: int) -> int:
        """Return 2 * x."""
        # BEGIN SOLUTION (part B)
        return 2 * x
        # END SOLUTION
'''

DEMO_HALF_DONE = """
    def add(a, b):
        return a + b


    def double(x):
        return x + 2
"""
