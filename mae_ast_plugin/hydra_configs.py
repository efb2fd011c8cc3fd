"""Print the directory of the shipped ``fairseq-hydra-train`` configs (or, with --user-dir, the
package directory for ``common.user_dir``), so that training runs from any directory and from an
installed wheel, not only from the repository root.

The configs live in the repository's top-level config/ (pretrain/, finetune/, local/); the
package reaches them as mae_ast_plugin/config: in the checkout a symbolic link to ../config, in
a wheel a copy (setup.py's package data).  fairseq resolves a relative common.user_dir against
the working directory only, so outside the checkout it needs the package's absolute path.

Examples:
  fairseq-hydra-train --config-dir "$(mae-ast-config-dir pretrain)" \\
    --config-name mae_ast_patch common.user_dir="$(mae-ast-config-dir --user-dir)" \\
    task.data=manifests/demo
  mae-ast-config-dir finetune     # the fine-tuning recipes (esc50, speechcommands_v2, ...)
"""

import sys
from pathlib import Path

from mae_ast_plugin.cli import command_parser

PACKAGE_DIR = Path(__file__).resolve().parent
# Not resolved: in the checkout the link stays inside the package, so printed paths say where
# the configs come from.
CONFIG_DIR = Path(__file__).parent / "config"
GROUPS = {
    "pretrain": "pretraining: mae_ast_patch, mae_ast_frame, ssast_patch, ssast_frame, demo",
    "finetune": "fine-tuning recipes: esc50, speechcommands_v1/v2, voxceleb1_sid, ...",
    "local": "the Table 1 miniature's overlays (hydra.searchpath, +table1=...)",
}


def config_dir(group: str | None = None) -> Path:
    """The absolute directory of the shipped configs, or of one of their groups (``GROUPS``).

    Raises ``ValueError`` for an unknown group and ``FileNotFoundError`` naming the directory
    when the package was installed without its configs (a wheel built without package data)."""
    if group is not None and group not in GROUPS:
        raise ValueError(f"unknown config group {group!r}: one of {', '.join(GROUPS)}")
    path = CONFIG_DIR.absolute() if group is None else CONFIG_DIR.absolute() / group
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: the package's configs are missing; reinstall mae_ast_plugin from the "
            "repository or from a wheel built by `pip wheel` (setup.py ships config/)"
        )
    return path


def compose(group: str, config_name: str, overrides=()):
    """The config ``fairseq-hydra-train --config-dir $(mae-ast-config-dir GROUP) --config-name
    CONFIG_NAME OVERRIDES`` runs: hydra's composition over fairseq's schema, the registered
    dataclasses' defaults added, interpolations resolved (a struct ``DictConfig``).  The
    plugin's tasks, models and criteria must be registered (``import mae_ast_plugin``) for their
    defaults to appear; ``hydra:`` interpolations (``${hydra:run.dir}``) are not available here,
    so overrides must replace the fields that use them (checkpoint.save_dir, ...)."""
    from fairseq.dataclass.initialize import add_defaults, hydra_init
    from fairseq.dataclass.utils import omegaconf_no_object_check
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    hydra_init(config_name)  # fairseq's schema under the primary config's name, as its CLI does
    try:
        with initialize_config_dir(config_dir=str(config_dir(group)), version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    finally:
        # the CLI composes one primary config per process; a schema left under this name would
        # be merged into a later composition that includes the config (as ssast_patch does)
        ConfigStore.instance().repo.pop(f"{config_name}.yaml", None)
    add_defaults(cfg)
    with omegaconf_no_object_check():
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    OmegaConf.set_struct(cfg, True)
    return cfg


def get_parser():
    parser = command_parser("mae-ast-config-dir", __doc__)
    parser.add_argument("group", nargs="?", choices=sorted(GROUPS),
                        help="print this group's directory instead of the top one")
    parser.add_argument("--user-dir", action="store_true",
                        help="print the package directory, for common.user_dir")
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.user_dir:
        if args.group is not None:
            get_parser().error("--user-dir takes no group")
        print(PACKAGE_DIR)
        return 0
    try:
        print(config_dir(args.group))
    except FileNotFoundError as error:
        print(f"mae-ast-config-dir: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
