"""A small ClickHouse HTTP interface in front of chDB, for the native lab stack.

chDB is the ClickHouse engine as a library; its data directory can be opened by one process only.
This server owns that directory and speaks enough of ClickHouse's HTTP protocol for the real
`clickhouse-connect` client, so pytest, spark-submit'ed jobs and notebooks share one database and
lab code is the same against chDB (native stack) and clickhouse-server (docker stack).

Supported: `/ping`, GET/POST with the query in the `query` parameter and/or the body (plain or
multipart form), `database`, `default_format`, `query_id`, `session_id` (remembers
`SET` statements per session), `param_<name>` bindings, any other ClickHouse setting as a URL
parameter, HTTP basic auth / `X-ClickHouse-User` + `X-ClickHouse-Key` / `user` + `password`
parameters, `INSERT ... FORMAT <fmt>` with the data in the body (chunked or not, optionally
compressed with lz4, zstd, gzip or deflate), errors as `Code: N. DB::Exception: ...` with the
`X-ClickHouse-Exception-Code` header, and the `X-ClickHouse-*` response headers clients read.

Run it with `python -m harness.ops.chdb_server` (the native stack does: `make up`).
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import email.policy
import gzip
import hmac
import json
import os
import re
import signal
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from harness.runtime.config import STACK_DIR, endpoints

# URL parameters that steer the HTTP layer; everything else that is not a `param_` binding is a
# ClickHouse setting, applied with SET for the duration of the request.
TRANSPORT_PARAMS = {
    "query",
    "database",
    "default_format",
    "query_id",
    "session_id",
    "session_timeout",
    "session_check",
    "user",
    "password",
    "quota_key",
    "role",
    "buffer_size",
    "wait_end_of_query",
    "compress",
    "decompress",
    "enable_http_compression",
    "http_zlib_compression_level",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "cancel_http_readonly_queries_on_client_close",
    "client_protocol_version",
    "http_response_headers",
    # All clients share one chDB session; `readonly` would lock it, so it is not applied.
    "readonly",
}
SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# `INSERT INTO <target> FORMAT <fmt>` followed by the data (no quotes allowed in the target, so a
# literal 'FORMAT' inside VALUES never matches).
INSERT_WITH_DATA = re.compile(
    rb"^\s*INSERT\s+INTO\s+([^']+?)\s+FORMAT\s+(\w+)[ \t]*(?:\r?\n)?", re.IGNORECASE | re.DOTALL
)
TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
SET_STATEMENT = re.compile(r"^\s*SET\s+(?!ROLE\b)", re.IGNORECASE)
USE_STATEMENT = re.compile(r"^\s*USE\s", re.IGNORECASE)
ERROR_CODE = re.compile(r"Code: (\d+)\.")
# SQL split into string literals, quoted identifiers, comments, `;` and other text: enough to
# find a second statement, which clickhouse-server's HTTP interface refuses (chDB would run it).
SQL_TOKEN = re.compile(
    r"""'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`"""
    r"""|--[^\n]*|\#[^\n]*|/\*.*?\*/|;|[^'"`;#/-]+|.""",
    re.DOTALL,
)


class ClickHouseError(Exception):
    """An error reported to the client the way ClickHouse does."""

    def __init__(self, message: str, code: int = 0, status: int = 500) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def engine_error(exc: Exception) -> ClickHouseError:
    """Turn a chDB exception into ClickHouse's `Code: N. DB::Exception: ...` text."""
    text = str(exc)
    start = text.find("Code: ")
    if start > 0:
        text = text[start:]
    match = ERROR_CODE.match(text)
    if match:
        return ClickHouseError(text.strip(), int(match.group(1)))
    return ClickHouseError(f"Code: 1001. DB::Exception: {text.strip()}. (STD_EXCEPTION)", 1001)


