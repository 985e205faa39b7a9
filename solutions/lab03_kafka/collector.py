"""Lab 03, part D — the OpenSky collector: poll `/states/all` per region and publish to Kafka.

    python labs/lab03_kafka/collector.py --region europe --iterations 1
    python labs/lab03_kafka/collector.py --region europe --region north_america --interval 60

Settings come from the environment (or `infra/.env`):
  OPENSKY_CLIENT_ID, OPENSKY_CLIENT_SECRET  OAuth2 client credentials (anonymous when unset)
  OPENSKY_API_URL                           the REST API base (default: OpenSky's public API)
  OPENSKY_TOKEN_URL                         the OAuth2 token endpoint (default: OpenSky's)

Each state vector becomes a flat row (`harness.runtime.schema.state_to_row`) published with part B's
`publish_rows` from `kafka_producer.py`, keyed by icao24.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import requests

from harness.runtime.config import TOPIC_RAW, setting
from harness.runtime.labs import import_file
from harness.runtime.schema import state_to_row

OPENSKY_API_URL = "https://opensky-network.org/api"
OPENSKY_TOKEN_URL = (
    "https://auth.opensky-network.org/auth/realms/opensky-network/protocol/openid-connect/token"
)
STATES_PATH = "/states/all"
# OpenSky names the wait in its own header; `Retry-After` is the HTTP standard one.
RETRY_AFTER_HEADERS = ("X-Rate-Limit-Retry-After-Seconds", "Retry-After")
# A token is renewed this many seconds before OpenSky says it expires.
TOKEN_MARGIN_S = 30.0


def _load_sibling(name: str) -> ModuleType:
    """Import `<this folder>/<name>.py` by path (the lab folder is not a package)."""
    path = Path(__file__).resolve().with_name(f"{name}.py")
    module_name = f"_lab03_{name}_{abs(hash(str(path))):x}"
    return sys.modules.get(module_name) or import_file(path, module_name)


kafka_producer = _load_sibling("kafka_producer")


# ------------------------------------------------------------------ given: regions and settings
@dataclass(frozen=True)
class Region:
    """A bounding box in degrees (WGS84), as OpenSky's lamin/lomin/lamax/lomax parameters."""

    name: str
    lamin: float
    lomin: float
    lamax: float
    lomax: float

    def params(self) -> dict[str, float]:
        return {"lamin": self.lamin, "lomin": self.lomin, "lamax": self.lamax, "lomax": self.lomax}


REGIONS: dict[str, Region] = {
    "europe": Region("europe", lamin=35.0, lomin=-25.0, lamax=72.0, lomax=45.0),
    "north_america": Region("north_america", lamin=15.0, lomin=-170.0, lamax=72.0, lomax=-50.0),
}


@dataclass
class CollectorSettings:
    """Where the API is, who we are, and how hard to retry."""

    api_url: str = OPENSKY_API_URL
    token_url: str = OPENSKY_TOKEN_URL
    client_id: str | None = None
    client_secret: str | None = None
    max_retries: int = 5  # retries of one request after HTTP 429 or 5xx, then give up
    backoff_s: float = 1.0  # first wait when the server does not say how long
    max_backoff_s: float = 60.0  # the exponential backoff never waits longer than this
    timeout_s: float = 15.0  # per HTTP request

    @property
    def anonymous(self) -> bool:
        return not (self.client_id and self.client_secret)

    @classmethod
    def from_env(cls) -> CollectorSettings:
        """Settings from OPENSKY_* environment variables (or infra/.env); defaults otherwise."""
        return cls(
            api_url=setting("OPENSKY_API_URL", OPENSKY_API_URL),
            token_url=setting("OPENSKY_TOKEN_URL", OPENSKY_TOKEN_URL),
            client_id=setting("OPENSKY_CLIENT_ID", "") or None,
            client_secret=setting("OPENSKY_CLIENT_SECRET", "") or None,
        )


class CollectorError(RuntimeError):
    """The API answered something the collector cannot use (bad credentials, HTTP error, body)."""


class RateLimited(CollectorError):
    """Still rate-limited (HTTP 429) or failing (5xx) after `max_retries` retries."""


@dataclass
class CollectReport:
    """One collection round: snapshots fetched, state vectors per region, what was published."""

    snapshots: int = 0
    states: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    malformed: int = 0  # state vectors that are not 17/18-entry arrays (counted, not published)
    errors: list[str] = field(default_factory=list)
    delivery: Any = None  # kafka_producer.DeliveryReport

    def summary(self) -> str:
        text = f"{self.snapshots} snapshots, states per region {self.states}, rows {self.rows}"
        if self.malformed:
            text += f", malformed {self.malformed}"
        if self.delivery is not None:
            text += f"; {self.delivery.summary()}"
        return text


