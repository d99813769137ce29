"""Where predictions, raw frames, episodes and alerts are kept.

Two lanes share one schema and one query layer: TimescaleDB (hypertables, continuous aggregates,
compression and retention policies) when the extension is there, plain PostgreSQL otherwise
(daily RANGE partitions, BRIN indexes, materialized views refreshed by `iotlm db maintain`).
Live state and the alert fan-out live in Redis (`storage.live_state`).
"""
