"""Every user mistake named where it is made: text files from Windows tools, misspelt training
keys, precision flags and devices the machine lacks, splits too sparse for what a tool computes.
Each is an error (no traceback) naming the file and line, the option or the split, and what to
do; an unambiguous input (a byte-order mark, CRLF line ends) is simply read."""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, hydra_train
from finetune_helpers import AUTHORS_CHECKPOINT, TINY_FINETUNE, write_labelled_corpus

from mae_ast_plugin.data.labelled_dataset import LabelError, read_class_list, read_clip_labels
from mae_ast_plugin.data.manifest import ManifestError, read_manifest

CLASSES = 'index,mid,display_name\n0,/m/a,"Café ambience"\n1,/m/b,dog\n2,/m/c,siren\n'


def windows_copy(src: Path, dst: Path, encoding: str, crlf: bool) -> Path:
    """``src``'s text files re-saved as a Windows tool would: in ``encoding`` (``utf-8-sig`` is
    Excel's "CSV UTF-8", with a byte-order mark), CRLF line ends if ``crlf``."""
    shutil.copytree(src, dst)
    for path in dst.iterdir():
        if path.suffix in (".tsv", ".lbl", ".csv"):
            text = path.read_text(encoding="utf-8")
            with open(path, "w", encoding=encoding, newline="\r\n" if crlf else "\n") as handle:
                handle.write(text)
    return dst


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = write_labelled_corpus(tmp_path_factory.mktemp("labelled") / "plain", num_classes=3)
    (root / "labels.csv").write_text(CLASSES, encoding="utf-8")
    return root


def read_all(root: Path):
    classes = read_class_list(str(root / "labels.csv"))
    manifest = read_manifest(str(root / "test.tsv"))
    labels = read_clip_labels(str(root / "test.lbl"), manifest, len(classes), False)
    paths = [manifest.audio_path(i) for i in range(len(manifest))]
    return classes, manifest.root, paths, manifest.sizes.tolist(), labels.values.tolist()


def test_byte_order_mark_and_crlf_are_simply_read(labelled, tmp_path):
    """Excel's "CSV UTF-8" (a BOM before the header) with CRLF: the same classes, manifest
    rows and labels as the plain UTF-8/LF files (the BOM is not part of the header)."""
    excel = windows_copy(labelled, tmp_path / "excel", "utf-8-sig", crlf=True)
    assert (excel / "labels.csv").read_bytes().startswith(b"\xef\xbb\xbfindex,mid")
    assert read_all(excel) == read_all(labelled)
    assert read_all(excel)[0].names[0] == "Café ambience"


@pytest.mark.parametrize(
    "name, error, line",
    [("labels.csv", LabelError, 2), ("test.tsv", ManifestError, 1), ("test.lbl", LabelError, 1)],
)
def test_a_legacy_code_page_is_named_with_file_line_and_byte(labelled, tmp_path, name, error,
                                                              line):
    """A file saved in Windows-1252: an error naming the file, the line and the byte, saying
    it is not UTF-8 and how to re-save it; never UnicodeDecodeError."""
    bad = shutil.copytree(labelled, tmp_path / "cp1252")
    path = bad / name
    if name == "test.tsv":  # an accented root directory on line 1
        lines = path.read_text().splitlines()
        path.write_bytes(("/data/café\n" + "\n".join(lines[1:]) + "\n").encode("cp1252"))
    elif name == "test.lbl":
        path.write_bytes("é\n".encode("cp1252") + path.read_bytes().split(b"\n", 1)[1])
    else:
        path.write_bytes(CLASSES.encode("cp1252"))
    with pytest.raises(error) as caught:
        read_all(bad)
    message = str(caught.value)
    from mae_ast_plugin.errors import InputError

    assert isinstance(caught.value, InputError)
    assert message.startswith(f"{path}:{line}: not UTF-8 text (byte 0xe9 at byte offset ")
    assert "re-save it as UTF-8" in message and "Windows-1252" in message


def test_utf16_is_named(labelled, tmp_path):
    bad = shutil.copytree(labelled, tmp_path / "utf16")
    (bad / "labels.csv").write_text(CLASSES, encoding="utf-16")
    with pytest.raises(LabelError, match=r"labels.csv:1: UTF-16 text .*re-save it as UTF-8"):
        read_all(bad)


