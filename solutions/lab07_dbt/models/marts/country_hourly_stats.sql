-- Per UTC hour and country: the platform's "flights per country in the last hour" as a table.
-- BEGIN SOLUTION (part D)
select
    date_trunc('hour', seen_at at time zone 'UTC') as hour_utc,
    origin_country,
    count(*) as state_vectors,
    count(distinct icao24) as aircraft,
    avg(velocity_ms) as avg_velocity_ms,
    max(altitude_m) as max_altitude_m
from {{ ref('stg_processed_flights') }}
group by 1, 2
-- END SOLUTION
