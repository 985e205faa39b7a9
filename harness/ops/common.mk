# What the course's Makefile and the student release's Makefile share (each includes this file):
# the shell, the virtualenv and its stamp, the lab-N targets' numbers and words, and `make help`.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The stamp's name carries the checksum of the packages' files: a change installs again.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock 2>/dev/null | md5sum | cut -c1-12)
# PySpark's spark-submit finds Spark through the `python3` on PATH: make it the venv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# The labs are the folders labs/labNN_*: lab-1 … lab-N. They are listed in .PHONY through a static
# pattern rule (GNU Make never applies a plain pattern rule such as `lab-%:` to a .PHONY target).
LAB_NUMBERS := $(shell ls -d labs/lab[0-9][0-9]_* 2>/dev/null | sed -E 's|labs/lab0?([0-9]+)_.*|\1|')
LAB_TARGETS := $(addprefix lab-,$(LAB_NUMBERS))
# `make lab-1 -- -k partB`: the words after the lab go to pytest (ARGS="-k partB" works too).
ifneq ($(filter $(LAB_TARGETS),$(firstword $(MAKECMDGOALS))),)
LAB_ARGS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
ifneq ($(LAB_ARGS),)
$(eval $(LAB_ARGS):;@:)
endif
endif

# `make help`'s recipe: every target with a `## ` comment, its name padded to HELP_WIDTH.
HELP_WIDTH ?= 16
define LIST_COMMANDS
@grep -hE '^[$$a-zA-Z0-9_%()-]+:.*## ' $(MAKEFILE_LIST) | sed 's/^$$(LAB_TARGETS): lab-%/lab-N/' \
  | awk -F':.*## ' '{printf "  make %-$(HELP_WIDTH)s %s\n", $$1, $$2}'
@echo "  (labs: $(LAB_TARGETS); \`make lab-1 -- -k partB\` runs one part)"
endef

$(STAMP):
	@echo "[setup] Python virtualenv in $(VENV) with the packages of requirements.lock"
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/setup-venv.sh
	@rm -f $(VENV)/.installed-*; touch $(VENV)/.installed-$$(cat pyproject.toml requirements.lock | md5sum | cut -c1-12)

venv: $(STAMP)

lab-%:
	@echo "make $@: there is no such lab. The labs are: $(LAB_TARGETS)." >&2; exit 2
