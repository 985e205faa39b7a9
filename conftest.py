"""Root conftest: the grading harness is a pytest plugin; pytester drives the harness's own tests.

`harness.docker_stack` points pytest-docker at infra/docker-compose.yml (used when STACK=docker).
"""

pytest_plugins = ["harness.pytest_plugin", "harness.docker_stack", "pytester"]
