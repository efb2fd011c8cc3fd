"""The package outside the checkout: the shipped configs and the command that prints their
directory (mae-ast-config-dir), library code that uses them rather than the checkout, research
drivers that say they need the checkout, and a wheel built from the repository that, installed
into a fresh virtual environment, pretrains with fairseq-hydra-train from the configs it ships,
from a directory that is not the checkout."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO, TINY_MODEL, write_corpus

from mae_ast_plugin import hydra_configs
from mae_ast_plugin.evaluation import cv
from mae_ast_plugin.experiments import runs

# What a checkout holds besides its sources (environments, runs, data, caches), left out of the
# build copy: top-level names, and caches at any depth.
NOT_SOURCES_TOP = {".git", ".venv", "build", "dist", "outputs", "data", "manifests", ".whl",
                   ".gl", "mae_ast_plugin.egg-info"}
CACHES = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".ruff_cache")


def not_sources(directory, names):
    top = NOT_SOURCES_TOP if Path(directory) == REPO else set()
    return top | set(CACHES(directory, names))


def run(cmd, cwd, env, timeout=300) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout


def test_config_dir_prints_the_packaged_configs(capsys):
    assert hydra_configs.main(["pretrain"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed.is_absolute() and printed == hydra_configs.config_dir("pretrain")
    assert printed.parent == Path(hydra_configs.__file__).parent / "config"
    # in the checkout the package's config/ is the top-level one, not a copy
    assert (printed / "mae_ast_patch.yaml").samefile(REPO / "config/pretrain/mae_ast_patch.yaml")
    assert hydra_configs.main(["--user-dir"]) == 0
    assert Path(capsys.readouterr().out.strip()) == Path(hydra_configs.__file__).resolve().parent
    with pytest.raises(ValueError, match="unknown config group 'pretraining'"):
        hydra_configs.config_dir("pretraining")


def test_config_dir_names_a_missing_config_directory(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(hydra_configs, "CONFIG_DIR", tmp_path / "config")
    assert hydra_configs.main(["finetune"]) == 1
    assert f"{tmp_path / 'config' / 'finetune'}: the package's configs are missing" in (
        capsys.readouterr().err)


def test_cross_validation_trains_from_the_packaged_recipes_in_the_callers_directory(monkeypatch):
    started = []
    monkeypatch.setattr(cv.subprocess, "run", lambda cmd, **kw: started.append((cmd, kw)))
    cv.train_fold("esc50", "/d/fold1", "/p/checkpoint.pt", "/o/fold1", ["common.seed=2"])
    ((cmd, options),) = started
    assert cmd[cmd.index("--config-dir") + 1] == str(hydra_configs.config_dir("finetune"))
    assert f"common.user_dir={hydra_configs.PACKAGE_DIR}" in cmd and "cwd" not in options


def test_research_drivers_outside_the_checkout_say_they_need_it(monkeypatch, tmp_path):
    assert runs.require_checkout("mae-ast-demo") == REPO
    monkeypatch.setattr(runs, "REPO", tmp_path)
    with pytest.raises(SystemExit, match="mae-ast-demo runs from the repository checkout"):
        runs.require_checkout("mae-ast-demo")


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_pretrains_from_its_configs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HYDRA_FULL_ERROR="1", PYTHONWARNINGS="ignore")

    # The wheel, built from a copy of the sources (the build writes build/ and egg-info).
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=not_sources, symlinks=True)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", tmp_path / "wheels", source], cwd=tmp_path, env=env)
    (wheel,) = (tmp_path / "wheels").glob("mae_ast_plugin-*.whl")

    # A fresh environment that sees this one's packages (torch, fairseq) through a .pth line;
    # the .pth files of that directory are not processed, so the editable install of
    # mae_ast_plugin (a .pth-installed finder) is invisible and only the wheel can be imported.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=tmp_path, env=env).strip())
    (site / "outer_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([python, "-m", "pip", "install", "--no-deps", "--ignore-installed", "--no-index", "-q",
         wheel], cwd=tmp_path, env=env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    imported = run([python, "-c", "import mae_ast_plugin; print(mae_ast_plugin.__file__)"],
                   cwd=work, env=env).strip()
    assert Path(imported).is_relative_to(site), imported
    config_dir = Path(run([venv / "bin" / "mae-ast-config-dir", "pretrain"], cwd=work,
                          env=env).strip())
    user_dir = Path(run([venv / "bin" / "mae-ast-config-dir", "--user-dir"], cwd=work,
                        env=env).strip())
    assert config_dir == site / "mae_ast_plugin" / "config" / "pretrain"
    assert (config_dir / "mae_ast_patch.yaml").is_file() and not config_dir.is_symlink()
    assert user_dir == site / "mae_ast_plugin"

    write_corpus(work / "corpus", {"train": 8, "valid": 2}, min_s=0.5, max_s=1.5)
    run([python, "-m", "fairseq_cli.hydra_train", "--config-dir", config_dir,
         "--config-name", "mae_ast_patch", f"common.user_dir={user_dir}", "task.data=corpus",
         "hydra.run.dir=run", "optimization.max_update=2", "dataset.max_tokens=400000",
         "dataset.num_workers=0", "common.amp=false", "common.tensorboard_logdir=null",
         *TINY_MODEL], cwd=work, env=env, timeout=600)
    checkpoint = work / "run" / "checkpoints" / "checkpoint_last.pt"
    assert checkpoint.is_file()
    log = (work / "run" / "hydra_train.log").read_text()
    assert "done training" in log and '"train_num_updates": "2"' in log, log[-3000:]
