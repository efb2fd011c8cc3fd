"""Every composition of the shipped configs, resolved as fairseq-hydra-train resolves them: each
primary config of config/pretrain and config/finetune alone, with each overlay (``+group=option``
of its directory, and the Table 1 miniature's ``+table1=...`` from config/local) and with each
pair of overlays from different groups.

Used by test_config_defaults.py, and as a script to compare two trees' configs (a change of the
yaml files that must not change what runs)::

    python tests/config_compositions.py CONFIG_ROOT OUT.json

writes {composition: resolved config} (or the composition's error) as JSON; two trees agree when
their files are equal.  The plugin imported is the one on sys.path (run each tree's with its own
PYTHONPATH): its dataclasses supply the defaults the yaml files leave out.
"""

import copy
import itertools
import json
import os
import re
import sys
from pathlib import Path

# What run/slurm.yaml and run/torchrun.yaml read from the launcher's environment.
LAUNCHER_ENV = {"SLURM_NTASKS": "2", "SLURM_JOB_ID": "1", "WORLD_SIZE": "2"}
TABLE1_OVERLAY = {"pretrain": "+table1=pretrain", "finetune": "+table1=finetune"}


def overlays(group_dir: Path) -> dict:
    """{group: ["+group=option", ...]} of a config directory (files starting with _ are parts)."""
    found = {}
    for sub in sorted(p for p in group_dir.iterdir() if p.is_dir()):
        options = [f"+{sub.name}={f.stem}" for f in sorted(sub.glob("*.yaml"))
                   if not f.name.startswith("_")]
        if options:
            found[sub.name] = options
    return found


def compositions(config_root: Path):
    """(group, config name, overrides) of every composition named in the module docstring."""
    for group in ("pretrain", "finetune"):
        directory = config_root / group
        groups = overlays(directory)
        groups["table1"] = [TABLE1_OVERLAY[group]]
        singles = [[o] for options in groups.values() for o in options]
        pairs = [[a, b] for g, h in itertools.combinations(groups, 2)
                 for a in groups[g] for b in groups[h]]
        for path in sorted(directory.glob("*.yaml")):
            for extra in [[], *singles, *pairs]:
                yield group, path.stem, extra


def resolved(config_root: Path, group: str, config_name: str, extra) -> dict:
    """The config fairseq-hydra-train runs for one composition (hydra's own section reduced to
    what the configs set: run/sweep directories and job.chdir), or {"error": message}."""
    from fairseq.dataclass.initialize import add_defaults, hydra_init
    from fairseq.dataclass.utils import omegaconf_no_object_check
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    overrides = list(extra)
    if any(o.startswith("+table1=") for o in overrides):
        overrides.append(f"hydra.searchpath=[file://{config_root / 'local'}]")
    hydra_init(config_name)  # fairseq's schema under the primary config's name, as the CLI does
    try:
        with initialize_config_dir(config_dir=str(config_root / group), version_base=None):
            cfg = compose(config_name=config_name, overrides=overrides,
                          return_hydra_config=True)
    except Exception as error:  # a pair that cannot go together, e.g. a group given twice
        return {"error": f"{type(error).__name__}: {error}".splitlines()[0]}
    finally:
        # one primary per process in fairseq-hydra-train: a schema left under this name would
        # be merged into the next composition that includes this config (ssast_patch's
        # defaults list includes mae_ast_patch)
        ConfigStore.instance().repo.pop(f"{config_name}.yaml", None)
    with open_dict(cfg):
        cfg.hydra.job.config_name = config_name  # hydra's launcher sets it; compose does not
    HydraConfig.instance().set_config(cfg)
    hydra = {"run": cfg.hydra.run, "sweep": cfg.hydra.sweep, "chdir": cfg.hydra.job.chdir,
             "job_name": cfg.hydra.job.name}
    hydra = OmegaConf.to_container(OmegaConf.create(hydra), resolve=False)
    body = copy.deepcopy(cfg)  # HydraConfig resolves ${hydra:...} against cfg: keep it whole
    with open_dict(body):
        del body["hydra"]
    try:
        add_defaults(body)
        with omegaconf_no_object_check():
            config = OmegaConf.to_container(body, resolve=True, enum_to_str=True)
    except Exception as error:  # fields that the dataclass chosen by an overlay lacks
        return {"error": f"{type(error).__name__}: {error}".splitlines()[0]}
    return {"config": config, "hydra": hydra}


def all_resolved(config_root: Path) -> dict:
    import mae_ast_plugin  # noqa: F401  (registers the dataclasses whose defaults are added)

    os.environ.update(LAUNCHER_ENV)
    return {
        " ".join([f"{group}/{name}", *extra]): resolved(config_root, group, name, extra)
        for group, name, extra in compositions(config_root)
    }


def main(argv=None) -> int:
    config_root, out = (Path(a).resolve() for a in (argv or sys.argv[1:]))
    results = all_resolved(config_root)
    text = json.dumps(results, indent=1, sort_keys=True, default=str) + "\n"
    # ${now:...} in run directories (hydra registers its own resolver at every composition)
    out.write_text(re.sub(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", "<now>", text))
    errors = sum("error" in r for r in results.values())
    print(f"{len(results)} compositions ({errors} refused by hydra) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
