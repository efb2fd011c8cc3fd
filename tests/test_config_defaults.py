"""One source of defaults: the dataclasses of the tasks, models and criteria (and fairseq's own)
hold the defaults, the paper's values for ours; a yaml file of config/ lists only what differs
from them; the README's table of the paper's pretraining settings is what the shipped config
runs."""

import enum
import functools
import re
from pathlib import Path

import pytest
from conftest import REPO
from omegaconf import OmegaConf

CONFIG = REPO / "config"
# Each yaml file is composed with the configs of one family: its top directory, and for the
# Table 1 miniature's overlays the family they are added to.
FAMILIES = {"pretrain": ["pretrain", "local/table1/pretrain.yaml"],
            "finetune": ["finetune", "local/table1/finetune.yaml"]}
REGISTRY_SECTIONS = ("task", "model", "criterion", "optimizer", "lr_scheduler")


def family_files(family: str) -> list[Path]:
    files = []
    for entry in FAMILIES[family]:
        path = CONFIG / entry
        files += sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
    return files


def leaves(node, prefix=()):
    """(key path, value) of every non-dict value of a nested dict."""
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def raw(path: Path) -> dict:
    """A yaml file as written (interpolations kept), without its defaults list and hydra's own
    section (hydra's defaults are not a dataclass of ours or fairseq's)."""
    content = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    content.pop("defaults", None)
    content.pop("hydra", None)
    return content


@functools.cache
def section_defaults(section: str, name: str | None):
    """The defaults of a config section as a plain dict: fairseq's FairseqConfig for its fixed
    sections, the registered dataclass named ``name`` for tasks, models, criteria, optimizers
    and lr schedulers; None when unknown."""
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.models import MODEL_DATACLASS_REGISTRY
    from fairseq.registry import REGISTRIES
    from fairseq.tasks import TASK_DATACLASS_REGISTRY

    import mae_ast_plugin  # noqa: F401  (registers our dataclasses)

    if section in REGISTRY_SECTIONS:
        registry = {"task": TASK_DATACLASS_REGISTRY, "model": MODEL_DATACLASS_REGISTRY}.get(
            section) or REGISTRIES[section]["dataclass_registry"]
        dataclass = registry.get(name)
        return None if dataclass is None else OmegaConf.to_container(
            OmegaConf.structured(dataclass), resolve=False)
    fields = OmegaConf.to_container(OmegaConf.structured(FairseqConfig), resolve=False)
    return fields.get(section)


def lookup(tree, path):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return KeyError
        tree = tree[key]
    return tree


def same(a, b) -> bool:
    """Equal as yaml values: choices (fairseq's ChoiceEnum) by their text, 10 == 10.0."""
    a, b = (x.value if isinstance(x, enum.Enum) else x for x in (a, b))
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def restated_defaults(family: str) -> list[str]:
    """Every ``file: section.key = value`` of the family's yaml files that restates a default
    for nothing: its value is the default of its section's dataclass (of every dataclass the
    section may name in the family that has the key: an overlay such as arch/ssast.yaml changes
    model._name under the values of the config it is added to), and

    * in a primary config (the family's top directory), the section is one of fairseq's fixed
      ones (common, dataset, ...): hydra knows their schema while composing, so a command-line
      override of an unlisted key works.  The task, model, criterion, optimizer and
      lr_scheduler sections are plain dicts to hydra (fairseq adds their dataclass defaults
      after composing), so a primary config lists the keys users override;
    * in an overlay, no other config of the family sets the key otherwise (the overlay would
      restore the default) and, in those five sections, a primary config lists the key (an
      overlay may list a key to make it overridable, as init/scratch.yaml does for
      model.encoder)."""
    files = {path: raw(path) for path in family_files(family)}
    names = {section: set() for section in REGISTRY_SECTIONS}
    for content in files.values():
        for section in REGISTRY_SECTIONS:
            if isinstance(content.get(section), dict) and "_name" in content[section]:
                names[section].add(content[section]["_name"])
    values = {}  # (section, *key) -> {repr of value: value} over the family
    in_primary = set()
    for path, content in files.items():
        for key, value in leaves(content):
            values.setdefault(key, {})[repr(value)] = value
            if path.parent == CONFIG / family:
                in_primary.add(key)
    found = []
    for path, content in files.items():
        primary = path.parent == CONFIG / family
        for key, value in leaves(content):
            section = key[0]
            if len(key) < 2 or key[-1] == "_name":
                continue
            registry = section in REGISTRY_SECTIONS
            if primary and registry:
                continue
            if not primary and (len(values[key]) > 1 or registry and key not in in_primary):
                continue
            candidates = sorted(names.get(section) or {None})
            defaults = [section_defaults(section, name) for name in candidates]
            if any(d is None for d in defaults):
                continue
            # a dataclass without the key (fairseq's composite optimizer, which layer_decay.yaml
            # puts in place of the whole section) takes nothing from this line
            having = [d for d in defaults if lookup(d, key[1:]) is not KeyError]
            if having and all(same(value, lookup(d, key[1:])) for d in having):
                found.append(f"{path.relative_to(CONFIG)}: {'.'.join(key)} = {value!r}")
    return found


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_yaml_files_list_only_what_differs_from_the_dataclasses(family):
    restated = restated_defaults(family)
    assert not restated, (
        "these yaml lines restate their dataclass's default (the one source of defaults): "
        "remove them, or change the dataclass if the default is wrong:\n" + "\n".join(restated))