def reject_multi_statements(sql: str) -> None:
    """Raise ClickHouse's syntax error when `sql` holds more than one statement."""
    semicolon = None
    for token in SQL_TOKEN.finditer(sql):
        text = token.group()
        if semicolon is None:
            if text == ";":
                semicolon = token.start()
        elif text.strip() and text != ";" and not text.startswith(("--", "#", "/*")):
            raise ClickHouseError(
                "Code: 62. DB::Exception: Syntax error (Multi-statements are not allowed): "
                f"failed at position {semicolon + 1}: {sql[semicolon : semicolon + 40]!r}. "
                "Send one statement per query. (SYNTAX_ERROR)",
                62,
            )


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def decompress(data: bytes, encoding: str) -> bytes:
    """Undo the request's Content-Encoding (clickhouse-connect compresses inserts)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding == "zstd":
        from backports import zstd  # the zstd module clickhouse-connect itself uses

        return zstd.decompress(data)
    if encoding == "lz4":
        import lz4.frame

        out, rest = [], data
        while rest:  # one LZ4 frame per block: decompress them one after the other
            decoder = lz4.frame.LZ4FrameDecompressor()
            out.append(decoder.decompress(rest))
            rest = decoder.unused_data
        return b"".join(out)
    raise ClickHouseError(
        f"Code: 1. DB::Exception: Unknown Content-Encoding {encoding!r}. (UNSUPPORTED_METHOD)", 1
    )


@dataclass
class Request:
    """One HTTP request, reduced to what the engine needs."""

    sql: bytes
    params: dict[str, str]
    settings: dict[str, str] = field(default_factory=dict)
    bindings: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    body: bytes
    fmt: str | None
    summary: dict[str, str]


class Engine:
    """One persistent chDB session; every call to it is serialised by a lock."""

    def __init__(self, path: Path, database: str) -> None:
        # UTC whatever the host's zone, like clickhouse-server: chDB fixes its zone from TZ when
        # the library loads, so it is imported only now.
        os.environ["TZ"] = "UTC"
        time.tzset()
        import chdb.session

        path.mkdir(parents=True, exist_ok=True)
        self.session = chdb.session.Session(str(path))
        self.lock = threading.Lock()
        self.applied: dict[str, str] = {}  # settings currently SET on the chDB session
        self.session_settings: dict[str, dict[str, str]] = {}  # per HTTP session_id
        self.current_db: str | None = None
        self.run(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        version, tz = self.run("SELECT version(), timezone()").bytes().decode().split("\t")
        self.version, self.timezone = version.strip(), tz.strip()

    def run(self, sql: str, fmt: str = "TabSeparated", params: dict[str, str] | None = None):
        try:
            return self.session.query(sql, fmt, params=params or None)
        except Exception as exc:  # chDB raises ChdbError / RuntimeError with ClickHouse's text
            raise engine_error(exc) from None

    def close(self) -> None:
        with self.lock:
            self.session.close()

    # ---- per-request state: database and settings
    def _use(self, database: str) -> None:
        if database != self.current_db:
            self.current_db = None
            self.run(f"USE `{database.replace('`', '')}`")
            self.current_db = database

    def _apply_settings(self, wanted: dict[str, str]) -> None:
        for name in [n for n in self.applied if n not in wanted]:
            self.run(f"SET {name} = DEFAULT")
            del self.applied[name]
        for name, value in wanted.items():
            if self.applied.get(name) != value:
                if not SETTING_NAME.match(name):
                    raise ClickHouseError(
                        f"Code: 115. DB::Exception: Unknown setting '{name}'. (UNKNOWN_SETTING)",
                        115,
                    )
                self.run(f"SET {name} = {quote_literal(value)}")
                self.applied[name] = value

    def _changed_settings(self) -> dict[str, str]:
        out = self.run("SELECT name, value FROM system.settings WHERE changed", "JSONEachRow")
        rows = [json.loads(line) for line in out.bytes().splitlines() if line.strip()]
        return {row["name"]: row["value"] for row in rows}

    # ---- execution
    def execute(self, req: Request) -> Result:
        session_id = req.params.get("session_id", "")
        with self.lock:
            wanted = {**self.session_settings.get(session_id, {}), **req.settings}
            self._use(req.params.get("database") or "default")
            self._apply_settings(wanted)
            insert = INSERT_WITH_DATA.match(req.sql)
            if insert:
                return self._insert(insert, req.sql[insert.end() :])
            sql = req.sql.decode("utf-8", errors="replace")
            reject_multi_statements(sql)
            if SET_STATEMENT.match(sql):
                return self._set(sql, session_id)
            result = self._query(sql, req)
            if USE_STATEMENT.match(sql):
                self.current_db = None
            return result

    def _insert(self, match: re.Match, data: bytes) -> Result:
        target, fmt = match.group(1).decode(), match.group(2).decode()
        try:
            inserter = self.session.send_insert(f"INSERT INTO {target}", fmt)
            if data:
                inserter.append(data)
            done = inserter.finish()
        except Exception as exc:
            raise engine_error(exc) from None
        summary = {
            "written_rows": str(done.rows_written),
            "written_bytes": str(done.bytes_written),
            "elapsed_ns": str(int(done.elapsed * 1e9)),
        }
        return Result(b"", None, summary)

    def _set(self, sql: str, session_id: str) -> Result:
        if re.search(r"\breadonly\b", sql, re.IGNORECASE):
            raise ClickHouseError(
                "Code: 48. DB::Exception: SET readonly is not supported by the chDB lab server: "
                "all clients share one engine session. (NOT_IMPLEMENTED)",
                48,
            )
        before = self._changed_settings()
        self.run(sql)
        after = self._changed_settings()
        changes = {k: v for k, v in after.items() if before.get(k) != v}
        if session_id:  # like ClickHouse: a SET lasts for the session, else for this query only
            self.session_settings.setdefault(session_id, {}).update(changes)
            self.applied.update(changes)
        else:
            for name in changes:
                value = self.applied.get(name)
                self.run(f"SET {name} = {'DEFAULT' if value is None else quote_literal(value)}")
        return Result(b"", None, {})

    def _query(self, sql: str, req: Request) -> Result:
        explicit = TRAILING_FORMAT.search(sql)
        fmt = explicit.group(1) if explicit else req.params.get("default_format", "TabSeparated")
        # With no FORMAT clause, ask for the header line too: statements that produce a result
        # always print it, DDL prints nothing. That tells which responses carry a result
        # (X-ClickHouse-Format), as clickhouse-server reports it.
        probe = not explicit and fmt == "TabSeparated"
        out = self.run(sql, "TabSeparatedWithNames" if probe else fmt, req.bindings)
        body = out.bytes() or b""
        result_fmt: str | None = fmt
        if probe:
            if body:
                body = body.split(b"\n", 1)[1] if b"\n" in body else b""
            else:
                result_fmt = None
        summary = {
            "read_rows": str(out.storage_rows_read()),
            "read_bytes": str(out.storage_bytes_read()),
            "written_rows": str(out.rows_written()),
            "written_bytes": str(out.bytes_written()),
            "result_rows": str(out.rows_read()),
            "result_bytes": str(len(body)),
            "elapsed_ns": str(int(out.elapsed() * 1e9)),
        }
        return Result(body, result_fmt, summary)


class Handler(BaseHTTPRequestHandler):
    """ClickHouse's HTTP interface, the subset clickhouse-connect uses."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server_version = "chDB-lab-server"
    engine: Engine
    user: str
    password: str

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._reply(200, b"", {}, head=True)

    def log_message(self, format: str, *args) -> None:  # noqa: A002  (stdlib signature)
        pass  # one line per query is logged by _handle instead

    # ---- request parsing
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _parse(self) -> tuple[dict[str, str], bytes]:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        body = self._read_body()
        ctype = self.headers.get("Content-Type", "")
        # Like clickhouse-server: a body is the query (or data) whatever its Content-Type (curl
        # sends x-www-form-urlencoded), except a multipart form, which carries named fields.
        if ctype.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body
            )
            for part in message.iter_parts():
                if part.get_filename():
                    raise ClickHouseError(
                        "Code: 48. DB::Exception: External data (temporary tables sent with the "
                        "query) is not supported by the chDB lab server. (NOT_IMPLEMENTED)",
                        48,
                    )
                name = part.get_param("name", header="content-disposition")
                params[name] = (part.get_payload(decode=True) or b"").decode()
            body = b""
        else:
            body = decompress(body, self.headers.get("Content-Encoding", ""))
        return params, body

    def _authenticate(self, params: dict[str, str]) -> None:
        user, password = "default", ""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        elif "X-ClickHouse-User" in self.headers:
            user = self.headers["X-ClickHouse-User"]
            password = self.headers.get("X-ClickHouse-Key", "")
        elif "user" in params:
            user, password = params["user"], params.get("password", "")
        ok_user = hmac.compare_digest(user.encode(), self.user.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        if not (ok_user and ok_password):
            raise ClickHouseError(
                f"Code: 516. DB::Exception: {user}: Authentication failed: password is incorrect, "
                "or there is no user with such name. (AUTHENTICATION_FAILED)",
                516,
                401,
            )

    # ---- responses
    def _reply(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-ClickHouse-Server-Display-Name", "chdb-lab-server")
        self.send_header("X-ClickHouse-Timezone", self.engine.timezone)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _handle(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/ping", "/replicas_status"):
            self._read_body()
            self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        query_id = ""
        started = time.monotonic()
        try:
            params, body = self._parse()  # always consume the body: the connection is kept
            if path != "/":
                raise ClickHouseError(
                    f"Code: 0. DB::Exception: There is no handle {path}. (UNKNOWN)", 0, 404
                )
            query_id = params.get("query_id") or str(uuid.uuid4())
            self._authenticate(params)
            text = params.get("query", "").encode()
            sql = text + b"\n" + body if text and body else text or body
            if not sql.strip():
                self._reply(200, b"Ok.\n", {"X-ClickHouse-Query-Id": query_id})
                return
            request = Request(sql, params)
            for name, value in params.items():
                if name.startswith("param_"):
                    request.bindings[name[6:]] = value
                elif name not in TRANSPORT_PARAMS:
                    request.settings[name] = value
            result = self.engine.execute(request)
        except ClickHouseError as exc:
            self._log(query_id, started, f"error {exc.code}: {str(exc)[:200]}")
            message = str(exc).rstrip() + f" (version {self.engine.version} (chDB))\n"
            headers = {
                "X-ClickHouse-Query-Id": query_id,
                "X-ClickHouse-Exception-Code": str(exc.code),
                "Content-Type": "text/plain; charset=UTF-8",
            }
            self._reply(exc.status, message.encode(), headers)
            return
        except Exception as exc:  # a bug here must still reach the client as an error
            self._log(query_id, started, f"internal error {exc!r}")
            message = f"Code: 1001. DB::Exception: chDB lab server: {exc!r}. (STD_EXCEPTION)\n"
            headers = {"X-ClickHouse-Exception-Code": "1001", "X-ClickHouse-Query-Id": query_id}
            self._reply(500, message.encode(), headers)
            return
        first_line = request.sql.lstrip()[:150].split(b"\n", 1)[0].decode(errors="replace")
        self._log(query_id, started, f"ok {first_line}")
        headers = {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Summary": json.dumps(result.summary),
            "Content-Type": "application/octet-stream",
        }
        if result.fmt:
            headers["X-ClickHouse-Format"] = result.fmt
        self._reply(200, result.body, headers)

    def _log(self, query_id: str, started: float, what: str) -> None:
        elapsed = time.monotonic() - started
        print(
            f"{time.strftime('%H:%M:%S')} {query_id[:8]} {elapsed * 1000:7.1f} ms {what}",
            flush=True,
        )


def serve(host: str, port: int, path: Path) -> None:
    """Run the server until SIGTERM / SIGINT."""
    ep = endpoints()
    engine = Engine(path, ep.clickhouse_db)
    handler = type(
        "LabHandler",
        (Handler,),
        {"engine": engine, "user": ep.clickhouse_user, "password": ep.clickhouse_password},
    )
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True

    def stop(signum, _frame) -> None:
        print(f"signal {signum}: stopping", flush=True)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"chDB {engine.version} lab server on http://{host}:{port} (data: {path})", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        engine.close()
        print("stopped", flush=True)


def main() -> None:
    ep = endpoints()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=ep.clickhouse_host)
    parser.add_argument("--port", type=int, default=ep.clickhouse_port)
    parser.add_argument("--path", type=Path, default=STACK_DIR / "data" / "clickhouse")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost"):
        parser.error("the chDB lab server only listens on the loopback interface")
    serve(args.host, args.port, args.path)


if __name__ == "__main__":
    main()
