-- merges: remote merges followed locally (sync.merge_log, sync.merges)
-- ---------------------------------------------------------------------------
-- Remote merges, followed locally (docs/operations.md, "Merges").  When the
-- remote merges records (Salesforce: the losers are deleted with
-- MasterRecordId set; HubSpot: hs_merged_object_ids on the merged record),
-- the apply removes the loser's row (or, when the winner has no row here,
-- lets the loser's row continue as the winner's), re-points reference
-- columns of the connection's mirrors from the loser to the winner, moves
-- the loser's pending local changes onto the winner's row, and writes one
-- row here per merge it acted on.  A trigger on this table (created by its
-- owner) can act on each merge; it runs in the worker's apply transaction,
-- and an error it raises undoes that merge's local handling (the loser is
-- then deleted as an ordinary remote delete, the error journaled).
-- ---------------------------------------------------------------------------
CREATE TABLE sync.merge_log (
    id                  bigserial PRIMARY KEY,
    mirror              int NOT NULL REFERENCES sync.mirror (id) ON DELETE CASCADE,
    loser_remote_id     text NOT NULL,
    winner_remote_id    text NOT NULL,
    merged_at           timestamptz NOT NULL DEFAULT now(),
    loser_key           text,           -- the loser's row here (removed), if it had one
    winner_key          text,           -- the winner's row here, if any (may be the loser's row, adopted)
    references_repointed bigint NOT NULL DEFAULT 0, -- reference columns re-pointed, all mirrors
    writes_retargeted   int NOT NULL DEFAULT 0,     -- pending local changes moved to the winner
    detail              text            -- what was done, in words
);
CREATE INDEX ON sync.merge_log (mirror, loser_remote_id);
REVOKE ALL ON sync.merge_log FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('sync.merge_log', '');
SELECT pg_catalog.pg_extension_config_dump('sync.merge_log_id_seq', '');

CREATE VIEW sync.merges AS
SELECT m.local_table,
       l.winner_remote_id,
       l.loser_remote_id,
       l.merged_at,
       l.loser_key,
       l.winner_key,
       l.references_repointed,
       l.writes_retargeted,
       l.detail,
       l.id AS merge_id
  FROM sync.merge_log l
  JOIN sync.mirror m ON m.id = l.mirror;
REVOKE ALL ON sync.merges FROM PUBLIC;
