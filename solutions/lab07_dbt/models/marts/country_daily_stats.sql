-- Per UTC day and country: the daily figures, under a model contract.
-- BEGIN SOLUTION (part D)
select
    (seen_at at time zone 'UTC')::date as stat_date,
    origin_country,
    count(*) as state_vectors,
    count(distinct icao24) as aircraft,
    avg(velocity_ms) as avg_velocity_ms,
    max(altitude_m) as max_altitude_m
from {{ ref('stg_processed_flights') }}
group by 1, 2
-- END SOLUTION
