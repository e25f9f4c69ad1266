# archbench: the two commands (both idempotent, both set up a fresh clone first)
#   make repro   set up .venv and run the default DVC pipeline (dvc repro)
#   make test    set up .venv and run the test suite
#   (make test-fast: the unit and in-process tests only, for the inner loop)
PYTHON ?= python3
VENV := .venv
TORCH_SPEC ?= torch==2.13.0
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: constraints setup repro repro-text repro-translation repro-vision repro-speech test test-fast lint ui dashboard browser clean efficiency

# the versions the suite last passed with (a new MLflow, Lightning or DVC release cannot break a
# fresh clone); CONSTRAINTS= installs the newest that pyproject.toml allows instead
CONSTRAINTS ?= constraints.txt

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
	$(VENV)/bin/python -m pip install --quiet --no-compile "$(TORCH_SPEC)"
	$(VENV)/bin/python -m pip install --quiet --no-compile -e ".[dev]" $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	# byte-compile on every core instead of pip's one (setup 66 -> 54 s here, measured); a few
	# files are for newer Pythons (torch ships py312 syntax), which compileall reports and pip ignores
	$(VENV)/bin/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	touch $@

setup: $(VENV)/.installed

# rewrite constraints.txt from .venv (after upgrading it and seeing make test pass)
constraints: setup
	{ sed -n '/^#/p' constraints.txt; $(VENV)/bin/python -m pip freeze --exclude-editable | grep -v '^torch=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

repro: setup
	dvc repro

# the text-classification pipeline (text/dvc.yaml): SST-2 from text/params.yaml's sst2_root
# (GLUE's train.tsv and dev.tsv), 4 models x 3 seeds -> reports/text/comparison.md
repro-text: setup
	dvc repro text/dvc.yaml

# the translation pipeline (translation/dvc.yaml): Multi30k task 1 from translation/params.yaml's
# multi30k_root, de → en, GRU / attention / Transformer -> reports/translation/comparison.md
repro-translation: setup
	dvc repro translation/dvc.yaml

# the vision pipeline (vision/dvc.yaml): the CNN families on digits (embedded) and MNIST (the t10k
# files in vision/params.yaml's mnist root) -> reports/vision/comparison.md
repro-vision: setup
	dvc repro vision/dvc.yaml

# the speech pipeline (speech/dvc.yaml): spoken digits (FSDD, speech/params.yaml's root) by cnn,
# gru, lstm, transformer and mlp, leave-one-speaker-out, CTC transcription -> reports/speech/
repro-speech: setup
	dvc repro speech/dvc.yaml

# one pytest-xdist worker per core (tests/conftest.py gives each one torch thread); work stealing:
# a worker that runs out of tests takes half of another's queue (measured 10:56 vs 12:03 with the
# default load scheduling, same 248 tests)
TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
test: setup browser
	pytest -n $(TEST_JOBS) --dist worksteal

# headless Chromium for the browser tests (tests/test_browser.py): Debian's package, installed when
# missing and this is root (as on CI); otherwise those tests are skipped, with the reason
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  chromium >/dev/null; } || echo "make: no chromium (apt-get install chromium): the browser tests will skip"

# the inner loop: unit and in-process tests only (no subprocesses, servers, DDP or DVC pipeline)
test-fast: setup
	pytest -n $(TEST_JOBS) --dist worksteal -m "not slow"

lint: setup
	ruff check src tests bench

# the MLflow UI on 127.0.0.1:$(PORT), one worker and no job runner (MLflow 3 starts 7 huey consumer
# processes, ~17 s of CPU, for GenAI jobs archbench has none of), so trainings running beside it keep
# the cores; STORE: another tracking store (default the project's mlflow.db)
PORT ?= 5000
STORE ?= sqlite:///mlflow.db
ui: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri "$(STORE)" --host 127.0.0.1 --port $(PORT) --workers 1

# the Optuna dashboard on 127.0.0.1:$(DASHBOARD_PORT) for the sweeps' study storage (STORAGE: the
# hydra.sweeper.storage a sweep used; default the project's optuna.db)
DASHBOARD_PORT ?= 8080
STORAGE ?= sqlite:///optuna.db
dashboard: setup
	optuna-dashboard "$(STORAGE)" --host 127.0.0.1 --port $(DASHBOARD_PORT)

clean:
	rm -rf outputs multirun results data/prepared mlflow.db mlruns mlartifacts optuna.db optuna.db.workers.lock

# data-efficiency curves (not part of dvc repro; run after it): every classifier of mnist1d and
# digits trained on 10 / 25 / 50 % of its training split, per seed, beside the pipeline's 100 % runs;
# finished runs are kept (re-running adds only what is missing) -> reports/efficiency.md
EFFICIENCY_SEEDS ?= 42,43,44
EFFICIENCY_FRACTIONS ?= 0.1,0.25,0.5
efficiency: setup
	archbench-train -m data=mnist1d model=perceptron,logistic,mlp,cnn,rnn,lstm,gru,transformer \
	  data.train_fraction=$(EFFICIENCY_FRACTIONS) seed=$(EFFICIENCY_SEEDS) callbacks.progress_bar=none \
	  hydra/launcher=joblib hydra.launcher.n_jobs=3 threads=1 logger.experiment_name=archbench-efficiency \
	  hydra.sweep.dir=results/efficiency/mnist1d 'hydra.sweep.subdir=$${model.name}-f$${data.train_fraction}-seed$${seed}'
	archbench-train -m data=digits model=perceptron,logistic,mlp,cnn \
	  data.train_fraction=$(EFFICIENCY_FRACTIONS) seed=$(EFFICIENCY_SEEDS) callbacks.progress_bar=none \
	  hydra/launcher=joblib hydra.launcher.n_jobs=3 threads=1 logger.experiment_name=archbench-efficiency \
	  hydra.sweep.dir=results/efficiency/digits 'hydra.sweep.subdir=$${model.name}-f$${data.train_fraction}-seed$${seed}'
	archbench-compare results/train reports --efficiency results/efficiency
