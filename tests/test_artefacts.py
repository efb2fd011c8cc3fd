"""Every model file the plugin reads or writes, at every entry point that takes a model: each cell
of the README's "Which model goes where" table either works or refuses with an error (no
traceback) that names what was given and what to give instead, never a false "does not exist".

Rows: our pretraining checkpoints (MAE-AST patch and frame, SSAST), the authors' checkpoints, a
file we exported in the authors' format, classifiers fine-tuned from ours and from the authors',
exported folders without and with a classifier head.  Columns: the library's loaders and every
``mae-ast-*`` command that takes a model, called in-process through their ``main(argv)``."""

import contextlib
import functools
import io
import json
import re

import numpy as np
import pytest
import torch
from conftest import REPO
from finetune_helpers import (
    AUTHORS_CHECKPOINT,
    finetune,
    pretrained_checkpoint,
    recipe_data,
    write_labelled_corpus,
)

from mae_ast_plugin import model_io
from mae_ast_plugin.model_io import ArtefactError

pytestmark = pytest.mark.slow  # the rows are made by fairseq-hydra-train runs

FIXTURES = REPO / "tests" / "fixtures" / "authors-mae-ast"
ROWS = (
    "ours_patch", "ours_frame", "ours_ssast", "authors_patch", "authors_frame",
    "authors_exported", "classifier_ours", "classifier_authors", "encoder_folder",
    "classifier_folder",
)
COLUMNS = (
    "load_encoder", "extract_features", "probe", "predict", "evaluate", "plot_reconstruction",
    "pretrained_checkpoint", "export_safetensors", "export_authors",
)
ENCODERS = ("ours_patch", "ours_frame", "ours_ssast", "authors_patch", "authors_frame",
            "authors_exported", "encoder_folder")
CLASSIFIERS = ("classifier_ours", "classifier_authors")
# The artefact a refusal must name as the one to give instead (its recorded source).
SOURCE = {"classifier_ours": "ours_patch", "classifier_authors": "authors_patch",
          "encoder_folder": "ours_patch", "classifier_folder": "classifier_ours"}

NO_HEAD = r"without a classifier head: it has no classes to predict or score; give a " \
    r"fine-tuned checkpoint"
REFUSALS = {
    **{(row, column): NO_HEAD for row in ENCODERS for column in ("predict", "evaluate")},
    ("classifier_folder", "evaluate"): r"exported folder .* keeps the class list but not the "
    r"fine-tuning task .*; give the fine-tuned \.pt: {source} \(its config\.json provenance\)",
    **{(row, "plot_reconstruction"): r"fine-tuning dropped the decoder that reconstructs masked "
       r"tokens; give the pretraining checkpoint it was fine-tuned from: {source}"
       for row in CLASSIFIERS},
    **{(row, "plot_reconstruction"): r"exporting keeps the encoder only, not the decoder .*; "
       r"give the \.pt it was exported from: {source}"
       for row in ("encoder_folder", "classifier_folder")},
    ("ours_ssast", "export_authors"): r"model\._name=ssast is the SSAST baseline",
    **{(row, "export_authors"): r"model\._name=mae_ast_classifier is a fine-tuned classifier "
       r".*; export the pretraining checkpoint it was fine-tuned from: {source}"
       for row in CLASSIFIERS},
    **{(row, "export_authors"): r"exported folder .*their format also holds the decoder, "
       r"which an exported folder does not keep: give the \.pt it was exported from: {source}"
       for row in ("encoder_folder", "classifier_folder")},
}


