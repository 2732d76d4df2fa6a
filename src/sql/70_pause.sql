-- ---------------------------------------------------------------------------
-- Pause and resume a mirror or a whole connection (docs/operations.md,
-- "Pause and resume"; src/pause.c).  Also, because it shows the pause state,
-- the view sync.status.
-- ---------------------------------------------------------------------------

-- What is paused: one row per paused mirror (mirror set) or paused
-- connection (connection set), since when and by whom.  A mirror is paused
-- when it has a row or its connection has one: the worker neither pushes
-- nor pulls it and sync.push() / sync.pull() refuse it, while its local
-- writes are still captured (and coalesced) in sync.outbox and go out on
-- resume.  Rows go with their mirror or connection.  pg_dump keeps them: a
-- restored database is paused where the original was.
CREATE TABLE sync.paused (
    mirror      int UNIQUE REFERENCES sync.mirror (id) ON DELETE CASCADE,
    connection  text UNIQUE REFERENCES sync.connection (name) ON DELETE CASCADE,
    since       timestamptz NOT NULL DEFAULT now(),
    paused_by   name NOT NULL DEFAULT current_user,
    CHECK ((mirror IS NULL) <> (connection IS NULL))
);
REVOKE ALL ON sync.paused FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('sync.paused', '');
COMMENT ON TABLE sync.paused IS
    'paused mirrors (mirror) and connections (connection): nothing is pushed or pulled for them until resumed';

