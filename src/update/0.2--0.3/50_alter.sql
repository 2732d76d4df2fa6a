-- alter: sync.alter_mirror (change a mirror in place) and schema drift
-- (sync.drift, sync.check_drift); the same text as src/sql/76_alter.sql.
-- Fields added to a mirror, being pulled for the rows it has already: a
-- backfill of only these fields (plus ID and stamp) with a cursor of its
-- own, applied as an UPDATE of their columns alone (src/alter.c).
CREATE TABLE sync.fill (
    mirror      int PRIMARY KEY REFERENCES sync.mirror (id) ON DELETE CASCADE,
    fields      text[] NOT NULL,                -- remote names
    cursor      jsonb,                          -- the provider's; NULL: not started
    filled      bigint NOT NULL DEFAULT 0,      -- rows updated so far
    started_at  timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error  text                            -- of the last page, if it failed
);

-- When each mirror's remote object was last described, and the remote's
-- field names then (new ones since are "available").
CREATE TABLE sync.drift_state (
    mirror       int PRIMARY KEY REFERENCES sync.mirror (id) ON DELETE CASCADE,
    checked_at   timestamptz,
    known_fields text[],
    requested_at timestamptz,                   -- a push was refused for an unknown field
    last_error   text
);

-- Open drift entries, one per remote field.  A "deleted" field is left out
-- of the mirror's pulls and pushes (src/catalog.c, mirror_load) until the
-- remote has it again or it is dropped from the mirror.
CREATE TABLE sync.schema_drift (
    mirror       int NOT NULL REFERENCES sync.mirror (id) ON DELETE CASCADE,
    remote_field text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('deleted', 'retyped', 'available')),
    detected_at  timestamptz NOT NULL DEFAULT now(),
    detail       text NOT NULL,
    PRIMARY KEY (mirror, remote_field)
);
REVOKE ALL ON sync.fill, sync.drift_state, sync.schema_drift FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('sync.fill', '');
SELECT pg_catalog.pg_extension_config_dump('sync.drift_state', '');
SELECT pg_catalog.pg_extension_config_dump('sync.schema_drift', '');

CREATE VIEW sync.drift AS
SELECT m.local_table, d.remote_field, d.kind, d.detected_at, d.detail
  FROM sync.schema_drift d
  JOIN sync.mirror m ON m.id = d.mirror;
REVOKE ALL ON sync.drift FROM PUBLIC;
COMMENT ON VIEW sync.drift IS
    'remote fields deleted, retyped or newly available, as the last description of the remote showed';

