-- Singular test: hours and countries where the hourly mart and the platform's batch figures
-- (flight_statistics) disagree on the number of aircraft or state vectors.
-- BEGIN SOLUTION (part E)
with

mart as (

    select * from {{ ref('country_hourly_stats') }}

),

platform as (

    select * from {{ ref('stg_flight_statistics') }}

)

select
    coalesce(mart.hour_utc, platform.hour_utc) as hour_utc,
    coalesce(mart.origin_country, platform.origin_country) as origin_country,
    mart.aircraft as mart_aircraft,
    platform.aircraft as platform_aircraft,
    mart.state_vectors as mart_state_vectors,
    platform.state_vectors as platform_state_vectors
from mart
full outer join platform
    on mart.hour_utc = platform.hour_utc
    and mart.origin_country = platform.origin_country
where mart.aircraft is distinct from platform.aircraft
   or mart.state_vectors is distinct from platform.state_vectors
-- END SOLUTION
