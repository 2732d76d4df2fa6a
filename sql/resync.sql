-- sync.resync: bad input gets a clear error with a SQLSTATE and changes nothing
\set VERBOSITY default
CREATE TABLE resync_plain (id int PRIMARY KEY, name text);
INSERT INTO resync_plain VALUES (1, 'a');
SELECT count(*) AS journal_before FROM sync.journal \gset
SELECT count(*) AS outbox_before FROM sync.outbox \gset
\set ON_ERROR_STOP 0
-- a table that is not mirrored
SELECT sync.resync('resync_plain');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT sync.resync('resync_plain', repair => true);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- NULL arguments
SELECT sync.resync(NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT sync.resync('resync_plain', NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- a table that does not exist
SELECT sync.resync('resync_nope');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
\set ON_ERROR_STOP 1
-- nothing changed: no journal rows, no outbox entries, the table as it was
SELECT count(*) = :journal_before AS journal_unchanged FROM sync.journal;
SELECT count(*) = :outbox_before AS outbox_unchanged FROM sync.outbox;
SELECT * FROM resync_plain;
-- not executable by PUBLIC (like sync.pull)
SELECT has_function_privilege('public', 'sync.resync(regclass, boolean)', 'EXECUTE') AS public_may_resync,
       has_function_privilege('public', 'sync.pull(regclass)', 'EXECUTE') AS public_may_pull;
DROP TABLE resync_plain;
