-- One row per aircraft: its latest callsign, the country OpenSky reports and the country its
-- ICAO address block is allocated to, and whether the two disagree.
-- BEGIN SOLUTION (part B)
with

positions as (

    select * from {{ ref('stg_processed_flights') }}

),

blocks as (

    select
        ('x' || first_address)::bit(24)::integer as first_address,
        ('x' || last_address)::bit(24)::integer as last_address,
        country
    from {{ ref('icao_address_blocks') }}

),

aircraft as (

    select
        icao24,
        min(seen_at) as first_seen,
        max(seen_at) as last_seen
    from positions
    group by icao24

),

latest_report as (

    select distinct on (icao24)
        icao24,
        origin_country
    from positions
    order by icao24, seen_at desc

),

latest_callsign as (

    select distinct on (icao24)
        icao24,
        callsign
    from positions
    where callsign is not null
    order by icao24, seen_at desc

)

select
    aircraft.icao24,
    latest_callsign.callsign,
    latest_report.origin_country,
    coalesce(blocks.country, 'Unknown') as registration_country,
    latest_report.origin_country is distinct from coalesce(blocks.country, 'Unknown')
        as country_mismatch,
    aircraft.first_seen,
    aircraft.last_seen

from aircraft
inner join latest_report on latest_report.icao24 = aircraft.icao24
left join latest_callsign on latest_callsign.icao24 = aircraft.icao24
left join blocks
    on ('x' || aircraft.icao24)::bit(24)::integer
        between blocks.first_address and blocks.last_address
-- END SOLUTION
