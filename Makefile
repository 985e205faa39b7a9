# OpenSky Data Engineering Labs — every command a student, an instructor or CI needs.
# `make` alone lists them. Each target does its own set-up: a fresh clone needs nothing else.

include harness/ops/common.mk

PYTEST := $(PY) -m pytest
# Graded suites and the platform's own tests.
LAB_TESTS := labs
PLATFORM_TESTS := tests
REPORTS := reports
SUBMISSIONS ?=

.PHONY: help setup venv install up down status restart reset doctor $(LAB_TARGETS) \
        test test-platform test-solutions grade skeletons check-skeletons check-tests notebooks jupyter \
        check-wrong-answers check-stable skeleton-tests-then-notebooks \
        bench lint clean demo demo-stop dashboard airflow

help: ## list the commands
	$(LIST_COMMANDS)

# ------------------------------------------------------------------ set-up
# The virtualenv (harness/ops/common.mk builds it): here a newer pyproject.toml installs it again too.
$(STAMP): pyproject.toml

setup: venv ## install everything: Python packages, jars, the MinIO binary, PostgreSQL
	@$(PY) -m harness.ops.stack install
	@$(PY) -m harness.grading.sandbox install

# ------------------------------------------------------------------ the stack
up: setup ## start the lab stack (idempotent: reuses what already runs)
	@$(PY) -m harness.ops.stack up

down: ## stop every service of the stack that we started (and the dashboard `make demo` left running)
	@if [ -x $(PY) ]; then $(PY) -m harness.ops.dashboard stop --quiet; $(PY) -m harness.ops.stack down; fi

status: venv ## one table: service, endpoint, up/down, pid, memory
	@$(PY) -m harness.ops.stack status

restart: setup ## stop and start the stack (or SERVICES="kafka connect")
	@$(PY) -m harness.ops.stack restart $(SERVICES)

doctor: ## check this machine for the labs: Java, disk, memory, Docker, ports, set-up (each with its fix)
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m harness.ops.doctor

reset: venv ## stop the stack, wipe its data and start clean (asks first; YES=1 skips the question)
	@$(PY) -m harness.ops.reset --start $(if $(filter 1 y yes true,$(YES)),--yes)

# ------------------------------------------------------------------ students
$(LAB_TARGETS): lab-%: venv ## run lab N's graded tests against your code in labs/ (e.g. make lab-1)
	@$(PY) -m harness.ops.stack up --lab $*
	@$(PY) -m harness.grading.student $* -- $(ARGS) $(LAB_ARGS)

# ------------------------------------------------------------------ instructors
grade: up ## grade labs/, or SUBMISSIONS=dir/ (folders, git repos [TAG=], zips; sandboxed) into grades.csv
	@$(PY) -m harness.grading.grade $(if $(SUBMISSIONS),--submissions $(SUBMISSIONS)) $(if $(TAG),--tag "$(TAG)") $(if $(SANDBOX),--sandbox $(SANDBOX)) --out $(REPORTS)

.PHONY: release submit autograder
release: venv ## write the student repository into DEST=path (no solutions; a git repo for Classroom)
	@test -n "$(DEST)" || { echo "make release DEST=path: say where to write the student repository" >&2; exit 2; }
	@$(PY) -m harness.grading.release "$(DEST)"

submit: venv ## write submission.zip: the files students edit (lab.toml `edit`) and a manifest
	@$(PY) -m harness.grading.submit --out submission.zip

autograder: venv ## write autograder-labNN.zip for Gradescope (LAB=N)
	@test -n "$(LAB)" || { echo "make autograder LAB=N: which lab?" >&2; exit 2; }
	@$(PY) -m harness.grading.autograder build --lab $(LAB)

skeletons: venv ## regenerate labs/*/ student files from solutions/
	@$(PY) -m harness.grading.skeleton generate

check-skeletons: venv ## fail when committed labs/ differ from what solutions/ generates
	@$(PY) -m harness.grading.skeleton check

check-tests: up ## fail when any graded test passes on the pristine skeletons
	@$(PY) -m harness.grading.bite

check-wrong-answers: up ## every wrong answer (labs/*/tests/wrong_answers/*.patch) must lose points (LABS="3 4", PER_LAB=10, ROTATE=key)
	@$(PY) -m harness.grading.wrong_answers $(LABS) $(if $(PER_LAB),--per-lab $(PER_LAB)) $(if $(ROTATE),--rotate $(ROTATE)) --json $(REPORTS)/wrong-answers.json

