-- 0003_audit_indexes.sql — the audit log keeps only the indexes a query uses
-- (issue #15). Every query the query API sends to `events` (query-api/qry_pg.c;
-- kcqrs-audit reads Kafka, not PostgreSQL) is served by one of:
--   events_aggregate_type_aggregate_id_version_key  an aggregate's history
--                                                    (GET .../{id}/events) and
--                                                    audit by aggregate
--   events_time        audit without a filter, by since/until, by aggregate type
--   events_actor_time  audit by actor
--   events_type_time   audit by event type
-- (tests/e2e/query.bats checks each one). Nothing reads by event id,
-- by correlation id or by Kafka origin except the projector's rare duplicate
-- check after lost offsets, which now looks the event up by aggregate and
-- version (the same record has the same key). Those three indexes cost
-- PostgreSQL CPU and WAL on every event the projector writes (measured in
-- bench/README.md, "pg: the audit log's indexes") and are dropped. Applied at
-- start by kcqrs-projector like every migration; on a large existing table it
-- only drops, it builds nothing.
DROP INDEX events_event_id;
DROP INDEX events_correlation;
ALTER TABLE events DROP CONSTRAINT events_pkey;
