"""Fixtures for Lab 03: the modules under test, throw-away topics and consumer groups, bounded
readers of the real broker, and a local stand-in for the OpenSky REST API.

The suite produces and reads with its own clients (never with the code under test), so each part
is graded on its own.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from harness.grading import lab_module
from harness.grading.testkit import read_topic, wait_until
from harness.runtime.config import endpoints
from harness.runtime.data import load_snapshots
from harness.runtime.services import ServiceUnavailable, kafka_admin, kafka_config

WAIT_S = 30.0  # the bound on every wait for the broker
TOKEN_PATH = "/auth/realms/opensky-network/token"  # where the fake OpenSky hands out tokens


# ------------------------------------------------------------------ modules under test
@pytest.fixture(scope="module")
def kp():
    """The lab's `kafka_producer` module (labs/ or solutions/, from `--target`)."""
    return lab_module("lab03_kafka", "kafka_producer")


@pytest.fixture(scope="module")
def collector():
    """The lab's `collector` module (labs/ or solutions/, from `--target`)."""
    return lab_module("lab03_kafka", "collector")


# ------------------------------------------------------------------ broker, topics, groups
@pytest.fixture(scope="session")
def admin() -> AdminClient:
    """An admin client of the lab broker (raises ServiceUnavailable when it does not answer)."""
    client = kafka_admin()
    try:
        client.list_topics(timeout=10)
    except KafkaException as exc:  # the port is open but no broker answers
        raise ServiceUnavailable("Kafka broker", endpoints().kafka_bootstrap, str(exc)) from exc
    return client


def unique(purpose: str) -> str:
    """A name no other test (or student) uses."""
    return f"lab03_{purpose}_{uuid.uuid4().hex[:10]}"


class Topics:
    """Hands out unique topic names, creates them when asked; deletes them all afterwards."""

    def __init__(self, admin: AdminClient) -> None:
        self.admin = admin
        self.names: list[str] = []

    unique = staticmethod(unique)

    def adopt(self, name: str) -> str:
        """Delete `name` after the test (a topic the code under test creates)."""
        self.names.append(name)
        return name

    def new(self, purpose: str, partitions: int = 1, config: dict[str, str] | None = None) -> str:
        """A fresh topic with `partitions` partitions, created by the suite itself."""
        name = self.adopt(unique(purpose))
        future = self.admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )[name]
        future.result(timeout=WAIT_S)

        def listed() -> bool:
            meta = self.admin.list_topics(topic=name, timeout=10).topics.get(name)
            return meta is not None and meta.error is None and len(meta.partitions) == partitions

        wait_until(listed, f"topic {name} in the broker's metadata", WAIT_S, every=0.1)
        return name

    def delete_all(self) -> None:
        existing = set(self.admin.list_topics(timeout=10).topics)
        doomed = [n for n in self.names if n in existing]
        if not doomed:
            return
        for name, future in self.admin.delete_topics(doomed, operation_timeout=15).items():
            try:
                future.result(timeout=WAIT_S)
            except Exception as exc:  # cleanup must never hide the test's own result
                warnings.warn(f"could not delete test topic {name}: {exc}", stacklevel=1)


@pytest.fixture
def topics(admin) -> Iterator[Topics]:
    """Unique topics for this test; every one is deleted afterwards."""
    handed_out = Topics(admin)
    yield handed_out
    handed_out.delete_all()


@pytest.fixture
def groups(admin) -> Iterator[Any]:
    """Hands out unique consumer-group ids; the groups are deleted afterwards."""
    names: list[str] = []

    def new_group(purpose: str = "group") -> str:
        names.append(unique(purpose))
        return names[-1]

    yield new_group
    if names:
        for _name, future in admin.delete_consumer_groups(names, request_timeout=15).items():
            try:
                future.result(timeout=WAIT_S)
            except KafkaException:
                pass  # never used (no offsets): nothing to delete


# ------------------------------------------------------------------ reading and writing
def drain(consumer: Consumer, n: int, timeout: float = WAIT_S) -> list[Message]:
    """Poll `consumer` until `n` messages arrived or `timeout` seconds passed (then fewer)."""
    received: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(received) < n and (left := deadline - time.monotonic()) > 0:
        msg = consumer.poll(min(left, 0.5))
        if msg is None:
            continue
        if msg.error() is not None:
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(msg.error())
        received.append(msg)
    return received


