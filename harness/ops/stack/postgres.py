"""PostgreSQL for the native stack: Debian's server binaries, `wal_level=logical` for Debezium.

`initdb` and `postgres` refuse to run as root. When the stack runs as root (CI does), both run as
the `postgres` OS user that Debian's package creates, and the data directory must be reachable by
that user: if `STACK_DIR` is not (say it lives under /root, mode 700), the data goes to
/var/tmp/opensky-labs-<hash>/postgres and `.stack/data/postgres` is a symlink to it.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
from functools import cached_property
from pathlib import Path

from harness.ops.stack.base import DATA_ROOT, Service, StackError, apt_install, log, pid_alive
from harness.runtime.config import STACK_DIR, endpoints
from harness.runtime.waits import wait_quietly

OS_USER = "postgres"  # the account Debian's package creates; only used when we are root
SUPERUSER = "postgres"  # bootstrap superuser inside the cluster (trust over the unix socket only)


def _is_root() -> bool:
    return os.geteuid() == 0


def pg_bin_dir() -> Path | None:
    """Newest Debian PostgreSQL server binaries (`/usr/lib/postgresql/<ver>/bin`), or PG_BIN_DIR."""
    override = os.environ.get("PG_BIN_DIR")
    if override:
        return Path(override) if (Path(override) / "postgres").exists() else None
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return None
    versions = sorted(
        (d for d in root.iterdir() if d.name.isdigit() and (d / "bin" / "postgres").exists()),
        key=lambda d: int(d.name),
        reverse=True,
    )
    return versions[0] / "bin" if versions else None


def _as_os_user(argv: list[str]) -> list[str]:
    """Wrap `argv` to run as the postgres OS user when we are root (exec, no extra process)."""
    if not _is_root():
        return argv
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid", OS_USER, "--regid", OS_USER, "--init-groups", "--", *argv]
    return ["runuser", "-u", OS_USER, "--", *argv]


def _os_user_can_traverse(path: Path) -> bool:
    result = subprocess.run(
        ["runuser", "-u", OS_USER, "--", "test", "-x", str(path)], capture_output=True
    )
    return result.returncode == 0


class Postgres(Service, name="postgres", title="PostgreSQL", env="POSTGRES", start_timeout=60):
    # ---- where things live
    @cached_property
    def data_dir(self) -> Path:  # type: ignore[override]
        """The real data directory (see the module docstring for the root case)."""
        link = DATA_ROOT / self.name
        if not _is_root():
            return link
        if link.is_symlink():
            return Path(os.readlink(link))
        if link.exists():
            return link
        DATA_ROOT.mkdir(parents=True, exist_ok=True)
        if _os_user_exists() and _os_user_can_traverse(DATA_ROOT):
            return link
        digest = hashlib.sha1(str(STACK_DIR.resolve()).encode()).hexdigest()[:10]
        return Path("/var/tmp") / f"opensky-labs-{digest}" / self.name

    @property
    def socket_dir(self) -> Path:
        """Unix socket directory: the data directory, unless its path is too long for a socket."""
        if len(str(self.data_dir)) < 90:
            return self.data_dir
        digest = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:10]
        return Path("/tmp") / f"opensky-pg-{digest}"

    @property
    def bin_dir(self) -> Path:
        found = pg_bin_dir()
        if found is None:
            raise StackError(
                "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/<version>/bin). "
                "Install them with: sudo apt-get install -y postgresql   (or set PG_BIN_DIR)."
            )
        return found

    # ---- install
    def installed(self) -> bool:
        return pg_bin_dir() is not None and (not _is_root() or _os_user_exists())

    def install(self) -> None:
        if self.installed():
            return
        if not _is_root():
            raise StackError(
                "PostgreSQL server binaries are missing and we are not root. Install them with: "
                "sudo apt-get install -y postgresql   then run the command again."
            )
        apt_install(["postgresql"], "PostgreSQL (Debian's server binaries)")
        if not self.installed():
            raise StackError("apt-get installed postgresql but no server binaries were found.")
        # Debian's package starts its own cluster on 5432; the lab runs its own server instead.
        if shutil.which("pg_ctlcluster"):
            for conf in Path("/etc/postgresql").glob("*/main"):
                subprocess.run(
                    ["pg_ctlcluster", conf.parent.name, "main", "stop"], capture_output=True
                )

    # ---- data directory
    def prepare(self) -> None:
        data = self.data_dir
        link = DATA_ROOT / self.name
        data.mkdir(parents=True, exist_ok=True)
        if data != link and not link.is_symlink():
            if link.exists():
                link.rmdir()
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(data)
        if _is_root():
            user = pwd.getpwnam(OS_USER)
            os.chown(data, user.pw_uid, user.pw_gid)
        data.chmod(0o700)
        if self.socket_dir != data:
            self.socket_dir.mkdir(parents=True, exist_ok=True)
            if _is_root():
                user = pwd.getpwnam(OS_USER)
                os.chown(self.socket_dir, user.pw_uid, user.pw_gid)
        # A crash leaves postmaster.pid behind; postgres itself ignores it when the pid is gone.
        if (data / "PG_VERSION").exists():
            return
        log(f"      initdb {data}")
        argv = _as_os_user(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ]
        )
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def command(self) -> tuple[list[str], dict[str, str]]:
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "wal_level": "logical",
            "max_replication_slots": "10",
            "max_wal_senders": "10",
            "shared_buffers": "64MB",
            "max_connections": "60",
            "fsync": "off",  # a lab database: speed over crash safety
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_min_messages": "warning",
            "timezone": "UTC",
        }
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return _as_os_user(argv), {"LC_ALL": "C"}

    # ---- health and set-up
    def _superuser_connect(self, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=3,
        )

    def healthy(self) -> bool:
        """A real `SELECT 1` (over our unix socket, as the bootstrap superuser)."""
        import psycopg

        if not (self.socket_dir / f".s.PGSQL.{self.port}").exists():
            return False
        try:
            with self._superuser_connect() as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.Error:
            return False

    def after_start(self) -> None:
        """Create (or update) the lab role and the `opensky` database; idempotent."""
        from psycopg import sql

        ep = endpoints()
        with self._superuser_connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ep.pg_user,))
            verb = "ALTER" if exists.fetchone() else "CREATE"
            conn.execute(
                sql.SQL("{} ROLE {} WITH LOGIN REPLICATION SUPERUSER PASSWORD {}").format(
                    sql.SQL(verb), sql.Identifier(ep.pg_user), sql.Literal(ep.pg_password)
                )
            )
            has_db = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (ep.pg_db,))
            if not has_db.fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(ep.pg_db), sql.Identifier(ep.pg_user)
                    )
                )

    # ---- stop: a fast shutdown (SIGINT) so open clients (Debezium, notebooks) do not hold it up
    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        wait_quietly(lambda: not pid_alive(pid), 30)  # a fast shutdown, then the usual stop
        return super().stop() or True


def _os_user_exists() -> bool:
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        return False
    return True
