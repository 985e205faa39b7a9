-- Per UTC hour of take-off (first seen): the busiest routes, a route being the 1-degree cell where
-- a flight was first seen and the one where it was last seen.
-- BEGIN SOLUTION (part D)
with

flights as (

    select * from {{ ref('fct_flights') }}
    where airborne_positions > 0

),

routes as (

    select
        date_trunc('hour', first_seen at time zone 'UTC') as hour_utc,
        floor(first_latitude)::integer as from_lat_cell,
        floor(first_longitude)::integer as from_lon_cell,
        floor(last_latitude)::integer as to_lat_cell,
        floor(last_longitude)::integer as to_lon_cell
    from flights

),

counted as (

    select
        hour_utc,
        from_lat_cell,
        from_lon_cell,
        to_lat_cell,
        to_lon_cell,
        count(*) as flights
    from routes
    group by 1, 2, 3, 4, 5

),

ranked as (

    select
        *,
        rank() over (partition by hour_utc order by flights desc) as route_rank
    from counted

)

select * from ranked
where route_rank <= 5
-- END SOLUTION
