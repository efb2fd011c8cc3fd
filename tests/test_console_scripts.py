"""Every ``mae-ast-*`` console script of setup.py: it is installed, and ``--help`` exits 0 with the
command's usage line and an example.  What the commands do is tested by the tests of their
modules (test_benchmarks, test_demo_corpus, test_local_table1, test_extract_features, ...)."""

import ast
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from conftest import REPO, console_script


def declared_commands() -> dict:
    """{console script: "module:function"} as setup.py declares them."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            specs = ast.literal_eval(node.value)["console_scripts"]
            return dict(spec.replace(" ", "").split("=") for spec in specs)
    raise AssertionError("setup.py declares no entry_points")


COMMANDS = declared_commands()


def test_every_command_follows_the_naming_and_is_installed():
    assert len(COMMANDS) >= 12
    for name, target in COMMANDS.items():
        assert name.startswith("mae-ast-") and target.startswith("mae_ast_plugin.")
        assert target.endswith(":main")
        assert Path(console_script(name)).is_file(), f"{name}: reinstall (pip install -e .)"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_usage_and_an_example(name, capsys):
    entry_point = metadata.EntryPoint(name, COMMANDS[name], "console_scripts")
    with pytest.raises(SystemExit) as exit_info:
        entry_point.load()(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: {name} ")
    assert "example" in text.lower() and f"  {name} " in text  # an indented example command


@pytest.mark.slow
def test_the_installed_script_runs():
    """The executable that pip wrote calls the module's main (one subprocess for all: each
    costs an interpreter start with torch and fairseq)."""
    proc = subprocess.run([console_script("mae-ast-predict"), "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: mae-ast-predict ")
