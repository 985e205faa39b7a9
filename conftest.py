"""Root conftest: the grading harness is a pytest plugin."""

pytest_plugins = ["harness.pytest_plugin"]
