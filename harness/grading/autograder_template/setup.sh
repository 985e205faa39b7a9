#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image: the project's own set-up,
# the same code path as `make up` (virtualenv, jars, MinIO, PostgreSQL, bubblewrap), nothing else.
set -euo pipefail
AUTOGRADER_ROOT="${AUTOGRADER_ROOT:-/autograder}"
cd "$AUTOGRADER_ROOT/source"
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  # The prerequisites the course's README names: Python 3.11, Java 17, Go, make.
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv openjdk-17-jre-headless golang-go make git
fi
make setup
