# Two commands do everything on a fresh machine:
#   make run    build the zipapp and feed a sample request through it (embedded default config)
#   make test   install what the tests need from Debian (as root; otherwise say what is missing),
#               then lint, type-check and run every test (the servers they need start themselves)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ZIPAPP := dist/registry-credential-provider
# Where the zipapp unpacks itself on first run: absolute, because the kubelet often runs
# plugins with no HOME.
RUNTIME_PEX_ROOT := /var/lib/registry-credential-provider/pex
PLATFORMS := $(sort $(wildcard packaging/platforms/*.json))
SOURCES := $(shell find provider -name '*.py' -o -name '*.json' -o -name py.typed | LC_ALL=C sort)
SAMPLE_REQUEST := {"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"docker.io/library/nginx"}
PYTEST_ARGS ?=

.PHONY: run test system-deps bench reliability lint typecheck pytest zipapp dist standalone lock clean image

run: $(ZIPAPP)
	@echo '$$ echo '\''$(SAMPLE_REQUEST)'\'' | $(ZIPAPP)'
	@echo '$(SAMPLE_REQUEST)' | ./$(ZIPAPP)

# The system check first, on its own: the venv itself may need python3-venv.
test: system-deps
	$(MAKE) --no-print-directory lint typecheck pytest

system-deps:
	@PYTHON=$(PYTHON) sh tests/infra/system-deps.sh

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check provider tests packaging
	$(BIN)/ruff format --check provider tests packaging

typecheck: $(VENV)/.installed
	$(BIN)/mypy

pytest: $(VENV)/.installed $(ZIPAPP)
	$(BIN)/pytest $(PYTEST_ARGS)

zipapp: $(ZIPAPP)

# Speed and memory goals as ratios measured in one run; a table, then JSON (also dist/bench.json).
bench: system-deps $(VENV)/.installed $(ZIPAPP)
	$(BIN)/python -m tests.bench

# Fuzzing, fault injection and hostile hosts at full counts; a table, then dist/reliability.json.
reliability: $(VENV)/.installed $(ZIPAPP)
	$(BIN)/python -m tests.reliability

$(ZIPAPP): $(VENV)/.installed packaging/pex.lock $(PLATFORMS) $(SOURCES) packaging/build_zipapp.py
	$(BIN)/python packaging/build_zipapp.py --output $@ --runtime-pex-root $(RUNTIME_PEX_ROOT)

# Release files in dist/release: per CPU (x86_64, aarch64) the zipapp (only its own wheels,
# botocore's data trimmed) and the self-contained form (make standalone: needs root), install.sh,
# PACKAGES.txt (versions, licenses), SHA256SUMS.
dist: $(VENV)/.installed standalone
	$(BIN)/python packaging/build_release.py --output-dir dist/release --runtime-pex-root $(RUNTIME_PEX_ROOT) \
	  --standalone-dir dist/standalone

# The fleet image in dist/image: an OCI layout (one image per CPU and an index), a .tar of it and
# of each CPU's image, DIGEST (the index's); from dist/release, built first when missing.
image: $(VENV)/.installed
	@test -f dist/release/SHA256SUMS || $(MAKE) --no-print-directory dist
	$(BIN)/python packaging/build_image.py --release-dir dist/release --output-dir dist/image

# The self-contained form per CPU in dist/standalone: a tar.gz of one directory bringing
# bullseye's CPython 3.9 (PyInstaller, built in a debootstrapped bullseye root; arm64 under
# qemu-user-static). Needs root; roots and builds are cached (packaging/build_standalone.py).
standalone: $(VENV)/.installed
	$(BIN)/python packaging/build_standalone.py --output-dir dist/standalone

# Re-pin what goes into the zipapp (only when deliberately upgrading).
lock: $(VENV)/.installed
	$(BIN)/pex3 lock create -r packaging/requirements.in --constraints packaging/constraints.txt \
	  --style universal --target-system linux \
	  --interpreter-constraint "CPython>=3.9.2,<3.14" --indent 2 -o packaging/pex.lock

clean:
	rm -rf dist build .pytest_cache .mypy_cache .ruff_cache
