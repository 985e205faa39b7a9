"""Lab 09, part C — the live dashboard: where the aircraft are, how many per country, open alerts.

    make dashboard                                    # http://127.0.0.1:$DASHBOARD_PORT
    streamlit run labs/lab09_alerts/dashboard.py      # the same, by hand

A Streamlit page that reads ClickHouse every few seconds: the latest position of each aircraft
(from `flights_streaming`, which Lab 02's streaming job fills), drawn on plain longitude/latitude
axes (no map tiles from the internet), the number of aircraft per country, and the alert episodes
still open (from `flight_alerts`, which `alerts.py` fills). Where it reads from comes from the
environment: `DASHBOARD_DATABASE` (default `opensky`), `DASHBOARD_POSITIONS_TABLE`,
`DASHBOARD_ALERTS_TABLE`, `DASHBOARD_REFRESH_SECONDS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.runtime.config import CLICKHOUSE_DB, setting

POSITION_COLUMNS = [
    "icao24",
    "callsign",
    "origin_country",
    "last_contact",
    "longitude",
    "latitude",
    "baro_altitude",
    "on_ground",
]
COUNT_COLUMNS = ["origin_country", "aircraft"]
ALERT_COLUMNS = [
    "alert_id",
    "icao24",
    "callsign",
    "rule",
    "opened_at",
    "detail",
    "last_contact",
    "latitude",
    "longitude",
]


@dataclass(frozen=True)
class DashboardConfig:
    """Where the dashboard reads, and how often it refreshes."""

    database: str = CLICKHOUSE_DB
    positions_table: str = "flights_streaming"
    alerts_table: str = "flight_alerts"
    refresh_seconds: int = 5
    # Aircraft heard of within this many seconds of the newest contact count as "in the sky"
    # (replayed recordings are old: the newest contact, not the wall clock, is "now").
    recent_seconds: int = 600


def config_from_env() -> DashboardConfig:
    """`DashboardConfig` from `DASHBOARD_*` settings (environment, then infra/.env)."""
    d = DashboardConfig()
    return DashboardConfig(
        database=setting("DASHBOARD_DATABASE", d.database),
        positions_table=setting("DASHBOARD_POSITIONS_TABLE", d.positions_table),
        alerts_table=setting("DASHBOARD_ALERTS_TABLE", d.alerts_table),
        refresh_seconds=int(setting("DASHBOARD_REFRESH_SECONDS", str(d.refresh_seconds))),
        recent_seconds=int(setting("DASHBOARD_RECENT_SECONDS", str(d.recent_seconds))),
    )


def _table(database: str, table: str) -> str:
    for name in (database, table):
        if not name.replace("_", "").isalnum():
            raise ValueError(f"{name!r} is not a plain identifier")
    return f"`{database}`.`{table}`"


def latest_positions(client, cfg: DashboardConfig) -> pd.DataFrame:
    """One row per aircraft (`POSITION_COLUMNS`): its newest state vector with a position, for the
    aircraft heard of within `cfg.recent_seconds` of the newest contact in the table."""
    # BEGIN SOLUTION (part C)
    table = _table(cfg.database, cfg.positions_table)
    # The inner query renames the time: an alias that shadows a column it aggregates confuses
    # ClickHouse (`max(last_contact) AS last_contact` inside `argMax(…, last_contact)`).
    sql = f"""
        SELECT
            icao24,
            argMax(callsign, t)       AS callsign,
            argMax(origin_country, t) AS origin_country,
            max(t)                    AS last_contact,
            argMax(longitude, t)      AS longitude,
            argMax(latitude, t)       AS latitude,
            argMax(baro_altitude, t)  AS baro_altitude,
            argMax(on_ground, t)      AS on_ground
        FROM (
            SELECT icao24, callsign, origin_country, last_contact AS t, longitude, latitude,
                   baro_altitude, on_ground
            FROM {table}
            WHERE latitude IS NOT NULL AND longitude IS NOT NULL
              AND last_contact >= (SELECT max(last_contact) FROM {table})
                                  - toIntervalSecond({{recent:UInt32}})
        )
        GROUP BY icao24
        ORDER BY icao24
    """
    frame = client.query_df(sql, parameters={"recent": cfg.recent_seconds})
    return frame.reindex(columns=POSITION_COLUMNS)
    # END SOLUTION


def country_counts(positions: pd.DataFrame) -> pd.DataFrame:
    """Aircraft per `origin_country` (`COUNT_COLUMNS`), most first, then by name."""
    # BEGIN SOLUTION (part C)
    counts = (
        positions.groupby("origin_country", dropna=False)["icao24"]
        .nunique()
        .rename("aircraft")
        .reset_index()
    )
    counts = counts.sort_values(["aircraft", "origin_country"], ascending=[False, True])
    return counts.reset_index(drop=True)[COUNT_COLUMNS]
    # END SOLUTION


def open_alerts(client, cfg: DashboardConfig) -> pd.DataFrame:
    """The alert episodes still open (`ALERT_COLUMNS`), newest first: each episode once."""
    # BEGIN SOLUTION (part C)
    table = _table(cfg.database, cfg.alerts_table)
    sql = f"""
        SELECT alert_id, icao24, callsign, rule, opened_at, detail, last_contact,
               latitude, longitude
        FROM {table} FINAL
        WHERE status = 'opened'
        ORDER BY opened_at DESC, alert_id
    """
    return client.query_df(sql).reindex(columns=ALERT_COLUMNS)
    # END SOLUTION


def render(cfg: DashboardConfig) -> None:
    """Draw the page once: metrics `Aircraft` and `Open alerts`, the positions chart, the counts
    per country and the open alerts as tables."""
    # BEGIN SOLUTION (part C)
    import altair as alt
    import streamlit as st

    from harness.runtime.services import clickhouse_client

    client = clickhouse_client(cfg.database)
    try:
        positions = latest_positions(client, cfg)
        alerts = open_alerts(client, cfg)
    finally:
        client.close()
    counts = country_counts(positions)

    left, right = st.columns(2)
    left.metric("Aircraft", len(positions))
    right.metric("Open alerts", len(alerts))
    newest = positions["last_contact"].max() if len(positions) else None
    st.caption(f"Newest contact: {newest} UTC · refreshed every {cfg.refresh_seconds} s")

    alerting = set(alerts["icao24"])
    sky = positions.assign(alert=positions["icao24"].isin(alerting))
    chart = (
        alt.Chart(sky)
        .mark_circle(size=40)
        .encode(
            x=alt.X("longitude:Q", scale=alt.Scale(zero=False), title="longitude"),
            y=alt.Y("latitude:Q", scale=alt.Scale(zero=False), title="latitude"),
            color=alt.Color("alert:N", title="open alert"),
            tooltip=["icao24", "callsign", "origin_country", "baro_altitude"],
        )
        .properties(height=420)
    )
    st.subheader("Latest positions")
    st.altair_chart(chart, use_container_width=True)

    # Small tables as plain HTML tables: readable by people, screen readers and browser tests.
    st.subheader("Aircraft per country")
    st.table(counts.set_index("origin_country").reset_index())
    st.subheader("Open alerts")
    if len(alerts):
        st.table(alerts)
    else:
        st.info("No open alerts.")
    # END SOLUTION


def missing_tables(cfg: DashboardConfig) -> list[str]:
    """The tables the page reads that do not exist (yet), as `database.table`."""
    from harness.runtime.services import clickhouse_client

    client = clickhouse_client()
    try:
        names = [(cfg.database, cfg.positions_table), (cfg.database, cfg.alerts_table)]
        return [
            f"{db}.{table}"
            for db, table in names
            if not int(client.command(f"EXISTS TABLE {_table(db, table)}"))
        ]
    finally:
        client.close()


def main() -> None:
    """The Streamlit page: a title, then `render` in a fragment that reruns every few seconds."""
    import streamlit as st

    cfg = config_from_env()
    st.set_page_config(page_title="OpenSky live", layout="wide")
    st.title("OpenSky — live sky and alerts")

    @st.fragment(run_every=cfg.refresh_seconds)
    def live() -> None:
        missing = missing_tables(cfg)
        if missing:
            st.warning(
                f"Waiting for {', '.join(missing)}: run Lab 02's streaming job (positions) and "
                "`python labs/lab09_alerts/alerts.py` (alerts)."
            )
            return
        render(cfg)

    live()


if __name__ == "__main__":
    main()
