-- pushperf: a delete queued without a remote ID marks its row's attempted
-- entries, so that the recording of a create finds the deletes waiting for
-- its new remote ID in the entries it removes, without looking each of its
-- records up among the queued deletes (src/sql/40_catalog.sql, capture.c,
-- push.c).
ALTER TABLE sync.outbox ADD COLUMN row_deleted_at timestamptz;
