-- Per UTC hour and country, as in the PostgreSQL project, in ClickHouse's SQL dialect.
-- BEGIN SOLUTION (part D)
{{ config(engine='MergeTree()', order_by='(hour_utc, origin_country)') }}

select
    toStartOfHour(fetch_time) as hour_utc,
    origin_country,
    count() as state_vectors,
    uniqExact(icao24) as aircraft,
    avg(velocity) as avg_velocity_ms,
    max(baro_altitude) as max_altitude_m
from {{ source('opensky', 'flights_streaming') }}
group by hour_utc, origin_country
-- END SOLUTION
