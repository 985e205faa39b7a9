-- One row per flight: each aircraft's track cut where a long gap or a take-off starts a new one.
-- BEGIN SOLUTION (part C)
{{
    config(
        materialized='incremental',
        unique_key='flight_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail'
    )
}}

with

{% if is_incremental() %}
-- The last flight built for an aircraft may go on in the new rows: cut again from its start.
resume_points as (

    select icao24, max(first_seen) as resume_from
    from {{ this }}
    group by icao24

),
{% endif %}

positions as (

    select
        p.icao24,
        p.seen_at,
        p.on_ground,
        p.latitude,
        p.longitude,
        p.altitude_m
    from {{ ref('stg_processed_flights') }} as p
    {% if is_incremental() %}
    left join resume_points as r on r.icao24 = p.icao24
    where r.resume_from is null or p.seen_at >= r.resume_from
    {% endif %}

),

steps as (

    select
        *,
        lag(seen_at) over by_time as previous_seen_at,
        lag(on_ground) over by_time as previous_on_ground,
        lag(latitude) over by_time as previous_latitude,
        lag(longitude) over by_time as previous_longitude
    from positions
    window by_time as (partition by icao24 order by seen_at)

),

starts as (

    select
        *,
        coalesce(
            previous_seen_at is null
            or seen_at - previous_seen_at > interval '1 minute' * {{ var('flight_gap_minutes') }}
            or (previous_on_ground and not on_ground),
            false
        ) as starts_flight
    from steps

),

numbered as (

    select
        *,
        sum(case when starts_flight then 1 else 0 end) over (
            partition by icao24 order by seen_at rows between unbounded preceding and current row
        ) as flight_number,
        case
            when starts_flight then 0.0
            else {{ great_circle_km('previous_latitude', 'previous_longitude', 'latitude', 'longitude') }}
        end as step_km
    from starts

),

flights as (

    select
        icao24,
        min(seen_at) as first_seen,
        max(seen_at) as last_seen,
        count(*) as positions,
        count(*) filter (where not on_ground) as airborne_positions,
        max(altitude_m) as max_altitude_m,
        sum(step_km) as distance_km,
        (array_agg(latitude order by seen_at))[1] as first_latitude,
        (array_agg(longitude order by seen_at))[1] as first_longitude,
        (array_agg(latitude order by seen_at desc))[1] as last_latitude,
        (array_agg(longitude order by seen_at desc))[1] as last_longitude
    from numbered
    group by icao24, flight_number

)

select
    md5(icao24 || '@' || extract(epoch from first_seen)::bigint) as flight_id,
    icao24,
    first_seen,
    last_seen,
    extract(epoch from last_seen - first_seen)::integer as duration_s,
    positions,
    airborne_positions,
    max_altitude_m,
    distance_km,
    first_latitude,
    first_longitude,
    last_latitude,
    last_longitude
from flights
-- END SOLUTION
