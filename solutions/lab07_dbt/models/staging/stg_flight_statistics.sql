-- One row per country and UTC hour, as the platform's batch job computed it.
-- BEGIN SOLUTION (part A)
with

source as (

    select * from {{ source('opensky', 'flight_statistics') }}

)

select
    trim(origin_country)::text as origin_country,
    (stat_date + make_interval(hours => stat_hour))::timestamp as hour_utc,
    flight_count::bigint as aircraft,
    state_vectors::bigint as state_vectors,
    avg_velocity::double precision as avg_velocity_ms,
    max_altitude::double precision as max_altitude_m,
    ground_share::double precision as ground_share

from source
-- END SOLUTION
