"""The Python half of `scripts/setup_debezium.sh`: fill a connector file's `${VAR}`s and make sure
the tables it captures exist.

    python -m harness.ops.cdc_setup render infra/debezium/opensky-postgres.json   # JSON on stdout
    python -m harness.ops.cdc_setup tables infra/debezium/opensky-postgres.json   # create or wait

`render`: every `${VAR}` comes from `harness.runtime.config.setting` (the environment, then
infra/.env); Kafka Connect's own `${provider:path:key}` references have a colon and are left alone.
PostgreSQL's address is the one the *Connect worker* uses: in the docker stack that is the service
`postgres:5432`, not the host's published port; DEBEZIUM_DATABASE_HOST/PORT override it.

`tables`: for each table of `table.include.list`, reports `exists`, `created` (from its one
definition in `harness.runtime.schema`, `<table>_ddl()`), or waits for another program to create it
(`SETUP_DEBEZIUM_TABLE_WAIT` seconds, default 60) and fails naming the tables still missing.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from harness.runtime.config import setting, stack
from harness.runtime.waits import wait_quietly

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SetupError(RuntimeError):
    """The connector file cannot be rendered, or its tables do not exist."""


def connect_side_postgres() -> tuple[str, str]:
    """PostgreSQL's host and port as the Kafka Connect worker resolves them."""
    if stack() == "docker":
        from harness.ops.docker_stack import in_network_endpoints

        inside = in_network_endpoints()
        host, port = inside["pg_host"], inside["pg_port"]
    else:
        host, port = setting("POSTGRES_HOST"), setting("POSTGRES_PORT")
    return setting("DEBEZIUM_DATABASE_HOST", host), setting("DEBEZIUM_DATABASE_PORT", port)


def render(path: Path) -> dict[str, Any]:
    """The connector file with every `${VAR}` filled; SetupError naming a variable set nowhere."""
    text = path.read_text()
    pg_host, pg_port = connect_side_postgres()
    overrides = {"POSTGRES_HOST": pg_host, "POSTGRES_PORT": pg_port}

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        try:
            found = overrides.get(name) or setting(name)
        except KeyError:
            raise SetupError(
                f"{path} uses ${{{name}}}, which is neither in the environment nor in infra/.env"
            ) from None
        return json.dumps(found)[1:-1]  # escaped for a JSON string

    config = json.loads(_PLACEHOLDER.sub(value, text))
    config.setdefault("name", path.stem)
    return config


def captured_tables(config: dict[str, Any]) -> list[str]:
    """`schema.table` names of `table.include.list` (schema `public` when none is given)."""
    names = [t.strip() for t in config.get("table.include.list", "").split(",") if t.strip()]
    return [n if "." in n else f"public.{n}" for n in names]


def ensure_tables(tables: list[str], wait_s: float = 60.0) -> list[tuple[str, str]]:
    """Create each missing table from its definition, or wait for it; returns (table, what)."""
    from harness.runtime import schema
    from harness.runtime.services import pg_connect

    done: list[tuple[str, str]] = []
    waiting: list[str] = []
    with pg_connect() as conn:
        for table in tables:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]:
                done.append((table, "exists"))
                continue
            ddl = getattr(schema, f"{table.split('.')[-1]}_ddl", None)
            if ddl is None:
                waiting.append(table)
                continue
            with conn.transaction():
                for statement in ddl(table).split(";\n"):
                    conn.execute(statement)
            done.append((table, "created"))

        def all_appeared() -> bool:
            for table in list(waiting):
                if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]:
                    waiting.remove(table)
                    done.append((table, "appeared"))
            return not waiting

        if not wait_quietly(all_appeared, wait_s, every=1.0):
            raise SetupError(
                f"table(s) {', '.join(waiting)} do not exist after {wait_s:g} s, and "
                "harness.runtime.schema has no definition to create them from: create them "
                "first (the program that writes them), or remove them from table.include.list"
            )
    return done


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("render", "tables"):
        print(
            "usage: python -m harness.ops.cdc_setup render|tables CONNECTOR.json", file=sys.stderr
        )
        return 2
    try:
        config = render(Path(args[1]))
        if args[0] == "render":
            print(json.dumps(config))
            return 0
        wait_s = float(os.environ.get("SETUP_DEBEZIUM_TABLE_WAIT", "60"))
        for table, what in ensure_tables(captured_tables(config), wait_s):
            print(f"  {table}: {what}")
    except (RuntimeError, OSError, ValueError) as exc:  # SetupError, ServiceUnavailable, …
        print(f"setup_debezium: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
