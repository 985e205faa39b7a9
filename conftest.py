"""Root conftest: the grading harness is a pytest plugin; pytester drives the harness's own tests."""

pytest_plugins = ["harness.pytest_plugin", "pytester"]
