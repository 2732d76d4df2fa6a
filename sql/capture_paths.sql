-- The capture trigger's two orders of work give the same outbox: it either
-- inserts a row's open entry first (speculatively, as ON CONFLICT does) and
-- probes only when the row turns out to have one, or probes first, by its
-- guesses (the rows this backend queued lately, and how many of the latest
-- rows had an open entry).  Here rows with and without open entries, more
-- of them than the backend remembers, are written in bulk, both orders
-- meet both cases, and the outbox must be what coalescing says.
SET client_min_messages = warning;
CREATE TABLE cp_contact (id bigint PRIMARY KEY, remote_id text UNIQUE,
                         first_name text, email text, remote_modified_at timestamptz);
INSERT INTO sync.connection (name, provider) VALUES ('cp', 'salesforce');
INSERT INTO sync.mirror (connection, remote_object, local_table, key_column, remote_id_column, stamp_column)
    VALUES ('cp', 'Contact', 'cp_contact', 'id', 'remote_id', 'remote_modified_at')
    RETURNING id AS m \gset
INSERT INTO sync.field (mirror, remote_name, local_column, remote_type, local_type, createable, updateable) VALUES
    (:m, 'Id', 'remote_id', 'id', 'text', false, false),
    (:m, 'SystemModstamp', 'remote_modified_at', 'datetime', 'timestamptz', false, false),
    (:m, 'FirstName', 'first_name', 'string', 'text', true, true),
    (:m, 'Email', 'email', 'email', 'text', true, true);
INSERT INTO sync.mirror_state (mirror) VALUES (:m);
SELECT sync._install_triggers(:m) IS NOT NULL AS installed;

CREATE VIEW cp_outbox AS
    SELECT op, columns, remote_id IS NOT NULL AS has_remote_id,
           CASE WHEN slot = 0 THEN 'open' WHEN slot < 0 THEN 'sealed' ELSE 'delete' END AS entry,
           count(*) AS entries, count(DISTINCT local_key) AS rows
      FROM sync.outbox GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4;

-- 3000 new rows (more than the 1024 the backend remembers): an insert each
INSERT INTO cp_contact (id, first_name) SELECT g, 'f' || g FROM generate_series(1, 3000) g;
SELECT sync._fold() AS folded \gset
SELECT * FROM cp_outbox;

-- every row has an open insert: an update coalesces into it, whichever
-- order finds it (rows forgotten by the backend insert first and conflict)
UPDATE cp_contact SET email = id || '@x';
SELECT sync._fold() AS folded \gset
SELECT * FROM cp_outbox;

-- the same rows, one by one, each in its own statement
DO $$
BEGIN
    FOR i IN 1..3000 BY 7 LOOP
        UPDATE cp_contact SET first_name = 'g' || i WHERE id = i;
    END LOOP;
END $$;
SELECT sync._fold() AS folded \gset
SELECT * FROM cp_outbox;

-- seal the even rows' entries (as a claim does): their next writes queue
-- new entries behind them, the odd rows' coalesce; the backend's guesses
-- (rows it queued lately, most rows having an entry) are wrong for the
-- even rows now
SELECT sync._fold() AS folded \gset
UPDATE sync.outbox SET slot = -id, attempts = 1 WHERE local_key::bigint % 2 = 0;
UPDATE cp_contact SET email = 'new' || id || '@x', remote_id = CASE WHEN id % 4 = 0 THEN 'r' || id END;
SELECT sync._fold() AS folded \gset
SELECT * FROM cp_outbox;

-- and again: every row has an open entry, the even rows a sealed one too
UPDATE cp_contact SET first_name = 'h' || id;
SELECT sync._fold() AS folded \gset
SELECT * FROM cp_outbox;

-- one row inserted and written again in one transaction: one open insert
BEGIN;
INSERT INTO cp_contact (id, first_name) VALUES (5000, 'a');
UPDATE cp_contact SET email = 'a@x' WHERE id = 5000;
UPDATE cp_contact SET first_name = 'b' WHERE id = 5000;
COMMIT;
SELECT sync._fold() AS folded \gset
SELECT op, columns, remote_id, slot FROM sync.outbox WHERE local_key = '5000';

SELECT sync._fold() AS folded \gset
DELETE FROM sync.outbox;
DROP VIEW cp_outbox;
DROP TABLE cp_contact;
DELETE FROM sync.mirror;
DELETE FROM sync.connection;