def read_all(topic: str, timeout: float = WAIT_S) -> list[Message]:
    """Every message now in `topic`, from the earliest offset of each partition to its end.

    Reads with a throw-away group id and commits nothing; bounded by `timeout` (the shared test
    kit's reader, which also waits for the partitions' leaders).
    """
    return read_topic(topic, timeout)


@dataclass
class Sent:
    """Where the suite's own producer put a message."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int
    timestamp_ms: int


def produce(
    topic: str,
    messages: Iterable[dict[str, Any]],
) -> list[Sent]:
    """Produce with the suite's own producer; each message: value, and optional key, partition,
    timestamp (ms). Returns where each landed, in sending order."""
    producer = Producer(kafka_config(**{"acks": "all", "enable.idempotence": True}))
    sent: list[Sent | None] = []
    problems: list[str] = []

    def on_delivery(index: int):
        def callback(err, msg) -> None:
            if err is not None:
                problems.append(str(err))
                return
            sent[index] = Sent(
                msg.key(), msg.value(), msg.partition(), msg.offset(), msg.timestamp()[1]
            )

        return callback

    for index, message in enumerate(messages):
        sent.append(None)
        value = message["value"]
        if not isinstance(value, bytes):
            value = json.dumps(value).encode()
        key = message.get("key")
        kwargs: dict[str, Any] = {"value": value, "on_delivery": on_delivery(index)}
        if key is not None:
            kwargs["key"] = key.encode() if isinstance(key, str) else key
        if message.get("partition") is not None:
            kwargs["partition"] = message["partition"]
        if message.get("timestamp") is not None:
            kwargs["timestamp"] = message["timestamp"]
        producer.produce(topic, **kwargs)
    left = producer.flush(WAIT_S)
    if left or problems or any(s is None for s in sent):
        raise AssertionError(f"test set-up: producing to {topic} failed: {problems[:3]}")
    return [s for s in sent if s is not None]


def committed_offsets(topic: str, group_id: str, partitions: Iterable[int]) -> dict[int, int]:
    """The group's committed offset per partition (-1 when nothing is committed)."""
    consumer = Consumer(kafka_config(**{"group.id": group_id, "enable.auto.commit": False}))
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=WAIT_S)
        return {tp.partition: (tp.offset if tp.offset >= 0 else -1) for tp in found}
    finally:
        consumer.close()


def commit_offsets(topic: str, group_id: str, offsets: dict[int, int]) -> None:
    """Commit `offsets` ({partition: next offset}) for `group_id` without joining the group."""
    consumer = Consumer(kafka_config(**{"group.id": group_id, "enable.auto.commit": False}))
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def describe_topic(admin: AdminClient, name: str) -> tuple[int, dict[str, str]]:
    """(partition count, configs) of topic `name` as the broker reports them."""
    meta = admin.list_topics(topic=name, timeout=10).topics.get(name)
    if meta is None or meta.error is not None:
        return 0, {}
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    entries = admin.describe_configs([resource])[resource].result(timeout=WAIT_S)
    return len(meta.partitions), {key: entry.value for key, entry in entries.items()}


class Broker:
    """The suite's own Kafka helpers, independent of the code under test (see the functions)."""

    admin: AdminClient

    def __init__(self, admin: AdminClient) -> None:
        self.admin = admin

    drain = staticmethod(drain)
    read_all = staticmethod(read_all)
    produce = staticmethod(produce)
    committed_offsets = staticmethod(committed_offsets)
    commit_offsets = staticmethod(commit_offsets)

    def describe_topic(self, name: str) -> tuple[int, dict[str, str]]:
        return describe_topic(self.admin, name)

    def delete_before(self, topic: str, partition: int, offset: int) -> None:
        """Delete the messages before `offset` in one partition: its low watermark becomes `offset`."""
        futures = self.admin.delete_records([TopicPartition(topic, partition, offset)])
        for future in futures.values():
            future.result(timeout=WAIT_S)


@pytest.fixture
def broker(admin) -> Broker:
    """Bounded readers and a producer of the suite's own: `broker.read_all(topic)`, ..."""
    return Broker(admin)


# ------------------------------------------------------------------ a local OpenSky
@pytest.fixture(scope="session")
def recorded_snapshots() -> list[dict[str, Any]]:
    """A few snapshots of the shipped recording (real OpenSky state vectors around Paris)."""
    snapshots = [s for s in load_snapshots() if s["states"]]
    return snapshots[:5]


