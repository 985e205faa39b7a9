"""The first code of a graded process: a clean `sys.path`, an audit hook, then pytest.

Run as a script by the grader (never imported by lab code), with the interpreter in isolated mode:

    python -I -B <copy>/harness/grading/guard.py --report-fd 5 --copy C --submission S \
        --protect /instructor/repo [--protect /other/submissions] [--allow /venv] -- <pytest args>

- `sys.path` holds the instructor's read-only copy (tests + harness), the submission's scratch
  copy and the interpreter's own library folders, nothing else: `solutions/` and the instructor's
  `labs/` are not importable, whatever the working directory.
- An audit hook (which cannot be removed once added) refuses, and reports, what a submission must
  not do: import `solutions`, open or list files of a protected tree (the instructor's repository,
  other submissions), write into the copy, run a command naming those paths, or change classes and
  functions of pytest, pluggy or the harness. After each test the guard also checks that no module
  attribute of pytest, pluggy or the harness was replaced and that no plugin or hook was added.
- Every finding is one JSON line on `--report-fd` (a pipe the grader reads); the grader scores the
  lab 0 and flags it. The sandbox (bubblewrap) is the stronger layer on top; this one holds on
  every machine.
"""

from __future__ import annotations

import json
import os
import sys
import types

GUARDED_MODULES = ("pytest", "_pytest", "pluggy", "harness")
MAX_REPORTS = 50
WRITE_EVENTS = {
    "os.remove",
    "os.rmdir",
    "os.mkdir",
    "os.rename",
    "os.chmod",
    "os.chown",
    "os.utime",
    "os.truncate",
    "os.symlink",
    "os.link",
    "shutil.rmtree",
    "shutil.copyfile",
    "shutil.copytree",
    "shutil.move",
    "shutil.copymode",
    "shutil.copystat",
}
READ_EVENTS = {"os.listdir", "os.scandir", "glob.glob", "os.chdir", "open"}
COMMAND_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"}


