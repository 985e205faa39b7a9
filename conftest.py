"""Root conftest: the grading harness is a pytest plugin; pytester drives the harness's own tests.

`harness.ops.docker_stack` points pytest-docker at infra/docker-compose.yml (used when STACK=docker).
"""

pytest_plugins = ["harness.grading.pytest_plugin", "harness.ops.docker_stack", "pytester"]
