"""A small ClickHouse HTTP interface in front of chDB, for the native lab stack.

chDB is the ClickHouse engine as a library; its data directory can be opened by one process only.
This server owns that directory and answers ClickHouse's HTTP protocol for the real
`clickhouse-connect` client, so pytest, spark-submit'ed jobs and notebooks share one database and
lab code is the same against chDB (native stack) and clickhouse-server (docker stack). HTTP itself
(framing, chunked bodies, keep-alive, multipart forms) is Starlette's and uvicorn's; this module
maps ClickHouse's conventions onto one chDB session.

Supported: `/ping`, GET/POST with the query in the `query` parameter and/or the body (plain or
multipart form), `database`, `default_format`, `query_id`, `session_id` (remembers
`SET` statements per session), `param_<name>` bindings, any other ClickHouse setting as a URL
parameter, HTTP basic auth / `X-ClickHouse-User` + `X-ClickHouse-Key` / `user` + `password`
parameters, `INSERT ... FORMAT <fmt>` with the data in the body (optionally compressed with lz4,
zstd, gzip or deflate), results in row formats streamed as the engine produces them, errors as
`Code: N. DB::Exception: ...` with the `X-ClickHouse-Exception-Code` header, and the
`X-ClickHouse-*` response headers clients read. The server's time zone is UTC on every host.

Run it with `python -m harness.ops.chdb_server` (the native stack does: `make up`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import hmac
import json
import os
import re
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request as HttpRequest
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

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
# Formats whose chunks concatenate into one valid result (no header or footer per chunk): these are
# streamed to the client; others (Arrow, Parquet, JSON, ...WithNames) are sent whole.
STREAMED_FORMATS = {
    "native",
    "rowbinary",
    "tabseparated",
    "tsv",
    "tabseparatedraw",
    "tsvraw",
    "csv",
    "jsoneachrow",
    "jsoncompacteachrow",
}
# A result that fits in this many bytes is sent whole, with exact statistics in its summary.
BUFFERED_BYTES = 1 << 20


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


def summary(results: list, body_bytes: int) -> dict[str, str]:
    """`X-ClickHouse-Summary` from chDB's statistics of one result or of a stream's chunks."""
    return {
        "read_rows": str(sum(r.storage_rows_read() for r in results)),
        "read_bytes": str(sum(r.storage_bytes_read() for r in results)),
        "written_rows": str(sum(r.rows_written() for r in results)),
        "written_bytes": str(sum(r.bytes_written() for r in results)),
        "result_rows": str(sum(r.rows_read() for r in results)),
        "result_bytes": str(body_bytes),
        "elapsed_ns": str(int(max((r.elapsed() for r in results), default=0) * 1e9)),
    }


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
    # The rest of a streamed result: chDB's chunks, read while the engine's lock is held.
    rest: Iterator | None = None
    release: Callable[[], None] | None = None


class ResultStream:
    """The body of a streamed result: the buffered head, then chunks as chDB produces them.

    It holds the engine (one chDB session) until the last chunk is sent or the client goes away.
    """

    def __init__(self, result: Result) -> None:
        self.result = result
        self.guard = threading.Lock()
        self.closed = False
        # clickhouse-server (25.11+) frames an error after the first bytes with this tag, sent in
        # the X-ClickHouse-Exception-Tag header; clickhouse-connect looks for it in the stream.
        self.tag = uuid.uuid4().hex[:16]

    def __iter__(self) -> Iterator[bytes]:
        yield self.result.body
        while (chunk := self._fetch()) is not None:
            yield chunk

    def _fetch(self) -> bytes | None:
        with self.guard:
            if self.closed:
                return None
            try:
                chunk = next(self.result.rest, None)
            except Exception as exc:  # failed half-way: the error ends the body, as in ClickHouse
                self._close()
                text, tag = str(engine_error(exc)).encode(), self.tag.encode()
                frame = b"__exception__\r\n%s\r\n%s\n%d %s\r\n__exception__\r\n"
                return frame % (tag, text, len(text), tag)
            if chunk is None:
                self._close()
                return None
            return chunk.bytes()

    def close(self) -> None:
        with self.guard:
            self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.result.rest.close()  # cancels the query when the client left early
            finally:
                self.result.release()


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
        if self.lock.acquire(timeout=10):  # a stream a client never finished must not block exit
            self.lock.release()
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

    def _reject_multi_statements(self, sql: str) -> None:
        """ClickHouse's own parser refuses a second statement, as clickhouse-server's HTTP
        interface does (chDB would run it); other parse errors are left to the query itself."""
        try:
            self.session.query("SELECT formatQuery({q:String})", "TSV", params={"q": sql})
        except Exception as exc:
            error = engine_error(exc)
            if "Multi-statements are not allowed" in str(error):
                text = re.sub(r"\s*: In scope .*(?=\(SYNTAX_ERROR\)$)", " ", str(error), flags=re.S)
                raise ClickHouseError(text, error.code) from None

    # ---- execution
    def execute(self, req: Request) -> Result:
        """Run one request; a streamed result keeps the lock until its stream is closed."""
        self.lock.acquire()
        try:
            result = self._execute(req)
        except BaseException:
            self.lock.release()
            raise
        if result.rest is None:
            self.lock.release()
        else:
            result.release = self.lock.release
        return result

    def _execute(self, req: Request) -> Result:
        session_id = req.params.get("session_id", "")
        wanted = {**self.session_settings.get(session_id, {}), **req.settings}
        self._use(req.params.get("database") or "default")
        self._apply_settings(wanted)
        insert = INSERT_WITH_DATA.match(req.sql)
        if insert:
            return self._insert(insert, req.sql[insert.end() :])
        sql = req.sql.decode("utf-8", errors="replace")
        self._reject_multi_statements(sql)
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
        stats = {
            "written_rows": str(done.rows_written),
            "written_bytes": str(done.bytes_written),
            "elapsed_ns": str(int(done.elapsed * 1e9)),
        }
        return Result(b"", None, stats)

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
        if explicit and explicit.group(1).lower() in STREAMED_FORMATS:
            streamed = self._stream(sql, explicit.group(1), req.bindings)
            if streamed:
                return streamed
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
        return Result(body, result_fmt, summary([out], len(body)))

    def _stream(self, sql: str, fmt: str, bindings: dict[str, str]) -> Result | None:
        """Buffer up to BUFFERED_BYTES of the result; what is left is streamed by the caller.
        None for statements chDB does not stream (DESCRIBE, SHOW, ...): they are run whole."""
        head: list = []
        size = 0
        try:
            chunks = self.session.send_query(sql, fmt, params=bindings or None)
        except Exception as exc:
            if "Streaming query is not supported" in str(exc):
                return None
            raise engine_error(exc) from None
        try:
            for chunk in chunks:
                head.append(chunk)
                size += len(chunk.bytes())
                if size >= BUFFERED_BYTES:
                    break
            else:
                chunks = None
        except Exception as exc:
            raise engine_error(exc) from None
        body = b"".join(chunk.bytes() for chunk in head)
        return Result(body, fmt, summary(head, len(body)), rest=chunks)


def authenticate(request: HttpRequest, params: dict[str, str], user: str, password: str) -> None:
    """HTTP basic auth, `X-ClickHouse-User`/`-Key` or `user`/`password` parameters, as ClickHouse."""
    given_user, given_password = "default", ""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Basic "):
        given_user, _, given_password = base64.b64decode(auth[6:]).decode().partition(":")
    elif "X-ClickHouse-User" in request.headers:
        given_user = request.headers["X-ClickHouse-User"]
        given_password = request.headers.get("X-ClickHouse-Key", "")
    elif "user" in params:
        given_user, given_password = params["user"], params.get("password", "")
    ok_user = hmac.compare_digest(given_user.encode(), user.encode())
    ok_password = hmac.compare_digest(given_password.encode(), password.encode())
    if not (ok_user and ok_password):
        raise ClickHouseError(
            f"Code: 516. DB::Exception: {given_user}: Authentication failed: password is "
            "incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)",
            516,
            401,
        )


async def read_request(request: HttpRequest) -> tuple[dict[str, str], bytes]:
    """URL parameters and the body; a multipart form's fields become parameters."""
    params = dict(request.query_params)
    # Like clickhouse-server: a body is the query (or data) whatever its Content-Type (curl
    # sends x-www-form-urlencoded), except a multipart form, which carries named fields.
    if request.headers.get("Content-Type", "").startswith("multipart/form-data"):
        async with request.form() as form:
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    raise ClickHouseError(
                        "Code: 48. DB::Exception: External data (temporary tables sent with the "
                        "query) is not supported by the chDB lab server. (NOT_IMPLEMENTED)",
                        48,
                    )
                params[name] = value
        return params, b""
    body = await request.body()
    return params, decompress(body, request.headers.get("Content-Encoding", ""))


