"""Jars from Maven Central for the native stack (Kafka, Connect, Debezium, Spark): one way to fetch
a pom's dependencies into a folder, verify them and tell later whether the folder is still whole.

A fetch leaves a manifest (`.manifest.json`: what was resolved, each jar's size) beside the jars;
a folder is installed when the manifest matches the pom and its properties and every jar is there,
with its size and its zip directory. Maven runs with strict checksums; a jar that still fails a full
zip test (a truncated download in Maven's local repository) is dropped there and fetched again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from harness.ops.stack.base import StackError, log, restore_from_user_cache, save_to_user_cache
from harness.runtime.config import ROOT

MANIFEST = ".manifest.json"
MAVEN_ATTEMPTS = 3


def fingerprint(pom: Path, properties: dict[str, str]) -> str:
    """Identifies one resolution: the pom's content plus the `-D` properties given to Maven."""
    digest = hashlib.sha256(b"manifest 2\n" + pom.read_bytes())
    for key, value in sorted(properties.items()):
        digest.update(f"\n{key}={value}".encode())
    return digest.hexdigest()


def broken_jars(folder: Path, thorough: bool = False) -> list[Path]:
    """Jars under `folder` that are not complete zip files: no zip directory at the end (cheap),
    or, `thorough`, an entry whose CRC does not match."""
    bad = []
    for jar in sorted(folder.rglob("*.jar")):
        try:
            if not zipfile.is_zipfile(jar):
                bad.append(jar)
            elif thorough:
                with zipfile.ZipFile(jar) as zf:
                    if zf.testzip() is not None:
                        bad.append(jar)
        except (OSError, zipfile.BadZipFile, EOFError):
            bad.append(jar)
    return bad


def jars_installed(pom: Path, dest: Path, properties: dict[str, str] | None = None) -> bool:
    """True when `dest` holds exactly what a verified fetch of `pom` with `properties` left there."""
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("fingerprint") != fingerprint(pom, properties or {}) or not manifest["jars"]:
        return False
    for name, size in manifest["jars"].items():
        path = dest / name
        if not path.is_file() or path.stat().st_size != size or not zipfile.is_zipfile(path):
            return False
    return True


def fetch_jars(
    pom: Path,
    dest: Path,
    properties: dict[str, str] | None = None,
    required: tuple[str, ...] = (),
    skip: Callable[[str], bool] = lambda name: False,
) -> list[Path]:
    """Copy `pom`'s runtime dependencies into `dest` (replacing it), verified; idempotent.

    `properties` override the pom's `<properties>` (versions come from infra/.env); `required` jars
    must be among them; jars for which `skip(name)` holds are left out. Maven writes into a scratch
    folder outside `dest`'s parent, so a half-filled folder never sits where a JVM looks for jars.
    """
    properties = properties or {}
    if jars_installed(pom, dest, properties):
        return sorted(dest.glob("*.jar"))
    key = f"jars/{dest.name}-{fingerprint(pom, properties)[:16]}"

    def verified() -> bool:
        return jars_installed(pom, dest, properties) and not broken_jars(dest, thorough=True)

    if restore_from_user_cache(key, dest, verified):
        return sorted(dest.glob("*.jar"))
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            f"Maven (`mvn`, 3.8 or newer) is needed to fetch the jars of {_shown(pom)}; "
            "install it (apt-get install maven)."
        )
    scratch_root = dest.parent.parent
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=scratch_root))
    scratch.chmod(0o755)  # readable by the sandboxed graders' own uids, like any other set-up
    try:
        _fetch_into(mvn, pom, scratch, properties, required, skip)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)
        scratch.rename(dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    save_to_user_cache(key, dest)
    return sorted(dest.glob("*.jar"))


def _fetch_into(
    mvn: str,
    pom: Path,
    scratch: Path,
    properties: dict[str, str],
    required: tuple[str, ...],
    skip: Callable[[str], bool],
) -> None:
    argv = [
        mvn,
        "-q",
        "-B",
        "--strict-checksums",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={scratch}",
        "-DincludeScope=runtime",
        *(f"-D{key}={value}" for key, value in sorted(properties.items())),
    ]
    bad: list[Path] = []
    for attempt in range(1, MAVEN_ATTEMPTS + 1):
        log(f"      fetching the jars of {_shown(pom)} (attempt {attempt}) ...")
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            raise StackError(
                f"Maven could not resolve {pom}: is Maven Central reachable?\n"
                + "\n".join(output[-25:])
            )
        for jar in scratch.glob("*.jar"):
            if skip(jar.name):
                jar.unlink()
        bad = broken_jars(scratch, thorough=True)
        if not bad:
            break
        log(f"      {len(bad)} broken jar(s), fetching again: {', '.join(p.name for p in bad)}")
        for jar in bad:
            jar.unlink(missing_ok=True)
            _forget_in_maven_repo(jar.name)
    if bad:
        raise StackError(
            f"jars still broken after {MAVEN_ATTEMPTS} downloads: {', '.join(p.name for p in bad)}"
        )
    missing = [name for name in required if not (scratch / name).exists()]
    if missing:
        raise StackError(f"{pom} did not bring {', '.join(missing)}; check the pom's versions.")
    manifest = {
        "fingerprint": fingerprint(pom, properties),
        "jars": {jar.name: jar.stat().st_size for jar in sorted(scratch.glob("*.jar"))},
    }
    (scratch / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _forget_in_maven_repo(jar_name: str) -> None:
    """Delete a jar's folder from Maven's local repository so the next run downloads it again."""
    repo = Path(os.environ.get("MAVEN_REPO", Path.home() / ".m2" / "repository"))
    if repo.exists():
        for path in repo.rglob(jar_name):
            shutil.rmtree(path.parent, ignore_errors=True)
