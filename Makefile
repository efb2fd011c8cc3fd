# The commands of the README: `make demo` (the main job on the built-in demo data), `make test`
# (the linter, then every test) and `make test-fast` (the linter, then the tests that start no
# Python process: pytest -m "not slow", under a minute).  Both create .venv on first use and install into it;
# later runs reuse it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Re-install only when the requirements change.
STAMP := $(VENV)/.installed-$(shell cat setup.py Makefile | cksum | cut -d' ' -f1)

.PHONY: install demo test test-fast clean-demo

install: $(STAMP)

$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet torch==2.11.0 torchaudio==2.11.0 numpy==2.4.6 cython
	@# fairseq-fixed compiles against the installed torch; a fairseq the user brought is kept.
	@$(PY) -c "import fairseq" 2>/dev/null \
		|| $(PY) -m pip install --quiet --no-build-isolation fairseq-fixed==0.12.3.1
	$(PY) -m pip install --quiet -e ".[test]"
	@# s3prl is a real client of `mae-ast-export --format authors` in the tests; its own
	@# requirements (fairseq, s3prl's training stack) are not needed to import its upstreams.
	$(PY) -m pip install --quiet --no-deps s3prl==0.4.18
	@# xares (X-ARES) is a real client of mae_ast_plugin.xares_encoder in the tests; its own
	@# requirements (its training stack: webdataset, ignite, pandas, ...) are not needed by its
	@# encoder checker, which imports torch and loguru only.
	$(PY) -m pip install --quiet --no-deps xares==0.1.3
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: install
	$(VENV)/bin/mae-ast-demo

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q --durations=15 tests

test-fast: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not slow" tests

clean-demo:
	rm -rf data/demo manifests/demo outputs/demo