# ------------------------------------------------------------------ part D: the API client
class OpenSkyClient:
    """OpenSky's REST API with OAuth2 client credentials and rate-limit handling.

    `sleep` and `clock` are injectable so tests can record waits instead of waiting.
    """

    def __init__(
        self,
        settings: CollectorSettings | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or CollectorSettings.from_env()
        self.session = session or requests.Session()
        self.sleep = sleep
        self.clock = clock
        self.access_token: str | None = None
        self.token_expires_at = 0.0  # on `clock`'s scale

    def token(self) -> str | None:
        """A valid access token (reused until shortly before it expires), or None if anonymous."""
        # BEGIN SOLUTION (part D)
        s = self.settings
        if s.anonymous:
            return None
        if self.access_token and self.clock() < self.token_expires_at:
            return self.access_token
        try:
            response = self.session.post(
                s.token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": s.client_id,
                    "client_secret": s.client_secret,
                },
                timeout=s.timeout_s,
            )
        except requests.RequestException as exc:
            raise CollectorError(f"token request to {s.token_url} failed: {exc}") from exc
        if response.status_code != 200:
            raise CollectorError(
                f"token request to {s.token_url} answered HTTP {response.status_code}: "
                f"{response.text[:200]!r}; check OPENSKY_CLIENT_ID and OPENSKY_CLIENT_SECRET"
            )
        try:
            body = response.json()
            token = body["access_token"]
            expires_in = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as exc:
            raise CollectorError(f"token endpoint sent no access_token: {exc}") from exc
        self.access_token = token
        self.token_expires_at = self.clock() + max(expires_in - TOKEN_MARGIN_S, 0.0)
        return token
        # END SOLUTION

    def retry_delay(self, response: requests.Response, retries: int) -> float:
        """Seconds to wait before retry number `retries` + 1: the server's word, else backoff."""
        # BEGIN SOLUTION (part D)
        for header in RETRY_AFTER_HEADERS:
            text = response.headers.get(header)
            if text is None:
                continue
            try:
                return max(float(text), 0.0)
            except ValueError:
                pass  # e.g. an HTTP date: fall back to our own backoff
        s = self.settings
        return min(s.backoff_s * 2**retries, s.max_backoff_s)
        # END SOLUTION

    def get_states(self, region: Region) -> dict[str, Any]:
        """One `/states/all` snapshot `{"time", "states"}` for `region`; retries on 429 and 5xx."""
        # BEGIN SOLUTION (part D)
        s = self.settings
        url = s.api_url.rstrip("/") + STATES_PATH
        retries = 0
        renewed = False
        while True:
            token = self.token()
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            try:
                response = self.session.get(
                    url, params=region.params(), headers=headers, timeout=s.timeout_s
                )
            except requests.RequestException as exc:
                raise CollectorError(f"GET {url} failed: {exc}") from exc
            status = response.status_code
            if status == 200:
                break
            if status == 401 and token and not renewed:
                self.access_token = None  # revoked or expired early: get a new one, once
                renewed = True
                continue
            if status == 429 or status >= 500:
                if retries >= s.max_retries:
                    raise RateLimited(
                        f"GET {url} still answered HTTP {status} after {retries} retries; "
                        f"wait a while, or authenticate for a larger quota"
                    )
                self.sleep(self.retry_delay(response, retries))
                retries += 1
                continue
            raise CollectorError(f"GET {url} answered HTTP {status}: {response.text[:200]!r}")
        try:
            snapshot = response.json()
        except ValueError as exc:
            raise CollectorError(f"GET {url} did not answer JSON: {exc}") from exc
        if not isinstance(snapshot, dict) or not isinstance(snapshot.get("time"), int):
            raise CollectorError(f"GET {url} answered no snapshot: {str(snapshot)[:200]}")
        return snapshot
        # END SOLUTION


# ------------------------------------------------------------------ part D: collecting
def snapshot_to_rows(snapshot: dict[str, Any], report: CollectReport | None = None) -> list[dict]:
    """The flat rows of a snapshot (`states: null` means none); malformed states are counted."""
    # BEGIN SOLUTION (part D)
    rows = []
    for state in snapshot.get("states") or []:
        try:
            rows.append(state_to_row(snapshot["time"], state))
        except ValueError as exc:
            if report is None:
                raise
            report.malformed += 1
            if len(report.errors) < 10:
                report.errors.append(str(exc))
    return rows
    # END SOLUTION


def collect_once(
    client: OpenSkyClient,
    regions: Iterable[Region],
    topic: str = TOPIC_RAW,
    producer: Any = None,
) -> CollectReport:
    """Fetch one snapshot per region and publish its rows to `topic` with part B's producer."""
    # BEGIN SOLUTION (part D)
    report = CollectReport()
    rows: list[dict[str, Any]] = []
    for region in regions:
        snapshot = client.get_states(region)
        report.snapshots += 1
        region_rows = snapshot_to_rows(snapshot, report)
        report.states[region.name] = len(region_rows)
        rows.extend(region_rows)
    report.rows = len(rows)
    report.delivery = kafka_producer.publish_rows(rows, topic, producer=producer)
    return report
    # END SOLUTION


# ------------------------------------------------------------------ given: the loop and the CLI
def run(
    regions: list[Region],
    topic: str = TOPIC_RAW,
    interval_s: float = 60.0,
    iterations: int = 0,
    client: OpenSkyClient | None = None,
) -> None:
    """Collect every `interval_s` seconds, `iterations` times (0: until Ctrl-C)."""
    from confluent_kafka import Producer

    client = client or OpenSkyClient()
    mode = "anonymous" if client.settings.anonymous else f"client {client.settings.client_id}"
    print(f"collecting {[r.name for r in regions]} from {client.settings.api_url} ({mode})")
    producer = Producer(kafka_producer.producer_config())
    done = 0
    try:
        while iterations == 0 or done < iterations:
            started = time.monotonic()
            report = collect_once(client, regions, topic, producer=producer)
            done += 1
            print(f"[{done}] {report.summary()}", flush=True)
            if iterations == 0 or done < iterations:
                time.sleep(max(interval_s - (time.monotonic() - started), 0.0))
    except KeyboardInterrupt:
        print("stopped")
    finally:
        producer.flush(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--region", action="append", choices=sorted(REGIONS), help="repeatable; default: all"
    )
    parser.add_argument("--topic", default=TOPIC_RAW)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between rounds")
    parser.add_argument("--iterations", type=int, default=0, help="0 = until Ctrl-C")
    args = parser.parse_args(argv)
    regions = [REGIONS[name] for name in (args.region or sorted(REGIONS))]
    run(regions, args.topic, args.interval, args.iterations)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
