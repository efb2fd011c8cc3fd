"""The test tiers: tests/conftest.py fails a test that starts a Python process without the
`slow` marker, and lets other processes and marked tests through."""

import shutil
import textwrap
from pathlib import Path

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_an_unmarked_test_starting_python_fails_and_names_the_remedy(pytester):
    shutil.copy(CONFTEST, pytester.path / "conftest.py")
    shutil.copy(PYPROJECT, pytester.path / "pyproject.toml")
    pytester.makepyfile(
        test_inner=textwrap.dedent(
            """
            import subprocess
            import sys

            import pytest


            @pytest.fixture(scope="session")
            def trained():
                subprocess.run([sys.executable, "-c", "pass"], check=True)


            def test_starts_python():
                subprocess.run([sys.executable, "-c", "pass"], check=True)


            def test_through_a_fixture(trained):
                pass


            def test_other_programs_are_fine():
                subprocess.run(["true"], check=True)
            """
        )
    )
    result = pytester.runpytest_inprocess("-m", "not slow", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*test_starts_python starts *python* but is not marked slow*"])
    result.stdout.fnmatch_lines(["*test_through_a_fixture starts *but is not marked slow*"])
