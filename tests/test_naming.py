"""Names with one meaning: a class name is defined once in the package (a network's plain config
is ``XConfig`` in ``modules``, the fairseq config of the registered model ``XModel`` is
``XModelConfig`` in ``models``); fine-tuning is spelled ``finetune`` in identifiers, paths and
options and "fine-tuning" in prose; code and tests name no issue numbers (the code says why, not
which ticket asked)."""

import ast
import re
from collections import defaultdict

from conftest import REPO

PACKAGE = REPO / "mae_ast_plugin"
# hf_template/ is the code of exported Hugging Face folders, a namespace of its own (transformers
# looks its classes up by name), never imported by the package
SOURCES = [
    p
    for p in sorted(PACKAGE.rglob("*.py"))
    if not {"config", "hf_template"} & set(p.relative_to(PACKAGE).parts)
]
TESTS = sorted((REPO / "tests").glob("*.py"))


def test_every_class_name_is_defined_once():
    where = defaultdict(list)
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(str(path.relative_to(REPO)))
    twice = {name: files for name, files in where.items() if len(files) > 1}
    assert not twice, f"one class name, one class: {twice}"


def test_the_fairseq_configs_are_named_after_the_models_they_build():
    from fairseq.models import MODEL_DATACLASS_REGISTRY, MODEL_REGISTRY

    import mae_ast_plugin  # noqa: F401

    for name in ("mae_ast", "ssast", "mae_ast_classifier"):
        model, config = MODEL_REGISTRY[name], MODEL_DATACLASS_REGISTRY[name]
        assert config.__name__ in (f"{model.__name__}Config", f"{model.__name__}ModelConfig")


def test_no_issue_numbers_in_code_or_tests():
    pattern = re.compile(r"\bissue\s*#?\d+|\bcase\s+\d+\s+of\s+issue", re.IGNORECASE)
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in [*SOURCES, *TESTS, *sorted((REPO / "config").rglob("*.yaml"))]
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if pattern.search(line) and path.name != "test_naming.py"]
    assert not found, "say why in the code, not which issue asked:\n" + "\n".join(found)


def prose(text: str) -> str:
    """Markdown text without fenced code blocks and `code spans` (commands, paths, options)."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def test_fine_tuning_is_spelled_one_way_in_code_and_one_way_in_prose():
    identifiers = re.compile(r"fine_tun|[Ff]ineTun")
    wrong_ids = [f"{path.relative_to(REPO)}:{number}"
                 for path in [*SOURCES, *TESTS, *sorted((REPO / "config").rglob("*.yaml"))]
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if identifiers.search(line) and path.name != "test_naming.py"]
    assert not wrong_ids, f"identifiers spell it finetune: {wrong_ids}"
    # prose: "fine-tuning", never "finetuning" or "fine tuning" outside code
    wrong_prose = re.compile(r"(?<![\w/.=+-])finetun\w*(?![\w/]|\.\w)|\bfine tun", re.IGNORECASE)
    documents = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    found = [f"{path.relative_to(REPO)}: {match.group(0)!r}"
             for path in documents for match in wrong_prose.finditer(prose(path.read_text()))]
    assert not found, f"prose spells it fine-tuning: {found}"
