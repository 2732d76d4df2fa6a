-- The capture trigger appends to sync.capture_log; the fold (sync._fold())
-- moves the log into sync.outbox in the order the writes were made, with
-- the coalescing rules (sql/capture.sql).  Until then sync.status counts
-- the log's writes as backlog.
SET client_min_messages = warning;
CREATE TABLE cl_contact (id bigint PRIMARY KEY, remote_id text UNIQUE,
                         first_name text, email text, remote_modified_at timestamptz);
INSERT INTO sync.connection (name, provider) VALUES ('cl', 'salesforce');
INSERT INTO sync.mirror (connection, remote_object, local_table, key_column, remote_id_column, stamp_column)
    VALUES ('cl', 'Contact', 'cl_contact', 'id', 'remote_id', 'remote_modified_at')
    RETURNING id AS m \gset
INSERT INTO sync.field (mirror, remote_name, local_column, remote_type, local_type, createable, updateable) VALUES
    (:m, 'Id', 'remote_id', 'id', 'text', false, false),
    (:m, 'SystemModstamp', 'remote_modified_at', 'datetime', 'timestamptz', false, false),
    (:m, 'FirstName', 'first_name', 'string', 'text', true, true),
    (:m, 'Email', 'email', 'email', 'text', true, true);
INSERT INTO sync.mirror_state (mirror) VALUES (:m);
SELECT sync._install_triggers(:m) IS NOT NULL AS installed;

-- a row on the remote: its update is one log row, and nothing in the outbox yet
INSERT INTO cl_contact VALUES (1, '003A', 'Ada', 'ada@x', now());
SELECT sync._fold() AS folded;
DELETE FROM sync.outbox;
UPDATE cl_contact SET email = 'ada@y' WHERE id = 1;
SELECT op, local_key, columns, remote_id, mirror = :m AS this_mirror FROM sync.capture_log;
SELECT count(*) AS queued FROM sync.outbox;
-- sync.status counts it already
SELECT backlog, push_lag IS NOT NULL AS lagging FROM sync.status WHERE local_table = 'cl_contact'::regclass;
-- a second write of the same row is one more log row, and still one row of backlog
UPDATE cl_contact SET first_name = 'Ada L.' WHERE id = 1;
SELECT count(*) AS logged FROM sync.capture_log;
SELECT backlog FROM sync.status WHERE local_table = 'cl_contact'::regclass;

-- the fold: both writes coalesce into one entry, whose id is the first
-- write's number; the log is empty
SELECT min(seq) AS first_seq FROM sync.capture_log \gset
SELECT sync._fold(:m) AS folded;
SELECT op, local_key, columns, remote_id, id = :first_seq AS id_is_first_write FROM sync.outbox;
SELECT count(*) AS logged FROM sync.capture_log;
SELECT backlog FROM sync.status WHERE local_table = 'cl_contact'::regclass;
-- nothing left: a fold folds nothing
SELECT sync._fold() AS folded;

-- order: the row deleted, then a row with its key inserted again, folded
-- together: the delete (with the old remote ID) goes first, then the
-- create; folded the other way round, the delete would have removed the
-- create
DELETE FROM sync.outbox;
DELETE FROM cl_contact WHERE id = 1;
INSERT INTO cl_contact (id, first_name) VALUES (1, 'Ada again');
SELECT op, remote_id FROM sync.capture_log ORDER BY seq;
SELECT sync._fold() AS folded;
SELECT op, remote_id, slot FROM sync.outbox ORDER BY id;

-- an update that changes nothing appends nothing
SELECT sync._fold() AS folded;
UPDATE cl_contact SET first_name = first_name;
SELECT count(*) AS logged FROM sync.capture_log;

-- unmirror folds first: the warning counts the entries after coalescing
-- (the delete, and the create that absorbed both updates)
UPDATE cl_contact SET email = 'a@z' WHERE id = 1;
UPDATE cl_contact SET email = 'a@w' WHERE id = 1;
SET client_min_messages = notice;
SELECT sync.unmirror('cl_contact');
SELECT count(*) AS logged FROM sync.capture_log;

-- sync._fold() is not for PUBLIC
CREATE ROLE regress_cl_user;
GRANT USAGE ON SCHEMA sync TO regress_cl_user;
SET ROLE regress_cl_user;
SELECT sync._fold();
RESET ROLE;
REVOKE USAGE ON SCHEMA sync FROM regress_cl_user;
DROP ROLE regress_cl_user;
DROP TABLE cl_contact;
DELETE FROM sync.outbox;
DELETE FROM sync.connection WHERE name = 'cl';
