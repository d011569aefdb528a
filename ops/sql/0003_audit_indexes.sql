-- 0003_audit_indexes.sql — the audit log keeps only the indexes a query uses
-- (issue #15). Every query the query API sends to `events` (query-api/qry_pg.c;
-- kcqrs-audit reads Kafka, not PostgreSQL) is served by one of:
--   events_pkey        (aggregate_type, aggregate_id, version): an aggregate's
--                      history (GET .../{id}/events) and audit by aggregate
--   events_time        audit without a filter, by since/until, by aggregate type
--   events_actor_time  audit by actor
--   events_type_time   audit by event type
-- (tests/e2e/query.bats checks each one). Nothing reads by event id,
-- by correlation id or by Kafka origin except the projector's rare duplicate
-- check after lost offsets, which now looks the event up by aggregate and
-- version (the same record has the same key). Those three indexes cost
-- PostgreSQL CPU and WAL on every event the projector writes (measured in
-- bench/README.md, "pg: the audit log's indexes") and are dropped; the
-- aggregate key, unique already, becomes the primary key. Applied at start by
-- kcqrs-projector like every migration, in one transaction; on a large
-- existing table the new primary key's index is built once (minutes for tens
-- of millions of rows), the old unique index is dropped with its constraint.
DROP INDEX events_event_id;
DROP INDEX events_correlation;
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events DROP CONSTRAINT events_aggregate_type_aggregate_id_version_key;
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (aggregate_type, aggregate_id, version);