def run_main(main, argv):
    """(exit status, stdout + stderr) of a command's ``main(argv)`` run in this process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main([str(arg) for arg in argv])
        except SystemExit as stop:
            if isinstance(stop.code, str):
                print(stop.code, file=out)
                code = 1
            else:
                code = stop.code
    return code or 0, out.getvalue()


def clip(samples=12000, seed=0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(samples)
    return torch.from_numpy(wave.astype(np.float32))


@pytest.fixture(scope="module")
def made(base, tiny_pretrained, tmp_path_factory):
    """``made(row)``: the artefact of a row, made on first use (training runs, exports)."""
    root = tmp_path_factory.mktemp("artefacts")
    esc50 = recipe_data(base, "esc50") / "fold1"

    def export(source, out, fmt, *extra):
        from mae_ast_plugin.export import main

        code, text = run_main(main, [source, out, "--format", fmt, *extra])
        assert code == 0, text
        return out

    makers = {
        "ours_patch": lambda: pretrained_checkpoint(base),
        "ours_frame": lambda: tiny_pretrained("mae_ast_frame"),
        "ours_ssast": lambda: tiny_pretrained("ssast_patch"),
        "authors_patch": lambda: FIXTURES / "authors_patch_checkpoint.pt",
        "authors_frame": lambda: FIXTURES / "authors_frame_checkpoint.pt",
        "authors_exported": lambda: export(get("ours_patch"), root / "authors_format.pt",
                                           "authors", "--max-token-length", "2000"),
        "classifier_ours": lambda: finetune(
            "esc50", esc50, get("ours_patch"), root / "ft_ours") / "checkpoint_best.pt",
        "classifier_authors": lambda: finetune(
            "esc50", esc50, AUTHORS_CHECKPOINT, root / "ft_authors") / "checkpoint_best.pt",
        "encoder_folder": lambda: export(get("ours_patch"), root / "encoder", "safetensors"),
        "classifier_folder": lambda: export(get("classifier_ours"), root / "classifier",
                                            "safetensors"),
    }

    @functools.cache
    def get(row):
        return makers[row]()

    return get


@pytest.fixture(scope="module")
def data(base, tmp_path_factory):
    """The inputs of the commands: a 3-class probe task, the ESC-50-shaped fine-tuning data
    the classifiers were trained on, and one of its clips."""
    probe_task = write_labelled_corpus(tmp_path_factory.mktemp("probe_task"), 3,
                                       splits={"train": 9, "valid": 6, "test": 6})
    esc50 = recipe_data(base, "esc50") / "fold1"
    return {"probe": probe_task, "esc50": esc50, "wav": sorted((esc50 / "audio").glob("test_*"))[0]}


def features_of(encoder):
    return encoder.extract_features([clip(12000, 1), clip(9000, 2)], 16000)


def same_encoder(path_a, path_b):
    a = features_of(model_io.load_encoder(path_a))
    b = features_of(model_io.load_encoder(path_b))
    assert torch.equal(a.padding_mask, b.padding_mask)
    assert torch.allclose(a.last_hidden_state, b.last_hidden_state, atol=1e-5)


def call(column, path, data, tmp_path):
    """Run entry point ``column`` on ``path``: (exit status, output); raises AssertionError
    when it ran but did not do its work."""
    if column == "load_encoder":
        try:
            encoder = model_io.load_encoder(path)
        except ArtefactError as err:
            return 2, str(err)
        out = features_of(encoder)
        assert out.last_hidden_state.shape[-1] == encoder.embed_dim
        assert torch.isfinite(out.last_hidden_state).all()
        return 0, ""
    if column == "pretrained_checkpoint":
        from mae_ast_plugin.features import FbankConfig
        from mae_ast_plugin.models.mae_ast_classifier import (
            MaeAstClassifier,
            MaeAstClassifierConfig,
        )

        config = MaeAstClassifierConfig(pretrained_checkpoint=str(path))
        try:
            pretrained_cfg, source = MaeAstClassifier.pretrained_config(config, FbankConfig())
            encoder = MaeAstClassifier._build_encoder(
                config, pretrained_cfg, FbankConfig(), source
            ).eval()
        except ArtefactError as err:
            return 2, str(err)
        assert pretrained_cfg["checkpoint"] == str(path)
        reference = model_io.load_encoder(path).model
        fbank = torch.randn(2, 64, 128)
        with torch.no_grad():
            ours = encoder(fbank=fbank, mask=False)["x"]
            expected = reference(fbank=fbank, mask=False)["x"]
        assert torch.allclose(ours, expected, atol=1e-5)
        return 0, ""
    if column == "extract_features":
        from mae_ast_plugin.tools.extract_features import main

        code, text = run_main(main, [path, data["probe"] / "test.tsv", tmp_path / "feats",
                                     "--device", "cpu"])
        if code == 0:
            assert len((tmp_path / "feats" / "index.tsv").read_text().splitlines()) == 7
        return code, text
    if column == "probe":
        from mae_ast_plugin.evaluation.probe import main

        code, text = run_main(main, [path, data["probe"], "--out-dir", tmp_path / "probe",
                                     "--cache-dir", "", "--C-grid", "1", "--bootstrap", "2",
                                     "--no-progress"])
        if code == 0:
            assert json.loads((tmp_path / "probe" / "probe.json").read_text())["layers"]
        return code, text
    if column == "predict":
        from mae_ast_plugin.tools.predict import main

        code, text = run_main(main, [path, data["wav"], "--top-k", "2", "--device", "cpu"])
        if code == 0:
            assert text.splitlines()[0] == str(data["wav"]) and len(text.splitlines()) == 3
        return code, text
    if column == "evaluate":
        from mae_ast_plugin.evaluation.evaluate import main

        metrics = tmp_path / "metrics.json"
        code, text = run_main(main, [path, data["esc50"], "--split", "test", "--out", metrics,
                                     "--num-workers", "0", "--device", "cpu"])
        if code == 0:
            assert json.loads(metrics.read_text())["num_clips"] == 4
        return code, text
    if column == "plot_reconstruction":
        from mae_ast_plugin.tools.plot_reconstruction import main

        png = tmp_path / "recon.png"
        code, text = run_main(main, [path, data["wav"], "--out", png])
        if code == 0:
            assert png.read_bytes().startswith(b"\x89PNG")
        return code, text
    if column in ("export_safetensors", "export_authors"):
        from mae_ast_plugin.export import main

        fmt = column.split("_")[1]
        out = tmp_path / ("exported.pt" if fmt == "authors" else "exported")
        code, text = run_main(main, [path, out, "--format", fmt, "--max-token-length", "2000"])
        if code == 0:
            same_encoder(path, out)
        else:
            assert not out.exists()
        return code, text
    raise ValueError(column)


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("row", ROWS)
def test_every_artefact_at_every_entry_point(row, column, made, data, tmp_path):
    path = made(row)
    code, text = call(column, path, data, tmp_path)
    refusal = REFUSALS.get((row, column))
    if refusal is None:
        assert code == 0, text
        return
    assert code != 0, f"{row} at {column} should be refused"
    assert "Traceback" not in text and "does not exist" not in text, text
    source = re.escape(str(made(SOURCE[row]))) if row in SOURCE else ""
    assert re.search(re.escape(str(path)) + r" is ", text), text  # names what was given
    assert re.search(refusal.format(source=source), text), text


def test_kinds_and_sources_are_recognised(made):
    kinds = {
        "ours_patch": "pretraining", "ours_ssast": "pretraining", "authors_patch": "authors",
        "authors_exported": "authors", "classifier_ours": "classifier",
        "classifier_authors": "classifier", "encoder_folder": "encoder_folder",
        "classifier_folder": "classifier_folder",
    }
    for row, kind in kinds.items():
        artefact = model_io.identify(made(row))
        assert artefact.kind == kind, row
        expected = str(made(SOURCE[row])) if row in SOURCE else None
        assert artefact.source == expected, row
    assert model_io.identify(made("ours_ssast")).model_type == "ssast"


def test_a_folder_exported_again_keeps_its_source(made, tmp_path):
    from mae_ast_plugin.export import main

    again = tmp_path / "again"
    assert run_main(main, [made("encoder_folder"), again, "--format", "safetensors"])[0] == 0
    config = json.loads((again / "config.json").read_text())
    assert config["provenance"]["source_folder"] == str(made("encoder_folder"))
    assert model_io.identify(again).source == str(made("ours_patch"))
    same_encoder(made("encoder_folder"), again)


@pytest.mark.parametrize("row", ["encoder_folder", "classifier_ours"])
def test_finetune_starts_from_a_folder_or_a_finetuned_checkpoint(row, made, data, tmp_path):
    """fairseq-hydra-train with model.pretrained_checkpoint=ROW trains, records ROW as its
    encoder's source, and the run's checkpoint evaluates."""
    import torch as th

    from mae_ast_plugin.evaluation.evaluate import main as evaluate

    source = made(row)
    run = finetune("esc50", data["esc50"], source, tmp_path / "run") / "checkpoint_best.pt"
    state = th.load(run, map_location="cpu", weights_only=True)
    assert state["cfg"]["model"]["pretrained_cfg"]["checkpoint"] == str(source)
    assert state["cfg"]["model"]["pretrained_cfg"]["model"]["encoder_layers"] == 2
    code, text = run_main(evaluate, [run, data["esc50"], "--out", tmp_path / "m.json",
                                     "--num-workers", "0", "--device", "cpu"])
    assert code == 0, text


NOT_MODELS = {
    # a run's checkpoint directory: name the files to give
    "run_dir": (lambda made, tmp: made("classifier_ours").parent,
                r"is a directory without config\.json, not a folder written by mae-ast-export "
                r"--format safetensors; it holds checkpoint_best\.pt, checkpoint_last\.pt.*: give "
                r"one of them"),
    "weights_file": (lambda made, tmp: made("encoder_folder") / "model.safetensors",
                     r"is a safetensors weights file: give the folder that holds it"),
    "audio_file": (lambda made, tmp: _wav(tmp), r"is not a PyTorch checkpoint"),
    # an exported folder copied without its config.json
    "weights_only_folder": (lambda made, tmp: _weights_only(made, tmp),
                            r"is a directory without config\.json.*it has model\.safetensors: "
                            r"copy the exported folder with its config\.json"),
    "missing": (lambda made, tmp: tmp / "no_such_model.pt", r"no_such_model\.pt does not exist"),
}


def _weights_only(made, tmp):
    import shutil

    folder = tmp / "copied"
    folder.mkdir()
    shutil.copy(made("encoder_folder") / "model.safetensors", folder)
    return folder


def _wav(tmp):
    import soundfile

    path = tmp / "a.wav"
    soundfile.write(path, clip().numpy(), 16000)
    return path


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("case", sorted(NOT_MODELS))
def test_paths_that_hold_no_model_are_named(case, column, made, data, tmp_path):
    make, message = NOT_MODELS[case]
    path = make(made, tmp_path)
    code, text = call(column, path, data, tmp_path)
    assert code != 0 and "Traceback" not in text
    assert re.search(message, text), text
    if case != "missing":
        assert "does not exist" not in text


def test_cv_checks_the_pretrained_model_before_training(made, data, tmp_path):
    from mae_ast_plugin.evaluation.cv import main

    run_dir = made("classifier_ours").parent
    code, text = run_main(main, ["--config-name", "esc50", "--data", data["esc50"].parent,
                                 "--folds", "1", "--pretrained", run_dir,
                                 "--out", tmp_path / "cv"])
    assert code != 0 and "--pretrained" in text and "give one of them" in text, text
    assert not (tmp_path / "cv").exists()


def test_readme_table_lists_every_cell():
    """The README's table says what the tests check: 'yes' where a cell works, a refusal
    otherwise."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("| model given \\ entry point"):].split("\n\n")[0].splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")][1:]
    assert len(header) == len(COLUMNS)
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]
    assert len(rows) == len(ROWS)
    for row, cells in zip(ROWS, rows, strict=True):
        for column, cell in zip(COLUMNS, cells[1:], strict=True):
            works = (row, column) not in REFUSALS
            assert (cell == "yes") == works, (row, column, cell)
