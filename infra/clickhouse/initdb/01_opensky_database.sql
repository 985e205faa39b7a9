-- Runs once, when clickhouse-server starts on an empty data volume (docker stack only).
-- The database of the labs; the labs create their own tables in it (flights_streaming,
-- flights_batch, country_statistics_mv), so a fresh stack starts empty, as the native one does.
CREATE DATABASE IF NOT EXISTS opensky;
