"""Helpers shared by the fine-tuning tests: labelled corpora in the recipes' layouts, and one
tiny pretraining checkpoint and one fine-tuning run per recipe, each made once per test session
(cached here, so test modules share them) and run two at a time."""

import functools
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import REPO, TINY_MODEL, hydra_train, write_corpus

AUTHORS_CHECKPOINT = REPO / "tests/fixtures/authors-mae-ast/authors_patch_checkpoint.pt"

# Small enough for a CPU: a few clips, 2 updates, fp32, no loader workers.
TINY_FINETUNE = [
    "optimization.max_update=2",
    "optimization.update_freq=[1]",
    "dataset.batch_size=4",
    "dataset.batch_size_valid=4",
    "dataset.num_workers=0",
    "common.amp=false",
    "common.log_interval=1",
]


def write_labelled_split(root: Path, split: str, count: int, num_classes: int, multi_label: bool):
    """{split}.tsv (from write_corpus) with a parallel {split}.lbl: clip i is class i mod C, or
    for multi-label data classes {i mod C, (3i + 1) mod C}, and every fourth clip unlabelled."""
    lines = []
    for i in range(count):
        if not multi_label:
            lines.append(str(i % num_classes))
        elif i % 4 == 3:
            lines.append("")
        else:
            lines.append(f"{i % num_classes},{(3 * i + 1) % num_classes}")
    (root / f"{split}.lbl").write_text("\n".join(lines) + "\n")


def write_class_list(root: Path, num_classes: int):
    rows = ["index,mid,display_name"] + [
        f'{i},/m/c{i},"class {i}, a test class"' for i in range(num_classes)
    ]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def write_labelled_corpus(root: Path, num_classes: int, multi_label=False, splits=None, seed=0):
    splits = splits or {"train": 6, "valid": 4, "test": 4}
    root.mkdir(parents=True, exist_ok=True)
    write_corpus(root, splits, seed=seed, min_s=0.5, max_s=1.2)
    for split, count in splits.items():
        write_labelled_split(root, split, count, num_classes, multi_label)
    write_class_list(root, num_classes)
    return root


# recipe -> (classes, multi-label, fold directories or None, evaluation split)
RECIPES = {
    "esc50": (50, False, ("fold1", "fold2"), "test"),
    "speechcommands_v2": (35, False, None, "test"),
    "speechcommands_v1": (12, False, None, "test"),
    "voxceleb1_sid": (1251, False, None, "test"),
    "iemocap_er": (4, False, ("fold1",), "test"),
    "audioset_20k": (527, True, None, "eval"),
}


@functools.cache
def recipe_data(base: Path, recipe: str) -> Path:
    """The data directory a recipe expects (the root holding fold{k}/ for CV recipes)."""
    num_classes, multi_label, folds, eval_split = RECIPES[recipe]
    splits = {"train": 6, "valid": 4, eval_split: 4}
    root = base / "data" / recipe
    for seed, directory in enumerate(folds or ("",)):
        write_labelled_corpus(root / directory, num_classes, multi_label, splits, seed=seed)
    return root


@functools.cache
def pretrained_checkpoint(base: Path) -> Path:
    """The tiny MAE-AST patch model, pretrained 3 updates with
    config/pretrain/mae_ast_patch.yaml."""
    corpus = write_corpus(base / "pretrain_corpus", {"train": 8, "valid": 2}, min_s=0.5, max_s=1.5)
    run_dir = base / "pretrain"
    hydra_train(
        "mae_ast_patch",
        [
            f"task.data={corpus}",
            f"hydra.run.dir={run_dir}",
            "optimization.max_update=3",
            "dataset.max_tokens=400000",
            "dataset.num_workers=0",
            "dataset.required_batch_size_multiple=1",
            "common.amp=false",
            *TINY_MODEL,
        ],
    )
    return run_dir / "checkpoints" / "checkpoint_last.pt"


def finetune(recipe: str, data: Path, pretrained, run_dir: Path, extra=()):
    """Fine-tune one recipe for 2 updates; returns the checkpoint directory."""
    hydra_train(
        recipe,
        [
            f"task.data={data}",
            f"model.pretrained_checkpoint={pretrained}",
            f"hydra.run.dir={run_dir}",
            *TINY_FINETUNE,
            *extra,
        ],
        config_dir="config/finetune",
    )
    return run_dir / "checkpoints"


# Extra runs beside one per recipe: the authors' checkpoint with layer-wise lr decay (which needs
# fairseq's composite optimizer), and a frozen encoder trained from scratch.
LAYER_DECAY = ["+optim=layer_decay", "model.layer_decay=0.5"]
EXTRA_RUNS = {
    "authors_layer_decay": ("speechcommands_v1", AUTHORS_CHECKPOINT, LAYER_DECAY),
    "scratch_frozen": (
        "iemocap_er",
        "",
        ["+init=scratch", "model.freeze_encoder=true"]
        + [o.replace("model.", "model.encoder.") for o in TINY_MODEL if "decoder" not in o],
    ),
}


@functools.cache
def finetuned_runs(base: Path) -> dict:
    """Every recipe (first fold of CV recipes) and the extra runs, two at a time; name ->
    checkpoint directory."""
    pretrained = pretrained_checkpoint(base)
    jobs = {}
    for recipe, (_, _, folds, _) in RECIPES.items():
        data = recipe_data(base, recipe) / (folds[0] if folds else "")
        jobs[recipe] = (recipe, data, pretrained, [])
    for name, (recipe, checkpoint, extra) in EXTRA_RUNS.items():
        folds = RECIPES[recipe][2]
        data = recipe_data(base, recipe) / (folds[0] if folds else "")
        jobs[name] = (recipe, data, checkpoint, extra)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(finetune, recipe, data, checkpoint, base / "runs" / name, extra)
            for name, (recipe, data, checkpoint, extra) in jobs.items()
        }
        # a failed run fails the tests that use it, not every test
        return {name: future.exception() or future.result() for name, future in futures.items()}


def checkpoint_of(runs: dict, name: str) -> Path:
    run = runs[name]
    if isinstance(run, BaseException):
        raise run
    return run / "checkpoint_best.pt"


def load_script(name: str):
    """A module of scripts/ (they are not a package)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