@dataclass
class Request:
    """One request the local OpenSky received."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # lower-case names
    form: dict[str, str]


@dataclass
class FakeOpenSky:
    """Replays recorded `/states/all` snapshots, filtered to the requested bounding box.

    Tokens: POST the client credentials as a form to `token_url`; each lives `expires_in` seconds
    (on the client's clock: the server does not check it) unless `revoke_tokens()` is called.
    `throttle(...)` queues HTTP 429 answers (with the given headers) and `fail(...)` other error
    statuses for the next `/states/all` requests.
    """

    snapshots: list[dict[str, Any]]
    client_id: str
    client_secret: str
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    served: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    expires_in: int = 1800
    pending_errors: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def token_url(self) -> str:
        return self.api_url.removesuffix("/api") + TOKEN_PATH

    def throttle(self, *headers: dict[str, str]) -> None:
        """Answer the next len(headers) `/states/all` requests with 429 and these headers."""
        with self.lock:
            self.pending_errors.extend((429, h) for h in headers)

    def fail(self, *statuses: int) -> None:
        """Answer the next len(statuses) `/states/all` requests with these HTTP statuses."""
        with self.lock:
            self.pending_errors.extend((status, {}) for status in statuses)

    def revoke_tokens(self) -> None:
        """Every token handed out so far is refused from now on (HTTP 401)."""
        with self.lock:
            self.revoked.update(self.tokens)

    def states_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path == "/api/states/all"]

    def token_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path == TOKEN_PATH]

    # -- answers
    def answer(self, request: Request) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.requests.append(request)
            if request.path == TOKEN_PATH and request.method == "POST":
                return self._token(request)
            if request.path == "/api/states/all" and request.method == "GET":
                if self.pending_errors:
                    status, headers = self.pending_errors.pop(0)
                    return status, headers, {"error": f"HTTP {status} (played by the test)"}
                return self._states(request)
        return 404, {}, {"error": f"no such endpoint: {request.method} {request.path}"}

    def _token(self, request: Request) -> tuple[int, dict[str, str], Any]:
        form = request.form
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return 401, {}, {"error": "invalid_client"}
        token = f"token-{uuid.uuid4().hex}"
        self.tokens.append(token)
        return (
            200,
            {},
            {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"},
        )

    def _states(self, request: Request) -> tuple[int, dict[str, str], Any]:
        auth = request.headers.get("authorization")
        token = None if auth is None else auth.removeprefix("Bearer ")
        if token is not None and (token not in self.tokens or token in self.revoked):
            return 401, {}, {"error": "invalid token"}
        snapshot = self.snapshots[len(self.served) % len(self.snapshots)]
        states = snapshot["states"] or []
        try:
            box = [float(request.params[k]) for k in ("lamin", "lomin", "lamax", "lomax")]
        except (KeyError, ValueError):
            box = None
        if box is not None:
            lamin, lomin, lamax, lomax = box
            states = [
                s
                for s in states
                if s[6] is not None
                and s[5] is not None
                and lamin <= s[6] <= lamax
                and lomin <= s[5] <= lomax
            ]
        body = {"time": snapshot["time"], "states": states or None}
        self.served.append(body)
        return 200, {}, body


def _handler_for(fake: FakeOpenSky) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self, method: str) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            form = {}
            if "application/x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
                form = {k: v[0] for k, v in parse_qs(body).items()}
            request = Request(
                method=method,
                path=url.path,
                params={k: v[0] for k, v in parse_qs(url.query).items()},
                headers={k.lower(): v for k, v in self.headers.items()},
                form=form,
            )
            status, headers, payload = fake.answer(request)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest's output clean
            pass

    return Handler


@pytest.fixture
def opensky(recorded_snapshots, monkeypatch) -> Iterator[FakeOpenSky]:
    """A local OpenSky REST API on 127.0.0.1 (random free port) replaying recorded snapshots."""
    fake = FakeOpenSky(
        snapshots=recorded_snapshots,
        client_id="lab03-student",
        client_secret=f"secret-{uuid.uuid4().hex[:8]}",
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(fake))
    fake.port = server.server_address[1]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in (
        "OPENSKY_CLIENT_ID",
        "OPENSKY_CLIENT_SECRET",
        "OPENSKY_API_URL",
        "OPENSKY_TOKEN_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)
