-- the lead: idempotency keys per installation, for updates sent as creates too;
-- the mirror option "batch"
-- Claim a batch of ready outbox entries of a mirror for pushing: only the
-- oldest entry of each row (later ones wait for it), skipping entries other
-- claimers hold, with a lease so a crashed claimer's entries come back.
-- Creates get their idempotency key here, once, so a retry reuses it (and
-- so do updates: one whose row never reached the remote is sent as a
-- create).  The key names this installation (sync.instance: the server,
-- the database, when syncing was enabled), the mirror and the entry, so no
-- other database, nor this one after the extension was re-created, can
-- produce the same key and upsert into a record that is not its own.
CREATE OR REPLACE FUNCTION sync._claim(mirror int, max_entries int, lease_seconds int)
RETURNS SETOF sync.outbox LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    WITH ready AS (
        SELECT o.id FROM sync.outbox o
         WHERE o.mirror = _claim.mirror AND o.state = 'pending' AND o.next_attempt_at <= now()
           AND (o.claimed_until IS NULL OR o.claimed_until < now())
           AND NOT EXISTS (SELECT 1 FROM sync.outbox p
                            WHERE p.mirror = o.mirror AND p.local_key = o.local_key AND p.id < o.id)
         ORDER BY o.id LIMIT max_entries
           FOR UPDATE SKIP LOCKED)
    UPDATE sync.outbox o
       SET claimed_until = now() + make_interval(secs => lease_seconds),
           claimed_by = pg_backend_pid(), attempts = o.attempts + 1, slot = -o.id, updated_at = now(),
           idempotency_key = CASE WHEN o.op IN ('I', 'U') THEN coalesce(o.idempotency_key,
               'sync-' || coalesce((SELECT substr(md5(i.system_identifier || '/' || i.database_oid || '/' || extract(epoch FROM i.enabled_at)), 1, 16)
                                      FROM sync.instance i ORDER BY i.enabled_at DESC LIMIT 1),
                                   to_hex(hashtext(current_database())))
                       || '-' || o.mirror || '-' || o.id) END
      FROM ready WHERE o.id = ready.id
    RETURNING o.*
$$;

-- (the mirror option "batch" is in sync._check_mirror_options, whose final
-- text is in 70_cdc.sql, the last fragment that changes it)

