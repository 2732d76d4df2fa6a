-- sync.status: one row per mirror, what a user watches.  Here, after the
-- files whose tables it reads (sync.paused: 70_pause.sql; sync.schema_drift:
-- 76_alter.sql).

-- One row per mirror.  The pause columns (at the end): paused is true when
-- nothing is sent or fetched for the mirror now, whatever the reason;
-- paused_reason says which, the broadest first: 'disabled' (sync.enabled =
-- off on this server), 'copy' (a held copy of the database, see held),
-- 'connection' (sync.pause_connection), 'mirror' (sync.pause);
-- paused_since and paused_by are those of that reason (NULL for 'disabled'
-- and 'copy': a copy cannot know when it was made).  drift (the last
-- column) counts the mirror's entries in sync.drift (docs/operations.md).
CREATE OR REPLACE VIEW sync.status AS
SELECT m.local_table,
       m.connection,
       m.remote_object,
       m.direction,
       st.phase,
       coalesce(pg_stat_get_live_tuples(m.local_table), 0) AS rows,
       (SELECT count(*) FROM sync.outbox o WHERE o.mirror = m.id AND o.state = 'pending')
       + (SELECT count(DISTINCT c.local_key) FROM sync.capture_log c
           WHERE c.mirror = m.id
             AND NOT EXISTS (SELECT 1 FROM sync.outbox o WHERE o.mirror = c.mirror AND o.local_key = c.local_key
                                AND o.slot IN (0, 1))) AS backlog,
       (SELECT count(*) FROM sync.outbox o WHERE o.mirror = m.id AND o.state = 'parked') AS failures,
       CASE WHEN st.phase = 'backfill' THEN
           st.backfill_done::text || coalesce('/' || st.backfill_total::text, '') END AS backfill_progress,
       now() - LEAST((SELECT min(o.created_at) FROM sync.outbox o
                       WHERE o.mirror = m.id AND o.state = 'pending'),
                     (SELECT min(c.at) FROM sync.capture_log c WHERE c.mirror = m.id)) AS push_lag,
       now() - st.last_pull_at AS since_last_pull,
       st.remote_stamp_max AS newest_remote_change,
       st.last_pull_at,
       st.last_push_at,
       st.next_pull_at,
       st.last_error,
       st.last_error_at,
       cs.api_usage,
       h.why AS held,
       (h.why IS NOT NULL OR pc.since IS NOT NULL OR pm.since IS NOT NULL) AS paused,
       CASE WHEN h.why IS NULL THEN coalesce(pc.since, pm.since) END AS paused_since,
       CASE WHEN h.why IS NOT NULL THEN
                CASE WHEN current_setting('sync.enabled', true) = 'off' THEN 'disabled' ELSE 'copy' END
            WHEN pc.since IS NOT NULL THEN 'connection'
            WHEN pm.since IS NOT NULL THEN 'mirror' END AS paused_reason,
       CASE WHEN h.why IS NULL THEN coalesce(pc.paused_by, pm.paused_by) END AS paused_by,
       (SELECT count(*) FROM sync.schema_drift d WHERE d.mirror = m.id) AS drift
  FROM sync.mirror m
  JOIN sync.mirror_state st ON st.mirror = m.id
  LEFT JOIN sync.connection_state cs ON cs.connection = m.connection
  LEFT JOIN sync.paused pm ON pm.mirror = m.id
  LEFT JOIN sync.paused pc ON pc.connection = m.connection
 CROSS JOIN (SELECT sync._held_reason(array_agg(i.database_oid), array_agg(i.system_identifier)) AS why
               FROM sync.instance i) h;
REVOKE ALL ON sync.status FROM PUBLIC;
