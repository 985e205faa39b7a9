-- Singular test: consecutive positions of one aircraft that imply a speed no aircraft flies.
-- BEGIN SOLUTION (part E)
-- Known anomalies (two recordings share an address) make this a warning, not an error.
{{ config(severity='warn') }}

with

steps as (

    select
        icao24,
        seen_at,
        latitude,
        longitude,
        lag(seen_at) over by_time as previous_seen_at,
        lag(latitude) over by_time as previous_latitude,
        lag(longitude) over by_time as previous_longitude
    from {{ ref('stg_processed_flights') }}
    window by_time as (partition by icao24 order by seen_at)

),

speeds as (

    select
        icao24,
        previous_seen_at,
        seen_at,
        {{ great_circle_km('previous_latitude', 'previous_longitude', 'latitude', 'longitude') }}
            * 1000.0
            / extract(epoch from seen_at - previous_seen_at) as implied_speed_ms
    from steps
    where previous_seen_at is not null
      and seen_at > previous_seen_at

)

select *
from speeds
where implied_speed_ms > {{ var('impossible_speed_ms') }}
-- END SOLUTION