check-stable: up ## every suite RUNS=5 times on solutions/, 0 failures (LABS="5", ALONGSIDE=2 as load); not in make test
	@$(PY) -m harness.grading.stable $(LABS) --runs $(or $(RUNS),5) $(if $(ALONGSIDE),--alongside $(ALONGSIDE)) --json $(REPORTS)/stable.json

test-platform: up ## the platform's own tests (stack, data, harness, compose file)
	@$(PYTEST) $(PLATFORM_TESTS) -q

test-solutions: up ## every graded suite against solutions/
	@$(PYTEST) $(LAB_TESTS) --target solutions -q --junitxml=$(REPORTS)/solutions-junit.xml --grade-json $(REPORTS)/solutions-results.json

# CI grades 5 wrong answers per lab, spread over its parts (the CI time budget), a different five
# for each commit so that successive runs take turns; `make check-wrong-answers` grades them all.
# The wrong answers, the skeleton check and the notebooks are independent (each suite and notebook
# uses names of its own on the shared stack) and wait on services much of the time: the wrong
# answers run beside the other two, which run one after the other.
test: PER_LAB ?= 5
test: ROTATE ?= $(shell git rev-parse --short HEAD 2>/dev/null)
test: lint up check-skeletons test-platform test-solutions ## everything, against the solutions (what CI runs)
	@$(MAKE) --no-print-directory -j2 --output-sync=target check-wrong-answers skeleton-tests-then-notebooks PER_LAB=$(PER_LAB) ROTATE=$(ROTATE)
	@echo "make test: all checks passed."

skeleton-tests-then-notebooks: check-tests
	@$(MAKE) --no-print-directory notebooks

# ------------------------------------------------------------------ self-study
notebooks: up ## run the notebooks under nbval (stored outputs compared)
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then $(PYTEST) --nbval notebooks --nbval-sanitize-with notebooks/sanitize.cfg -p no:randomly -q; else echo "no notebooks yet"; fi

jupyter: up ## start JupyterLab on the stack (docker stack: it runs in the jupyter container)
	@if [ "$$($(PY) -c 'from harness.runtime.config import stack; print(stack())')" = docker ]; then \
	  $(PY) -m harness.ops.docker_stack jupyter-url; \
	else $(VENV)/bin/jupyter lab --ip 127.0.0.1 --port $${JUPYTER_PORT:-8888} --notebook-dir notebooks; fi

# Lab 08's DAG in Airflow's UI; AIRFLOW_DAGS=solutions serves the reference DAG instead.
AIRFLOW_DAGS ?= labs
airflow: up ## Airflow 3 (standalone) on http://127.0.0.1:$AIRFLOW_PORT running Lab 08's DAG over the recording's hours
	@$(PY) -m harness.ops.airflow_stack standalone --dags $(AIRFLOW_DAGS)

demo: up ## the whole platform at once on the recording, an emergency planted, alerts and the live dashboard
	@$(PY) -m harness.ops.demo $(DEMO_ARGS)

demo-stop: venv ## stop the dashboard `make demo` left running
	@$(PY) -m harness.ops.dashboard stop

# Lab 09's live dashboard; DASHBOARD_APP=solutions/lab09_alerts/dashboard.py shows the reference.
DASHBOARD_APP ?= labs/lab09_alerts/dashboard.py
dashboard: venv ## Lab 09's live dashboard (Streamlit) on http://127.0.0.1:$DASHBOARD_PORT, from ClickHouse
	@$(PY) -m harness.ops.stack up clickhouse
	@$(PY) -m harness.ops.dashboard run $(DASHBOARD_APP)

bench: up ## measure the stack, the student loop, streaming, batch and Kafka: bench/results.md
	@$(PY) -m bench $(BENCH_ARGS)

# actionlint (a Go module) checks the CI workflow; built once with `go install`, then cached.
ACTIONLINT_VERSION := 1.7.12
ACTIONLINT := .stack/bin/actionlint-$(ACTIONLINT_VERSION)
$(ACTIONLINT):
	@echo "[setup] building actionlint $(ACTIONLINT_VERSION) with go install (once)…"
	@mkdir -p $(@D) && GOBIN=$(CURDIR)/.stack/bin/.actionlint-build \
	  go install github.com/rhysd/actionlint/cmd/actionlint@v$(ACTIONLINT_VERSION) \
	  && mv .stack/bin/.actionlint-build/actionlint $@ && rmdir .stack/bin/.actionlint-build

lint: venv $(ACTIONLINT) ## ruff check and format check; actionlint on .github/workflows
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(ACTIONLINT)

clean: down ## stop the stack and remove reports and caches (keeps downloads)
	@rm -rf $(REPORTS) .pytest_cache
