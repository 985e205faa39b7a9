"""Benchmarks of the lab platform: `python -m bench` (or `make bench`) writes bench/results.{md,json}.

Sections: stack (start time, memory), loop (graded suites against solutions/), streaming (Lab 02
Kafka -> ClickHouse), batch (Lab 01 vs ClickHouse), clickhouse (the ClickHouse half of batch alone),
kafka (Lab 03's producer vs confluent-kafka's best case). Targets are reported, never asserted.
"""