def _norm(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


class Guard:
    """Holds the rules and the report channel; `hook` is the audit hook."""

    def __init__(
        self,
        report_fd: int,
        copy: str,
        submission: str,
        protect: list[str],
        allow: list[str],
    ) -> None:
        self.report_fd = report_fd
        self.copy = _norm(copy)
        self.submission = _norm(submission)
        self.protect = [_norm(p) for p in protect]
        # The interpreter and its packages may live inside a protected tree (the repo's .venv).
        self.allow = [_norm(p) for p in allow] + [self.copy, self.submission]
        self.allow += [_norm(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}]
        self.reports = 0
        self.seen: set[str] = set()
        self.busy = False
        self.current_test = ""

    # -- reporting

    def report(self, what: str) -> None:
        if what in self.seen or self.reports >= MAX_REPORTS:
            return
        self.seen.add(what)
        self.reports += 1
        line = json.dumps({"test": self.current_test, "what": what}) + "\n"
        try:
            os.write(self.report_fd, line.encode())
        except OSError:
            pass
        sys.stderr.write(f"grading integrity: {what}\n")

    # -- the audit hook

    def hook(self, event: str, args: tuple) -> None:
        if self.busy:
            return
        if not (
            event in READ_EVENTS
            or event in WRITE_EVENTS
            or event in COMMAND_EVENTS
            or event in ("import", "object.__setattr__", "object.__delattr__")
        ):
            return
        self.busy = True
        try:
            problem = self._check(event, args)
        finally:
            self.busy = False
        if problem:
            self.report(problem)
            raise PermissionError(f"grading integrity: {problem}")

    def _check(self, event: str, args: tuple) -> str | None:
        if event == "import":
            name = str(args[0] or "")
            if name == "solutions" or name.startswith("solutions."):
                return f"the submission imports the reference solution ({name})"
            return None
        if event in ("object.__setattr__", "object.__delattr__"):
            return self._check_patch(args)
        if event in COMMAND_EVENTS:
            return self._check_command(args)
        paths = self._paths(event, args)
        writing = event in WRITE_EVENTS or (event == "open" and _writes(args))
        for raw in paths:
            path = _norm(raw)
            if writing and _inside(path, [self.copy]):
                return f"the submission writes into the instructor's tests: {path}"
            if _inside(path, self.protect) and not _inside(path, self.allow):
                verb = "writes" if writing else "reads"
                return f"the submission {verb} the instructor's files: {path}"
        return None

    @staticmethod
    def _paths(event: str, args: tuple) -> list[str]:
        if event in ("os.rename", "os.symlink", "os.link", "shutil.copyfile", "shutil.copytree"):
            candidates = args[:2]
        elif event == "shutil.move":
            candidates = args[:2]
        else:
            candidates = args[:1]
        out = []
        for value in candidates:
            if isinstance(value, bytes):
                value = os.fsdecode(value)
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            if isinstance(value, str) and value:
                out.append(value)
        return out

    def _check_command(self, args: tuple) -> str | None:
        words: list[str] = []
        for value in args:
            if isinstance(value, (str, bytes, os.PathLike)):
                words.append(os.fsdecode(os.fspath(value)))
            elif isinstance(value, (list, tuple)):
                words += [os.fsdecode(os.fspath(v)) for v in value if isinstance(v, (str, bytes))]
        for word in words:
            for token in word.replace("'", " ").replace('"', " ").replace("=", " ").split():
                if token.startswith(os.sep) or token.startswith("."):
                    path = _norm(token)
                    if _inside(path, self.protect) and not _inside(path, self.allow):
                        return f"the submission runs a command on the instructor's files: {token}"
        return None

    def _check_patch(self, args: tuple) -> str | None:
        target = args[0]
        module = getattr(target, "__module__", None) if isinstance(target, type) else None
        if isinstance(target, types.FunctionType):
            module = target.__module__
        if not isinstance(module, str) or not module.startswith(GUARDED_MODULES):
            return None
        if not self._called_from_submission():
            return None
        name = getattr(target, "__qualname__", repr(target))
        return f"the submission changes {module}.{name}.{args[1]} (pytest or the grading harness)"

    def _called_from_submission(self) -> bool:
        frame = sys._getframe(2)
        depth = 0
        while frame is not None and depth < 40:
            filename = frame.f_code.co_filename
            if not filename.startswith("<") and _inside(_norm(filename), [self.submission]):
                return True
            frame, depth = frame.f_back, depth + 1
        return False


def _writes(args: tuple) -> bool:
    mode = args[1] if len(args) > 1 else "r"
    flags = args[2] if len(args) > 2 else 0
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(
        flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
    )


class Sentinel:
    """A pytest plugin: after each test, nothing of pytest, pluggy or the harness was replaced."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard
        self._modules: dict[str, tuple[types.ModuleType, dict[str, int]]] = {}
        self._plugins: set[int] = set()
        self._hooks: dict[str, list[int]] = {}
        self._config = None

    def pytest_configure(self, config) -> None:
        self._config = config

    def pytest_collection_finish(self, session) -> None:
        self._modules = _module_snapshot()
        self._plugins, self._hooks = _plugin_snapshot(session.config.pluginmanager)

    def pytest_runtest_logstart(self, nodeid: str, location) -> None:
        self._guard.current_test = nodeid

    def pytest_runtest_logfinish(self, nodeid: str, location) -> None:
        self._compare()

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        self._compare()

    def _compare(self) -> None:
        for problem in _module_changes(self._modules) + self._plugin_changes():
            self._guard.report(problem)

    def _plugin_changes(self) -> list[str]:
        if self._config is None or not self._hooks:
            return []
        plugins, hooks = _plugin_snapshot(self._config.pluginmanager)
        problems = []
        if plugins - self._plugins:
            problems.append("the submission registers a pytest plugin")
        for name, impls in hooks.items():
            if name in self._hooks and impls != self._hooks[name]:
                problems.append(f"the submission changes the pytest hook {name}")
        return problems


def _guarded(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in GUARDED_MODULES)


CODE_TYPES = (types.FunctionType, type, types.ModuleType, property, staticmethod, classmethod)


def _module_snapshot() -> dict[str, tuple[types.ModuleType, dict[str, int]]]:
    """Per guarded module: its functions, classes and submodules, and its classes' methods."""
    snapshot = {}
    for name, module in list(sys.modules.items()):
        if not _guarded(name) or not isinstance(module, types.ModuleType):
            continue
        values: dict[str, int] = {}
        for key, value in list(vars(module).items()):
            if not isinstance(value, CODE_TYPES):
                continue
            values[key] = id(value)
            if isinstance(value, type) and value.__module__ == name:
                values[f"{key}.__keys__"] = hash(frozenset(vars(value)))
                for attr, member in list(vars(value).items()):
                    if isinstance(member, CODE_TYPES) and attr != "__dict__":
                        values[f"{key}.{attr}"] = id(member)
        snapshot[name] = (module, values)
    return snapshot


def _lookup(module: types.ModuleType, dotted: str) -> object:
    head, _, attr = dotted.partition(".")
    value = vars(module).get(head)
    if attr:
        value = vars(value).get(attr) if isinstance(value, type) else None
    return value


def _module_changes(snapshot: dict[str, tuple[types.ModuleType, dict[str, int]]]) -> list[str]:
    problems = []
    for name, (module, values) in snapshot.items():
        if sys.modules.get(name) is not module:
            problems.append(f"the submission replaces the module {name}")
            continue
        for key, ident in values.items():
            if key.endswith(".__keys__"):
                cls = vars(module).get(key.removesuffix(".__keys__"))
                now = hash(frozenset(vars(cls))) if isinstance(cls, type) else None
                if now != ident:
                    problems.append(
                        f"the submission adds to {name}.{key.removesuffix('.__keys__')}"
                    )
            elif id(_lookup(module, key)) != ident:
                problems.append(f"the submission replaces {name}.{key}")
    return problems


def _plugin_snapshot(manager) -> tuple[set[int], dict[str, list[int]]]:
    plugins = {id(plugin) for plugin in manager.get_plugins()}
    hooks = {}
    for name in dir(manager.hook):
        caller = getattr(manager.hook, name, None)
        if hasattr(caller, "get_hookimpls"):
            hooks[name] = [id(impl.function) for impl in caller.get_hookimpls()]
    return plugins, hooks


def _clean_sys_path(copy: str, submission: str) -> None:
    """Only the copy, the submission and the interpreter's library folders; no editable finders."""
    libraries = [_norm(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}]
    kept = [p for p in sys.path if p and _inside(_norm(p), libraries)]
    sys.path[:] = [copy, submission, *kept]
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in _origin(f)]
    sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in _origin(h)]
    sys.path_importer_cache.clear()
    for name in list(sys.modules):
        if name == "harness" or name.startswith("harness.") or name.startswith("__editable__"):
            del sys.modules[name]


def _origin(thing: object) -> str:
    return str(getattr(thing, "__module__", "")) + str(type(thing).__module__)


def main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    options, pytest_args = argv[:split], argv[split + 1 :]
    values: dict[str, list[str]] = {}
    for key, value in zip(options[::2], options[1::2], strict=True):
        values.setdefault(key.lstrip("-"), []).append(value)
    copy, submission = values["copy"][0], values["submission"][0]
    _clean_sys_path(copy, submission)
    guard = Guard(
        int(values["report-fd"][0]),
        copy,
        submission,
        values.get("protect", []),
        values.get("allow", []),
    )
    sys.addaudithook(guard.hook)
    import pytest

    return int(pytest.main(pytest_args, plugins=[Sentinel(guard)]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
