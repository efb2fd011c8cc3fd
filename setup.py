"""Packaging for mae_ast_plugin.

fairseq is deliberately not an install requirement: PyPI's fairseq 0.12.2 does not import on
Python 3.11+, and the working fork (fairseq-fixed) must be compiled against the installed
torch with ``--no-build-isolation``, which pip cannot arrange through install_requires.  Users
with their own fairseq keep it; everyone else runs ``make install`` (see the Makefile) or
``pip install --no-build-isolation fairseq-fixed==0.12.3.1`` after torch.

The training configs are the repository's top-level ``config/``; ``mae_ast_plugin/config`` is a
symbolic link to it, so the package data below copies the yaml files into every wheel (one copy
in git) and ``mae-ast-config-dir`` prints where an installation keeps them.
"""

from setuptools import find_packages, setup

setup(
    name="mae_ast_plugin",
    version="0.1.0",
    description="MAE-AST (Masked Autoencoding Audio Spectrogram Transformer) as a fairseq plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11,<3.13",
    packages=find_packages(include=["mae_ast_plugin", "mae_ast_plugin.*"]),
    # the shipped configs, and the code files mae-ast-export --format hf copies into a Hugging
    # Face model folder
    package_data={"mae_ast_plugin": ["config/**/*.yaml", "hf_template/*.py"]},
    install_requires=[
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "numpy==2.4.6",
        "soundfile==0.14.0",
        "sentencepiece==0.2.3",
        "tensorboardX==2.6.5",  # fairseq's tensorboard logging
        "matplotlib==3.11.2",  # reconstruction and loss plots
        "espeakng-loader==0.2.4",  # bundled espeak-ng: the demo corpus needs no system package
        "safetensors==0.8.0",  # exported model folders (mae-ast-export --format safetensors)
        "scikit-learn==1.9.1",  # mae-ast-probe's logistic regressions (lbfgs, one-vs-rest)
        "tqdm==4.70.1",  # progress bars (fairseq needs it too)
    ],
    # Every command is a package module's main(argv=None), as fairseq_cli's are.
    entry_points={
        "console_scripts": [
            "mae-ast-predict = mae_ast_plugin.tools.predict:main",
            "mae-ast-export = mae_ast_plugin.export:main",
            "mae-ast-extract-features = mae_ast_plugin.tools.extract_features:main",
            "mae-ast-plot-reconstruction = mae_ast_plugin.tools.plot_reconstruction:main",
            "mae-ast-precompute-fbank = mae_ast_plugin.tools.precompute_fbank:main",
            "mae-ast-benchmark-pretrain = mae_ast_plugin.bench.pretrain:main",
            "mae-ast-benchmark-data = mae_ast_plugin.bench.data:main",
            "mae-ast-benchmark-loader-cache = mae_ast_plugin.bench.loader_cache:main",
            "mae-ast-benchmark-manifest = mae_ast_plugin.bench.manifest:main",
            "mae-ast-make-demo-corpus = mae_ast_plugin.corpora.demo:main",
            "mae-ast-make-table1-corpus = mae_ast_plugin.corpora.table1:main",
            "mae-ast-demo = mae_ast_plugin.experiments.demo:main",
            "mae-ast-table1 = mae_ast_plugin.experiments.table1:main",
            "mae-ast-prepare = mae_ast_plugin.prep.cli:main",
            "mae-ast-evaluate = mae_ast_plugin.evaluation.evaluate:main",
            "mae-ast-results-table = mae_ast_plugin.evaluation.results_table:main",
            "mae-ast-cv = mae_ast_plugin.evaluation.cv:main",
            "mae-ast-probe = mae_ast_plugin.evaluation.probe:main",
            "mae-ast-config-dir = mae_ast_plugin.hydra_configs:main",
        ]
    },
    extras_require={
        "fairseq": ["fairseq-fixed==0.12.3.1"],
        # make test: ruff check, then pytest; the field's own clients of the encoder's doors
        # (hearvalidator brings tensorflow, which its validator imports; xares goes in with
        # --no-deps from the Makefile, its checker needing only loguru besides torch)
        "test": [
            "pytest==9.2.0",
            "ruff==0.17.5",
            "hearvalidator==2021.0.2",
            "transformers==5.25.0",
            "loguru==0.7.3",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
