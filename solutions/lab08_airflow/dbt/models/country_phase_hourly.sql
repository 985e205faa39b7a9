-- Per UTC hour, origin country and flight phase: state vectors and distinct aircraft.
-- A microbatch model: dbt builds it one hour (batch) at a time, reading only that hour of
-- flights_batch, and replaces the hour's rows (delete + insert on hour_utc) — idempotent per hour.
{{
    config(
        materialized='incremental',
        incremental_strategy='microbatch',
        event_time='hour_utc',
        batch_size='hour',
        begin='2021-10-07',
        unique_key='hour_utc',
        engine='MergeTree()',
        order_by='(hour_utc, origin_country, flight_phase)',
    )
}}

select
    toStartOfHour(fetch_time) as hour_utc,
    origin_country,
    flight_phase,
    count() as state_vectors,
    uniqExact(icao24) as aircraft
from {{ source('opensky', 'flights_batch') }}
group by hour_utc, origin_country, flight_phase
