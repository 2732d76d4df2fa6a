-- applyperf: the journal's B-tree by record covers only what was sent (the
-- echo checks look up our pushes by record); received records are found by
-- time (journal_at), and a page's apply no longer maintains an entry per
-- record (src/sql/40_catalog.sql).
DROP INDEX sync.journal_remote;
CREATE INDEX journal_remote ON sync.journal (mirror, remote_id) WHERE direction = 'out';