def log(query_id: str, started: float, what: str) -> None:
    elapsed = time.monotonic() - started
    print(f"{time.strftime('%H:%M:%S')} {query_id[:8]} {elapsed * 1000:7.1f} ms {what}", flush=True)


def make_app(engine: Engine, user: str, password: str) -> Starlette:
    """ClickHouse's HTTP interface, the subset clickhouse-connect uses, over `engine`."""
    server_headers = {
        "X-ClickHouse-Server-Display-Name": "chdb-lab-server",
        "X-ClickHouse-Timezone": engine.timezone,
    }

    async def ping(request: HttpRequest) -> Response:
        return Response(b"Ok.\n", headers=server_headers, media_type="text/plain; charset=UTF-8")

    async def query(request: HttpRequest) -> Response:
        if request.method == "HEAD":
            return Response(b"", headers=server_headers)
        query_id = ""
        started = time.monotonic()
        try:
            params, body = await read_request(request)
            if request.url.path != "/":
                raise ClickHouseError(
                    f"Code: 0. DB::Exception: There is no handle {request.url.path}. (UNKNOWN)",
                    0,
                    404,
                )
            query_id = params.get("query_id") or str(uuid.uuid4())
            authenticate(request, params, user, password)
            text = params.get("query", "").encode()
            sql = text + b"\n" + body if text and body else text or body
            if not sql.strip():
                return Response(
                    b"Ok.\n", headers={**server_headers, "X-ClickHouse-Query-Id": query_id}
                )
            req = Request(sql, params)
            for name, value in params.items():
                if name.startswith("param_"):
                    req.bindings[name[6:]] = value
                elif name not in TRANSPORT_PARAMS:
                    req.settings[name] = value
            result = await run_in_threadpool(engine.execute, req)
        except Exception as exc:
            if not isinstance(exc, ClickHouseError):  # a bug here must still reach the client
                exc = ClickHouseError(
                    f"Code: 1001. DB::Exception: chDB lab server: {exc!r}. (STD_EXCEPTION)", 1001
                )
            log(query_id, started, f"error {exc.code}: {str(exc)[:200]}")
            message = str(exc).rstrip() + f" (version {engine.version} (chDB))\n"
            headers = {
                **server_headers,
                "X-ClickHouse-Query-Id": query_id,
                "X-ClickHouse-Exception-Code": str(exc.code),
            }
            return Response(message, exc.status, headers, "text/plain; charset=UTF-8")
        first_line = req.sql.lstrip()[:150].split(b"\n", 1)[0].decode(errors="replace")
        log(query_id, started, f"ok {'(streaming) ' if result.rest else ''}{first_line}")
        headers = {
            **server_headers,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Summary": json.dumps(result.summary),
        }
        if result.fmt:
            headers["X-ClickHouse-Format"] = result.fmt
        if result.rest is None:
            return Response(result.body, headers=headers, media_type="application/octet-stream")
        stream = ResultStream(result)
        return StreamingResponse(
            stream,
            headers={**headers, "X-ClickHouse-Exception-Tag": stream.tag},
            media_type="application/octet-stream",
            background=BackgroundTask(stream.close),
        )

    methods = ["GET", "POST", "HEAD"]
    routes = [
        Route("/ping", ping, methods=methods),
        Route("/replicas_status", ping, methods=methods),
        Route("/{path:path}", query, methods=methods),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # On SIGTERM / SIGINT uvicorn finishes open requests, runs this, then ends the process.
        yield
        engine.close()
        print("stopped", flush=True)

    return Starlette(routes=routes, lifespan=lifespan)


def serve(host: str, port: int, path: Path) -> None:
    """Run the server until SIGTERM / SIGINT (uvicorn stops gracefully on both)."""
    ep = endpoints()
    engine = Engine(path, ep.clickhouse_db)
    app = make_app(engine, ep.clickhouse_user, ep.clickhouse_password)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        access_log=False,  # one line per query is logged by the app instead
        log_level="warning",
        server_header=False,
        timeout_keep_alive=120,  # clickhouse-connect keeps its connections in a pool
        timeout_graceful_shutdown=10,
    )
    print(f"chDB {engine.version} lab server on http://{host}:{port} (data: {path})", flush=True)
    uvicorn.Server(config).run()


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