def test_dataset_metadata_read_by_prep_is_named(tmp_path):
    """The datasets' own metadata read by mae-ast-prepare goes through the same reader."""
    from mae_ast_plugin.prep import esc50
    from mae_ast_plugin.prep.common import PrepError

    csv_path = tmp_path / "esc50.csv"
    csv_path.write_bytes("filename,fold,target,category,esc10,src_file,take\n"
                         "1-100032-A-0.wav,1,0,dog,True,100032,A\r\n".encode("utf-8-sig"))
    rows = esc50.read_metadata(str(csv_path), str(tmp_path))
    assert [fold for _, fold, _ in rows] == [1]  # the BOM and CRLF are read
    csv_path.write_bytes("filename,fold,target,category,esc10,src_file,take\n"
                         "1-100032-A-0.wav,1,0,dog,True,caf\xe9,A\n".encode("latin-1"))
    with pytest.raises(PrepError, match=rf"{csv_path}:2: not UTF-8 text"):
        esc50.read_metadata(str(csv_path), str(tmp_path))


def test_probe_names_the_file_without_a_traceback(labelled, tmp_path, capsys):
    from mae_ast_plugin.evaluation import probe

    bad = shutil.copytree(labelled, tmp_path / "bad")
    (bad / "labels.csv").write_bytes(CLASSES.encode("cp1252"))
    with pytest.raises(SystemExit) as caught:
        probe.main([str(AUTHORS_CHECKPOINT), str(bad), "--out-dir", str(tmp_path / "out"),
                    "--cache-dir", "", "--no-progress"])
    assert str(caught.value).startswith(f"mae-ast-probe: error: {bad / 'labels.csv'}:2: not UTF-8")


# ------------------------------------------------------------------------------------------
# Splits too sparse for a linear probe


def test_probe_refuses_a_train_split_without_some_classes(labelled, tmp_path):
    """A class with clips in test but none in train could never be predicted: the probe names
    the split file, the class and what to do; one class in train is named too."""
    from mae_ast_plugin.evaluation.probe_data import ProbeError, read_task

    sparse = shutil.copytree(labelled, tmp_path / "sparse")
    lines = (sparse / "train.lbl").read_text().splitlines()
    (sparse / "train.lbl").write_text("\n".join("0" if x == "2" else x for x in lines) + "\n")
    with pytest.raises(ProbeError, match=r"valid.lbl: 1 class\(es\) with clips in valid have none "
                       r"in train: 'siren' \(index 2, \d+ clips\).*move clips of each class"):
        read_task(str(sparse), multi_label=False)
    (sparse / "train.lbl").write_text("\n".join("0" for _ in lines) + "\n")
    with pytest.raises(ProbeError, match="train.lbl: train holds clips of 1 class"):
        read_task(str(sparse), multi_label=False)


def test_cv_names_a_fold_without_its_files(tmp_path):
    from mae_ast_plugin.evaluation import cv

    (tmp_path / "data" / "fold1").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"fold 1: .*fold1 lacks labels.csv, train.tsv"):
        cv.main(["--config-name", "esc50", "--data", str(tmp_path / "data"), "--folds", "1",
                 "--pretrained", "x", "--out", str(tmp_path / "out")])


# ------------------------------------------------------------------------------------------
# Options: misspelt training keys, hardware the machine lacks


def test_misspelt_keys_are_named_with_the_closest_valid_ones():
    from omegaconf import OmegaConf

    from mae_ast_plugin.fairseq_fixes import ConfigError, check_config_keys

    cfg = OmegaConf.create({
        "task": {"_name": "mae_ast_pretraining", "max_sample_len": 5,
                 "features": {"num_mel_binz": 64}},
        "model": {"_name": "mae_ast", "mask_ration": 0.5},
        "criterion": {"_name": "mae_ast"},
    })
    with pytest.raises(ConfigError) as caught:
        check_config_keys(cfg)
    message = str(caught.value)
    assert "task.max_sample_len is not an option of task 'mae_ast_pretraining' (closest valid " \
           "keys: task.max_sample_len_s" in message
    assert "task.features.num_mel_binz" in message and "task.features.num_mel_bins" in message
    assert "model.mask_ration is not an option of model 'mae_ast' (closest valid keys: " \
           "model.mask_ratio" in message
    check_config_keys(OmegaConf.create({"task": {"_name": "mae_ast_pretraining",
                                                 "max_sample_len_s": 5}}))  # valid: no error