def test_the_pretraining_config_lists_its_dataclasses_defaults_and_nothing_else():
    """mae_ast_patch.yaml, the paper's configuration, lists every field of its task, model and
    loss (so that ``model.encoder_layers=12`` overrides without hydra's ``+``) and each value
    is its dataclass's default: the paper's values, written twice and proven equal here."""
    content = raw(CONFIG / "pretrain" / "mae_ast_patch.yaml")
    for section in ("task", "model", "criterion"):
        defaults = section_defaults(section, content[section]["_name"])
        listed = {key: value for key, value in leaves(content[section]) if key[-1] != "_name"}
        wanted = {key: value for key, value in leaves(defaults) if key[-1] != "_name"
                  # an interpolation (${common.seed}) is fairseq's link, not a value to state
                  and not (isinstance(value, str) and value.startswith("${"))}
        missing = sorted(".".join(key) for key in wanted.keys() - listed.keys())
        unknown = sorted(".".join(key) for key in listed.keys() - wanted.keys())
        assert not missing, f"mae_ast_patch.yaml: {section} lacks {missing} (add the defaults)"
        assert not unknown, f"mae_ast_patch.yaml: {section} has {unknown}, not in its dataclass"
        differ = [f"{section}.{'.'.join(key)}: yaml {value!r}, dataclass {wanted[key]!r}"
                  for key, value in listed.items() if not same(value, wanted[key])]
        assert not differ, "mae_ast_patch.yaml disagrees with the dataclasses:\n" + "\n".join(
            differ)


def readme_settings() -> list[tuple[str, object]]:
    """(option, value) of each row of the README's table of the paper's pretraining settings."""
    text = (REPO / "README.md").read_text()
    header = "| setting | paper's value | option |"
    assert header in text, "README: the table of the paper's settings is missing"
    rows = []
    for line in text.split(header, 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        value, option = (re.fullmatch(r"`(.*)`", cell).group(1) for cell in cells[1:3])
        rows.append((option, OmegaConf.create({"v": OmegaConf.create(f"v: {value}").v}).v))
    return rows


def test_readme_table_is_what_mae_ast_patch_runs_and_what_the_dataclasses_hold():
    from mae_ast_plugin.hydra_configs import compose

    rows = readme_settings()
    assert len(rows) >= 25
    cfg = compose("pretrain", "mae_ast_patch", [
        "task.data=/data", "checkpoint.save_dir=/run", "common.tensorboard_logdir=null"])
    names = {section: cfg[section]._name for section in REGISTRY_SECTIONS}
    for option, value in rows:
        composed = OmegaConf.select(cfg, option)
        if isinstance(composed, (list, dict)) or OmegaConf.is_config(composed):
            composed = OmegaConf.to_container(composed)
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        assert same(composed, value), (
            f"README says {option} = {value!r}; the config runs {composed!r}")
        section, *key = option.split(".")
        if section in ("model", "task", "criterion") and key != ["_name"]:
            default = lookup(section_defaults(section, names[section]), key)
            assert same(default, value), (
                f"README says {option} = {value!r}; its dataclass's default is {default!r}")