-- Does a remote's refusal name a field the remote does not know?  The words
-- of Salesforce (INVALID_FIELD, "No such column 'X' on sobject of type Y"),
-- HubSpot (PROPERTY_DOESNT_EXIST) and NetSuite (REST: "Field 'x' is not
-- recognized for record type 'y'", SuiteQL: "Unknown identifier 'x'").  A
-- false positive costs one description of the remote.
CREATE FUNCTION sync._unknown_field_error(code text, message text) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(code, '') ~ '^(INVALID_FIELD|PROPERTY_DOESNT_EXIST)$'
        OR coalesce(message, '') ~ ('(No such column|PROPERTY_DOESNT_EXIST|Unknown identifier|'
                                    'is not recognized for record type|INVALID_FIELD([^_]|$))')
$$;

-- Compare a description of the remote object (a JSON array of {name, type,
-- local_type, role}) with the mirror's fields, and record what differs.
-- `how` says what ran the check (journaled).  Returns the open entries.
CREATE FUNCTION sync._drift_note(mirror_id int, described jsonb, how text) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    mr sync.mirror;
    known text[];
    gone text[];
    changed text[];
    summary jsonb;
BEGIN
    SELECT * INTO mr FROM sync.mirror m WHERE m.id = mirror_id FOR SHARE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO sync.drift_state AS ds (mirror) VALUES (mr.id) ON CONFLICT (mirror) DO NOTHING;
    SELECT ds.known_fields INTO known FROM sync.drift_state ds WHERE ds.mirror = mr.id FOR UPDATE;

    WITH d AS (SELECT * FROM jsonb_to_recordset(described) AS x(name text, type text, local_type text, role text)),
    f AS (SELECT f.* FROM sync.field f
           WHERE f.mirror = mr.id AND f.local_column NOT IN (mr.remote_id_column, mr.stamp_column)),
    found AS (
        -- mapped fields the remote no longer has
        SELECT f.remote_name, 'deleted' AS kind,
               format('%s has no field %s any more: it is left out of pulls and pushes (the rest of each record '
                      'still syncs) and column %I of %s keeps the values it had. If the field was renamed, map the '
                      'new one: SELECT sync.alter_mirror(%L, add_fields => ARRAY[''<new name>'']); to stop '
                      'syncing it: SELECT sync.alter_mirror(%L, drop_fields => ARRAY[%L]).',
                      mr.remote_object, f.remote_name, f.local_column, mr.local_table,
                      mr.local_table::text, mr.local_table::text, f.remote_name) AS detail
          FROM f WHERE NOT EXISTS (SELECT 1 FROM d WHERE d.name = f.remote_name)
        UNION ALL
        -- mapped fields of another type now
        SELECT f.remote_name, 'retyped',
               format('field %s of %s changed type from %s to %s; column %I stays %s and values arrive where they '
                      'convert (the others are set aside, see sync.errors). To take the new type, drop the field '
                      'and add it again: SELECT sync.alter_mirror(%L, drop_fields => ARRAY[%L], drop_columns => true); '
                      'SELECT sync.alter_mirror(%L, add_fields => ARRAY[%L]).',
                      f.remote_name, mr.remote_object, f.remote_type, d.type, f.local_column, f.local_type,
                      mr.local_table::text, f.remote_name, mr.local_table::text, f.remote_name)
          FROM f JOIN d ON d.name = f.remote_name
         WHERE d.type IS DISTINCT FROM f.remote_type
        UNION ALL
        -- fields new since the last check, not mapped
        SELECT d.name, 'available',
               format('%s has a new field %s (%s): map it with SELECT sync.alter_mirror(%L, add_fields => ARRAY[%L]).',
                      mr.remote_object, d.name, d.type, mr.local_table::text, d.name)
          FROM d
         WHERE known IS NOT NULL AND d.local_type IS NOT NULL AND coalesce(d.role, 'data') = 'data'
           AND NOT d.name = ANY (known)
           AND NOT EXISTS (SELECT 1 FROM sync.field f2 WHERE f2.mirror = mr.id AND f2.remote_name = d.name)
        UNION ALL
        -- still available: kept until mapped or gone
        SELECT s.remote_field, s.kind, s.detail
          FROM sync.schema_drift s
         WHERE s.mirror = mr.id AND s.kind = 'available'
           AND EXISTS (SELECT 1 FROM d WHERE d.name = s.remote_field)
           AND NOT EXISTS (SELECT 1 FROM sync.field f2 WHERE f2.mirror = mr.id AND f2.remote_name = s.remote_field)
           AND (known IS NULL OR s.remote_field = ANY (known))),
    resolved AS (
        DELETE FROM sync.schema_drift s
         WHERE s.mirror = mr.id AND NOT EXISTS (SELECT 1 FROM found WHERE found.remote_name = s.remote_field)
        RETURNING s.remote_field),
    upserted AS (
        INSERT INTO sync.schema_drift AS s (mirror, remote_field, kind, detail)
        SELECT mr.id, found.remote_name, found.kind, found.detail FROM found
        ON CONFLICT (mirror, remote_field) DO UPDATE
           SET kind = EXCLUDED.kind, detail = EXCLUDED.detail,
               detected_at = CASE WHEN s.kind = EXCLUDED.kind THEN s.detected_at ELSE now() END
         WHERE s.kind IS DISTINCT FROM EXCLUDED.kind OR s.detail IS DISTINCT FROM EXCLUDED.detail
        RETURNING s.remote_field, s.kind)
    SELECT array_agg(u.remote_field ORDER BY u.remote_field) FILTER (WHERE u.kind = 'deleted'),
           (SELECT array_agg(x ORDER BY x) FROM (SELECT remote_field FROM upserted
                                                 UNION SELECT remote_field FROM resolved) c(x))
      INTO gone, changed
      FROM upserted u;

    UPDATE sync.drift_state ds
       SET checked_at = now(), last_error = NULL, requested_at = NULL,
           known_fields = (SELECT coalesce(array_agg(x.name ORDER BY x.name), '{}')
                             FROM jsonb_to_recordset(described) AS x(name text))
     WHERE ds.mirror = mr.id;

    SELECT array_agg(s.remote_field) INTO gone FROM sync.schema_drift s
     WHERE s.mirror = mr.id AND s.kind = 'deleted';
    IF gone IS NOT NULL THEN
        -- the entries the remote refused for a field it no longer has go
        -- again without it, and a pull that failed on it runs at once
        UPDATE sync.outbox o
           SET state = 'pending', next_attempt_at = now(), claimed_until = NULL,
               error_code = NULL, error_message = NULL, error_fields = NULL, updated_at = now()
         WHERE o.mirror = mr.id AND o.state = 'parked'
           AND sync._unknown_field_error(o.error_code, o.error_message)
           AND (o.error_fields && gone
                OR EXISTS (SELECT 1 FROM unnest(gone) g WHERE strpos(o.error_message, g) > 0));
        UPDATE sync.mirror_state s SET next_pull_at = now(), failures = 0
         WHERE s.mirror = mr.id AND sync._unknown_field_error(NULL, s.last_error);
    END IF;

    INSERT INTO sync.journal (mirror, direction, op, fields, result, detail)
    VALUES (mr.id, 'in', 'S', changed, CASE WHEN changed IS NULL THEN 'ok' ELSE 'drift' END,
            format('schema check (%s) of %s: %s', how, mr.remote_object,
                   coalesce((SELECT string_agg(format('%s %s', s.remote_field, s.kind), ', ' ORDER BY s.remote_field)
                               FROM sync.schema_drift s WHERE s.mirror = mr.id), 'no drift')));

    SELECT coalesce(jsonb_object_agg(k.kind, k.fields), '{}') INTO summary
      FROM (SELECT s.kind, jsonb_agg(s.remote_field ORDER BY s.remote_field) AS fields
              FROM sync.schema_drift s WHERE s.mirror = mr.id GROUP BY s.kind) k;
    RETURN summary;
END $$;

-- A failed check is shown and not repeated before the next one is due.
CREATE FUNCTION sync._drift_failed(mirror int, message text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO sync.drift_state AS ds (mirror, checked_at, last_error)
    SELECT m.id, now(), message FROM sync.mirror m WHERE m.id = _drift_failed.mirror
    ON CONFLICT (mirror) DO UPDATE SET checked_at = now(), last_error = EXCLUDED.last_error, requested_at = NULL;
    INSERT INTO sync.journal (mirror, direction, op, result, detail)
    SELECT m.id, 'in', 'S', 'error', 'schema check failed: ' || message
      FROM sync.mirror m WHERE m.id = _drift_failed.mirror;
$$;

-- Describe the remote now and report drift (the worker does it every
-- sync.drift_check_interval, and when the remote refuses a field).
CREATE FUNCTION sync.check_drift(local_table regclass) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    mr sync.mirror;
    described jsonb;
BEGIN
    SELECT * INTO mr FROM sync.mirror m WHERE m.local_table = check_drift.local_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not mirrored', local_table
            USING ERRCODE = 'undefined_object', HINT = 'Mirror it with sync.mirror().';
    END IF;
    SELECT coalesce(jsonb_agg(jsonb_build_object('name', r.remote_name, 'type', r.remote_type,
                                                 'local_type', r.local_type, 'role', r.role)), '[]')
      INTO described
      FROM sync.remote_fields(mr.connection, mr.remote_object) r;
    RETURN sync._drift_note(mr.id, described, 'sync.check_drift');
END $$;

-- Change a mirror in place.  add_fields: remote fields to map (their
-- columns are added, or adopted if they exist, and filled for the rows
-- there are by a pull of only these fields); drop_fields: fields to stop
-- syncing (their columns stay unless drop_columns); options: keys replace
-- the mirror's ("direction" too), a key set to null removes it.  Queued
-- writes stay queued.  Takes effect at the worker's next round.
CREATE FUNCTION sync.alter_mirror(local_table regclass, add_fields text[] DEFAULT NULL,
                                  drop_fields text[] DEFAULT NULL, options jsonb DEFAULT NULL,
                                  drop_columns boolean DEFAULT false)
RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    mr sync.mirror;
    new_options jsonb;
    new_direction text;
    k text;
    missing text[];
    dropped_cols text[];
    rf record;
    att record;
    added text[] := '{}';
    fill boolean := false;
    has_rows boolean;
BEGIN
    IF local_table IS NULL OR drop_columns IS NULL THEN
        RAISE EXCEPTION 'sync.alter_mirror: local_table and drop_columns must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO mr FROM sync.mirror m WHERE m.local_table = alter_mirror.local_table FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not mirrored', local_table
            USING ERRCODE = 'undefined_object', HINT = 'Mirror it with sync.mirror().';
    END IF;
    IF coalesce(cardinality(add_fields), 0) = 0 AND coalesce(cardinality(drop_fields), 0) = 0
       AND (options IS NULL OR options = '{}') THEN
        RAISE EXCEPTION 'sync.alter_mirror: nothing to change for %', local_table
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give add_fields, drop_fields or options.';
    END IF;
    IF array_position(add_fields, NULL) IS NOT NULL OR array_position(drop_fields, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'sync.alter_mirror: field names must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT array_agg(DISTINCT a ORDER BY a) INTO missing FROM unnest(add_fields) a WHERE a = ANY (drop_fields);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'field % is both added and dropped', array_to_string(missing, ', ')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Drop it in one call and add it in another.';
    END IF;

    -- options: merged over the mirror's, then checked as sync.mirror() checks them
    IF options IS NOT NULL AND jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'mirror options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    new_direction := coalesce(options->>'direction', mr.direction);
    IF options ? 'direction' AND (jsonb_typeof(options->'direction') <> 'string'
                                  OR new_direction NOT IN ('both', 'pull', 'push')) THEN
        RAISE EXCEPTION 'invalid direction %', options->'direction'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use "both", "pull" or "push".';
    END IF;
    new_options := jsonb_strip_nulls(mr.options || coalesce(options - 'direction', '{}'));
    PERFORM sync._check_mirror_options(new_options);
    FOR k IN SELECT c.k FROM (VALUES ('key_column', mr.key_column), ('remote_id_column', mr.remote_id_column),
                                     ('stamp_column', mr.stamp_column)) c(k, v)
              WHERE coalesce(new_options->>c.k, c.v) <> c.v LOOP
            RAISE EXCEPTION 'mirror option "%" of % cannot be changed', k, local_table
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Rename the column with ALTER TABLE ... RENAME COLUMN, or unmirror and mirror again.';
    END LOOP;

    -- fields to drop: mapped data fields only
    SELECT array_agg(d ORDER BY d) INTO missing FROM unnest(drop_fields) d
     WHERE NOT EXISTS (SELECT 1 FROM sync.field f WHERE f.mirror = mr.id AND f.remote_name = d);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'field % is not mapped by the mirror of %', array_to_string(missing, ', '), local_table
            USING ERRCODE = 'undefined_column',
                  HINT = format('See SELECT remote_name FROM sync.field WHERE mirror = %s.', mr.id);
    END IF;
    SELECT array_agg(f.remote_name ORDER BY f.remote_name) INTO missing FROM sync.field f
     WHERE f.mirror = mr.id AND f.remote_name = ANY (drop_fields)
       AND f.local_column IN (mr.remote_id_column, mr.stamp_column);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'cannot drop field % of %: it is the record ID or the modification stamp', array_to_string(missing, ', '), local_table
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'sync needs both; to stop syncing the table, use sync.unmirror().';
    END IF;
    IF new_options->>'idempotency_field' = ANY (drop_fields) THEN
        RAISE EXCEPTION 'cannot drop field % of %: it is the mirror option "idempotency_field"', new_options->>'idempotency_field', local_table
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Set options => ''{"idempotency_field": null}'' in the same call.';
    END IF;

    -- fields to add: described by the remote now
    IF coalesce(cardinality(add_fields), 0) > 0
       OR new_options->>'idempotency_field' IS DISTINCT FROM mr.options->>'idempotency_field' THEN
        SELECT array_agg(a ORDER BY a) INTO missing FROM unnest(add_fields) a
         WHERE EXISTS (SELECT 1 FROM sync.field f WHERE f.mirror = mr.id AND f.remote_name = a);
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'field % is mapped by the mirror of % already', array_to_string(missing, ', '), local_table
                USING ERRCODE = 'duplicate_column';
        END IF;
        IF to_regclass('pg_temp.sync_alter_fields_tmp') IS NOT NULL THEN
            DROP TABLE pg_temp.sync_alter_fields_tmp;
        END IF;
        CREATE TEMP TABLE sync_alter_fields_tmp ON COMMIT DROP AS
            SELECT * FROM sync.remote_fields(mr.connection, mr.remote_object);
        SELECT array_agg(a ORDER BY a) INTO missing FROM unnest(add_fields) a
         WHERE NOT EXISTS (SELECT 1 FROM pg_temp.sync_alter_fields_tmp r WHERE r.remote_name = a);
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION '% has no field %', mr.remote_object, array_to_string(missing, ', ')
                USING ERRCODE = 'undefined_column',
                      DETAIL = format('Connection "%s" describes %s without %s.', mr.connection,
                                      mr.remote_object, array_to_string(missing, ', ')),
                      HINT = format('See SELECT remote_name FROM sync.remote_fields(%L, %L).',
                                    mr.connection, mr.remote_object);
        END IF;
        SELECT array_agg(a ORDER BY a) INTO missing
          FROM unnest(add_fields) a JOIN pg_temp.sync_alter_fields_tmp r ON r.remote_name = a
         WHERE r.local_type IS NULL OR r.role <> 'data';
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'field % of % cannot be mirrored', array_to_string(missing, ', '), mr.remote_object
                USING ERRCODE = 'feature_not_supported',
                      DETAIL = 'Compound fields (addresses, geolocations) have no column type; mirror their components instead.';
        END IF;
        IF new_direction = 'push' THEN
            SELECT array_agg(a ORDER BY a) INTO missing
              FROM unnest(add_fields) a JOIN pg_temp.sync_alter_fields_tmp r ON r.remote_name = a
             WHERE NOT (r.createable OR r.updateable);
            IF missing IS NOT NULL THEN
                RAISE EXCEPTION 'field % of % is read-only and cannot be pushed', array_to_string(missing, ', '), mr.remote_object
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Leave it out, or use direction "both" to pull it.';
            END IF;
        END IF;
        SELECT array_agg(r.local_column ORDER BY r.local_column) INTO missing
          FROM pg_temp.sync_alter_fields_tmp r
         WHERE r.remote_name = ANY (add_fields)
           AND (r.local_column IN (mr.key_column, mr.remote_id_column, mr.stamp_column)
                OR EXISTS (SELECT 1 FROM sync.field f WHERE f.mirror = mr.id AND f.local_column = r.local_column
                             AND NOT f.remote_name = ANY (coalesce(drop_fields, '{}')))
                OR (SELECT count(*) FROM pg_temp.sync_alter_fields_tmp r2
                     WHERE r2.remote_name = ANY (add_fields) AND r2.local_column = r.local_column) > 1);
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'remote field column % collides with a column the mirror of % maps already', array_to_string(missing, ', '), local_table
                USING ERRCODE = 'duplicate_column';
        END IF;
        IF new_options ? 'idempotency_field' AND NOT EXISTS (
            SELECT 1 FROM pg_temp.sync_alter_fields_tmp r WHERE r.remote_name = new_options->>'idempotency_field') THEN
            RAISE EXCEPTION '% has no field % (mirror option "idempotency_field")', mr.remote_object, new_options->'idempotency_field'
                USING ERRCODE = 'undefined_column',
                      HINT = format('See SELECT remote_name FROM sync.remote_fields(%L, %L) WHERE external_id.',
                                    mr.connection, mr.remote_object);
        END IF;
        -- an existing column of that name is adopted if its type fits
        FOR rf IN SELECT * FROM pg_temp.sync_alter_fields_tmp r WHERE r.remote_name = ANY (add_fields) LOOP
            SELECT format_type(a.atttypid, a.atttypmod) AS t, ty.typcategory INTO att
              FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
             WHERE a.attrelid = mr.local_table AND a.attname = rf.local_column AND a.attnum > 0 AND NOT a.attisdropped;
            IF FOUND AND att.typcategory <> (SELECT typcategory FROM pg_type WHERE oid = rf.local_type::regtype) THEN
                RAISE EXCEPTION 'column "%" of % is %, remote field % needs %', rf.local_column, local_table,
                                att.t, rf.remote_name, rf.local_type
                    USING ERRCODE = 'datatype_mismatch',
                          HINT = 'Rename or drop the column, or change its type.';
            END IF;
        END LOOP;
    END IF;

    -- the authority option names fields mapped after the change
    IF new_options ? 'authority' THEN
        SELECT array_agg(a ORDER BY a) INTO missing FROM jsonb_object_keys(new_options->'authority') a
         WHERE (NOT EXISTS (SELECT 1 FROM sync.field f WHERE f.mirror = mr.id AND f.remote_name = a)
                AND NOT a = ANY (coalesce(add_fields, '{}')))
            OR a = ANY (coalesce(drop_fields, '{}'));
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'mirror option "authority" names unmapped field %', array_to_string(missing, ', ')
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF new_options IS DISTINCT FROM mr.options THEN
        -- provider checks (e.g. a remote filter, judged by the remote)
        PERFORM sync._check_mirror(mr.connection, mr.remote_object, new_options);
    END IF;

    -- everything checked: change it
    UPDATE sync.mirror m SET options = new_options, direction = new_direction WHERE m.id = mr.id;

    IF coalesce(cardinality(drop_fields), 0) > 0 THEN
        SELECT array_agg(f.local_column::text ORDER BY f.local_column) INTO dropped_cols
          FROM sync.field f WHERE f.mirror = mr.id AND f.remote_name = ANY (drop_fields);
        DELETE FROM sync.field f WHERE f.mirror = mr.id AND f.remote_name = ANY (drop_fields);
        DELETE FROM sync.schema_drift s WHERE s.mirror = mr.id AND s.remote_field = ANY (drop_fields);
        UPDATE sync.fill fl SET fields = ARRAY(SELECT x FROM unnest(fl.fields) x WHERE NOT x = ANY (drop_fields))
         WHERE fl.mirror = mr.id;
        DELETE FROM sync.fill fl WHERE fl.mirror = mr.id AND cardinality(fl.fields) = 0;
    END IF;

    IF coalesce(cardinality(add_fields), 0) > 0 THEN
        FOR rf IN SELECT * FROM pg_temp.sync_alter_fields_tmp r
                   WHERE r.remote_name = ANY (add_fields) ORDER BY r.local_column LOOP
            IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = mr.local_table
                              AND a.attname = rf.local_column AND a.attnum > 0 AND NOT a.attisdropped) THEN
                EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', mr.local_table, rf.local_column, rf.local_type);
            END IF;
            INSERT INTO sync.field (mirror, remote_name, local_column, remote_type, local_type,
                                    createable, updateable, reference_to, authority)
            VALUES (mr.id, rf.remote_name, rf.local_column, rf.remote_type, rf.local_type,
                    rf.createable, rf.updateable, rf.reference_to, 'both');
            added := added || rf.remote_name;
        END LOOP;
        DELETE FROM sync.schema_drift s WHERE s.mirror = mr.id AND s.remote_field = ANY (add_fields);
        -- the rows there are get the new fields by a pull of only these
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I IS NOT NULL)', mr.local_table, mr.remote_id_column)
            INTO has_rows;
        IF has_rows AND new_direction <> 'push' THEN
            INSERT INTO sync.fill AS fl (mirror, fields) VALUES (mr.id, add_fields)
            ON CONFLICT (mirror) DO UPDATE
               SET fields = ARRAY(SELECT DISTINCT x FROM unnest(fl.fields || EXCLUDED.fields) x ORDER BY x),
                   cursor = NULL, started_at = now(), next_attempt_at = now(), last_error = NULL;
            fill := true;
        END IF;
        DROP TABLE pg_temp.sync_alter_fields_tmp;
    END IF;
    IF new_direction = 'push' THEN
        DELETE FROM sync.fill fl WHERE fl.mirror = mr.id;
    END IF;

    -- authority per field, from the option (fields it leaves out: both)
    UPDATE sync.field f SET authority = coalesce(new_options->'authority'->>f.remote_name, 'both')
     WHERE f.mirror = mr.id
       AND f.authority IS DISTINCT FROM coalesce(new_options->'authority'->>f.remote_name, 'both');

    -- capture follows the new field list and direction; then columns may go
    PERFORM sync._install_triggers(mr.id);
    IF drop_columns AND dropped_cols IS NOT NULL THEN
        FOREACH k IN ARRAY dropped_cols LOOP
            EXECUTE format('ALTER TABLE %s DROP COLUMN %I', mr.local_table, k);
        END LOOP;
    END IF;

    -- the next round uses the new settings: a pull is due now
    UPDATE sync.mirror_state s SET next_pull_at = now() WHERE s.mirror = mr.id;
    PERFORM sync.wake();
    RETURN jsonb_build_object('added', to_jsonb(added), 'dropped', to_jsonb(coalesce(drop_fields, '{}')),
                              'columns_dropped', to_jsonb(CASE WHEN drop_columns THEN coalesce(dropped_cols, '{}') ELSE '{}' END),
                              'direction', new_direction, 'options', new_options, 'fill', fill);
END $$;

REVOKE EXECUTE ON FUNCTION
    sync._unknown_field_error(text, text),
    sync._drift_note(int, jsonb, text),
    sync._drift_failed(int, text),
    sync.check_drift(regclass),
    sync.alter_mirror(regclass, text[], text[], jsonb, boolean)
FROM PUBLIC;
