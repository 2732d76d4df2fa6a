-- claimperf: the claim updates its entries by id from an array, not by a
-- join to its CTE; with the lead's idempotency keys per installation, for
-- updates sent as creates too (src/sql/50_interface.sql).
CREATE OR REPLACE FUNCTION sync._claim(mirror int, max_entries int, lease_seconds int)
RETURNS SETOF sync.outbox LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    WITH ready AS (
        SELECT o.id FROM sync.outbox o
         WHERE o.mirror = _claim.mirror AND o.state = 'pending' AND o.next_attempt_at <= now()
           AND (o.claimed_until IS NULL OR o.claimed_until < now())
           AND NOT EXISTS (SELECT 1 FROM sync.outbox p
                            WHERE p.mirror = o.mirror AND p.local_key = o.local_key AND p.id < o.id)
         ORDER BY o.id LIMIT greatest(max_entries, 0)
           FOR UPDATE SKIP LOCKED)
    UPDATE sync.outbox o
       SET claimed_until = now() + make_interval(secs => lease_seconds),
           claimed_by = pg_backend_pid(), attempts = o.attempts + 1, slot = -o.id, updated_at = now(),
           idempotency_key = CASE WHEN o.op IN ('I', 'U') THEN coalesce(o.idempotency_key,
               'sync-' || coalesce((SELECT substr(md5(i.system_identifier || '/' || i.database_oid || '/' || extract(epoch FROM i.enabled_at)), 1, 16)
                                      FROM sync.instance i ORDER BY i.enabled_at DESC LIMIT 1),
                                   to_hex(hashtext(current_database())))
                       || '-' || o.mirror || '-' || o.id) END
     WHERE o.id = ANY (ARRAY(SELECT ready.id FROM ready))
    RETURNING o.*
$$;