-- Pause a mirror: no pull and no push, by the worker or by sync.pull() /
-- sync.push(), from now until sync.resume(); a request already on its way
-- completes.  Pausing a paused mirror changes nothing (it keeps its
-- original since-time).  Journaled (op 'P').
CREATE FUNCTION sync.pause(local_table regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m sync.mirror;
    p sync.paused;
BEGIN
    IF local_table IS NULL THEN
        RAISE EXCEPTION 'sync.pause: local_table must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO m FROM sync.mirror mr WHERE mr.local_table = pause.local_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not mirrored', local_table
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT local_table FROM sync.mirror.';
    END IF;
    INSERT INTO sync.paused AS pz (mirror, since, paused_by) VALUES (m.id, now(), current_user)
        ON CONFLICT (mirror) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO p FROM sync.paused pz WHERE pz.mirror = m.id;
        RAISE NOTICE 'table % is already paused (since %, by %)', local_table, p.since, p.paused_by;
        RETURN;
    END IF;
    INSERT INTO sync.journal (mirror, direction, op, result, detail)
        VALUES (m.id, 'out', 'P', 'paused', format('paused by %s (sync.pause)', current_user));
END $$;
COMMENT ON FUNCTION sync.pause(regclass) IS
    'stop pushing and pulling a mirrored table until sync.resume(); its writes keep being queued';

-- Resume a mirror: its queued writes go out and its pull is due at once
-- (the worker is woken at commit).  A mirror whose connection is paused, or
-- in a held copy of the database, stays paused: a WARNING says so.
CREATE FUNCTION sync.resume(local_table regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m sync.mirror;
    p sync.paused;
    c sync.paused;
    held text;
BEGIN
    IF local_table IS NULL THEN
        RAISE EXCEPTION 'sync.resume: local_table must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO m FROM sync.mirror mr WHERE mr.local_table = resume.local_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not mirrored', local_table
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT local_table FROM sync.mirror.';
    END IF;
    DELETE FROM sync.paused pz WHERE pz.mirror = m.id RETURNING * INTO p;
    IF FOUND THEN
        INSERT INTO sync.journal (mirror, direction, op, result, detail)
            VALUES (m.id, 'out', 'R', 'resumed',
                    format('resumed by %s after %s paused (sync.resume)', current_user,
                           date_trunc('second', now() - p.since)));
        UPDATE sync.mirror_state s SET next_pull_at = now() WHERE s.mirror = m.id AND s.next_pull_at > now();
        PERFORM sync.wake();
    END IF;
    SELECT * INTO c FROM sync.paused pz WHERE pz.connection = m.connection;
    IF FOUND THEN
        RAISE WARNING 'table % stays paused: its connection "%" is paused (since %, by %)',
                local_table, m.connection, c.since, c.paused_by
            USING HINT = format('SELECT sync.resume_connection(%L) resumes every mirror of the connection.',
                                m.connection);
    ELSIF p.mirror IS NULL THEN
        RAISE NOTICE 'table % is not paused', local_table;
    END IF;
    SELECT sync._held_reason(array_agg(i.database_oid), array_agg(i.system_identifier)) INTO held
      FROM sync.instance i;
    IF held IS NOT NULL THEN
        RAISE WARNING 'table % does not sync yet: this database is held', local_table
            USING DETAIL = held || '.',
                  HINT = 'See sync.status (column held) and docs/worker.md.';
    END IF;
END $$;
COMMENT ON FUNCTION sync.resume(regclass) IS
    'resume pushing and pulling a paused mirrored table; its queued writes go out';

-- Pause every mirror of a connection, including mirrors made later, until
-- sync.resume_connection().  Journaled for each of its mirrors.
CREATE FUNCTION sync.pause_connection(name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p sync.paused;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'sync.pause_connection: name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM sync.connection c WHERE c.name = pause_connection.name) THEN
        RAISE EXCEPTION 'connection "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT name FROM sync.connection.';
    END IF;
    INSERT INTO sync.paused AS pz (connection, since, paused_by) VALUES (name, now(), current_user)
        ON CONFLICT (connection) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO p FROM sync.paused pz WHERE pz.connection = pause_connection.name;
        RAISE NOTICE 'connection "%" is already paused (since %, by %)', name, p.since, p.paused_by;
        RETURN;
    END IF;
    INSERT INTO sync.journal (mirror, direction, op, result, detail)
        SELECT m.id, 'out', 'P', 'paused',
               format('connection %s paused by %s (sync.pause_connection)', name, current_user)
          FROM sync.mirror m WHERE m.connection = pause_connection.name ORDER BY m.id;
END $$;
COMMENT ON FUNCTION sync.pause_connection(text) IS
    'stop pushing and pulling every mirror of a connection until sync.resume_connection()';

-- Resume a connection: its mirrors sync again, except those paused on
-- their own (sync.pause), which a NOTICE lists.
CREATE FUNCTION sync.resume_connection(name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p sync.paused;
    own text;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'sync.resume_connection: name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM sync.connection c WHERE c.name = resume_connection.name) THEN
        RAISE EXCEPTION 'connection "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT name FROM sync.connection.';
    END IF;
    DELETE FROM sync.paused pz WHERE pz.connection = resume_connection.name RETURNING * INTO p;
    IF NOT FOUND THEN
        RAISE NOTICE 'connection "%" is not paused', name;
        RETURN;
    END IF;
    INSERT INTO sync.journal (mirror, direction, op, result, detail)
        SELECT m.id, 'out', 'R', 'resumed',
               format('connection %s resumed by %s after %s paused (sync.resume_connection)',
                      name, current_user, date_trunc('second', now() - p.since))
          FROM sync.mirror m WHERE m.connection = resume_connection.name ORDER BY m.id;
    UPDATE sync.mirror_state s SET next_pull_at = now()
      FROM sync.mirror m
     WHERE s.mirror = m.id AND m.connection = resume_connection.name AND s.next_pull_at > now()
       AND NOT EXISTS (SELECT 1 FROM sync.paused pz WHERE pz.mirror = m.id);
    PERFORM sync.wake();
    SELECT string_agg(m.local_table::text, ', ' ORDER BY m.local_table::text) INTO own
      FROM sync.mirror m JOIN sync.paused pz ON pz.mirror = m.id
     WHERE m.connection = resume_connection.name;
    IF own IS NOT NULL THEN
        RAISE NOTICE 'these mirrors of connection "%" stay paused on their own: %', name, own
            USING HINT = 'sync.resume(table) resumes each.';
    END IF;
END $$;
COMMENT ON FUNCTION sync.resume_connection(text) IS
    'resume pushing and pulling the mirrors of a paused connection';

REVOKE EXECUTE ON FUNCTION sync.pause(regclass), sync.resume(regclass),
    sync.pause_connection(text), sync.resume_connection(text) FROM PUBLIC;

-- (sync.status, with the pause columns: src/sql/79_status.sql)