def test_half_precision_needs_a_gpu(caplog):
    from omegaconf import OmegaConf

    from mae_ast_plugin.fairseq_fixes import ConfigError, check_precision_flags

    for flag in ("fp16", "bf16", "memory_efficient_fp16"):
        cfg = OmegaConf.create({"common": {flag: True, "cpu": False}, "task": {}})
        with pytest.raises(ConfigError, match=rf"common.{flag}=true needs a CUDA GPU, but this "
                           rf"machine has no CUDA GPU: set common.{flag}=false"):
            check_precision_flags(cfg, cuda_available=False)
        check_precision_flags(cfg, cuda_available=True)  # fine on a GPU
        cfg.common.cpu = True
        with pytest.raises(ConfigError, match="common.cpu=true"):
            check_precision_flags(cfg, cuda_available=True)
    # the recipes' mixed precision is documented as float32 on a CPU: said, not refused
    cfg = OmegaConf.create({"common": {"amp": True}, "task": {"bf16_autocast": True}})
    with caplog.at_level("WARNING"):
        check_precision_flags(cfg, cuda_available=False)
    assert "common.amp=true has no effect" in caplog.text
    assert "task.bf16_autocast=true has no effect" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_option_refuses_cuda_without_a_gpu(capsys):
    from mae_ast_plugin.cli import device_option
    from mae_ast_plugin.evaluation import evaluate

    assert device_option("cpu") == "cpu"
    with pytest.raises(argparse.ArgumentTypeError, match="no CUDA GPU .* use --device cpu"):
        device_option("cuda:0")
    with pytest.raises(argparse.ArgumentTypeError, match="not a torch device"):
        device_option("gpu")
    with pytest.raises(SystemExit):
        evaluate.main(["ckpt.pt", "data", "--device", "cuda"])
    err = capsys.readouterr().err
    assert "mae-ast-evaluate: error: argument --device: cuda: this machine has no CUDA" in err


@pytest.mark.slow
def test_fairseq_hydra_train_names_mistakes_without_a_traceback(labelled, tmp_path):
    """Through fairseq-hydra-train, as a user runs it: a misspelt '+' key, fp16 on a CPU, and a
    labels.csv in Windows-1252 each end in one line naming the key, the flag or the file."""
    bad = shutil.copytree(labelled, tmp_path / "cp1252")
    (bad / "labels.csv").write_bytes(CLASSES.encode("cp1252"))
    runs = {
        "key": (["+model.mask_ration=0.5"], "model.mask_ration is not an option"),
        "labels": ([], f"{bad / 'labels.csv'}:2: not UTF-8 text"),
    }
    if not torch.cuda.is_available():
        runs["fp16"] = (["common.fp16=true"], "common.fp16=true needs a CUDA GPU")
    for name, (extra, expected) in runs.items():
        proc = hydra_train(
            "esc50",
            [f"task.data={bad}", f"model.pretrained_checkpoint={AUTHORS_CHECKPOINT}",
             f"hydra.run.dir={tmp_path / name}", *TINY_FINETUNE, *extra],
            config_dir="config/finetune", check=False,
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 1, output[-3000:]
        assert "Traceback" not in output, output[-3000:]
        assert "fairseq-hydra-train: error: " in output and expected in output, output[-3000:]


@pytest.mark.slow
def test_input_errors_print_one_line_outside_tools():
    """The excepthook that fairseq-hydra-train gets: an InputError is one line, status 1; any
    other exception keeps its traceback."""
    code = (
        "import sys; from mae_ast_plugin.errors import InputError\n"
        "from hydra.core.hydra_config import HydraConfig\n"
        "HydraConfig.initialized = staticmethod(lambda: True)\n"
        "from mae_ast_plugin.fairseq_fixes import install_input_error_report\n"
        "install_input_error_report()\n"
        "raise InputError('x.tsv:3: bad line') if sys.argv[1] == 'input' else KeyError('bug')\n"
    )
    for kind, expected in (("input", "error: x.tsv:3: bad line"), ("bug", "Traceback")):
        proc = subprocess.run([sys.executable, "-c", code, kind], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 1 and expected in proc.stderr, proc.stderr
        assert ("Traceback" in proc.stderr) == (kind == "bug")
