-- One row per state vector: typed, renamed to say their units, callsigns trimmed.
-- BEGIN SOLUTION (part A)
with

source as (

    select * from {{ source('opensky', 'processed_flights') }}

),

renamed as (

    select
        lower(trim(icao24))::text as icao24,
        nullif(trim(callsign), '')::text as callsign,
        origin_country::text as origin_country,

        fetch_time::timestamptz as seen_at,
        time_position::timestamptz as position_at,
        last_contact::timestamptz as last_contact_at,

        latitude::double precision as latitude,
        longitude::double precision as longitude,
        baro_altitude::double precision as altitude_m,
        geo_altitude::double precision as geo_altitude_m,
        on_ground::boolean as on_ground,
        velocity::double precision as velocity_ms,
        true_track::double precision as heading_deg,
        vertical_rate::double precision as vertical_rate_ms,
        squawk::text as squawk,
        position_source::integer as position_source

    from source

)

select * from renamed
-- END SOLUTION
