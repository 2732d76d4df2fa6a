-- ---------------------------------------------------------------------------
-- The SQL interface: connections, mirrors, pull/push/retry, status, errors.
-- Configuration functions are not executable by PUBLIC.
-- ---------------------------------------------------------------------------

CREATE TABLE sync.connection_state (
    connection  text PRIMARY KEY REFERENCES sync.connection (name) ON DELETE CASCADE,
    api_usage   text,                       -- as the remote last reported it
    updated_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON sync.connection_state FROM PUBLIC;

-- Remote names become snake_case column names: FirstName -> first_name,
-- AccountId -> account_id, Sync_Key__c -> sync_key__c, HTMLBody -> html_body.
CREATE FUNCTION sync.snake_case(remote_name text) RETURNS text
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'sync_snake_case';

-- C: validate options with the provider, split secrets from the rest.
CREATE FUNCTION sync._check_connection(provider text, options jsonb) RETURNS jsonb
    LANGUAGE C STRICT AS 'MODULE_PATHNAME', 'sync_check_connection';

CREATE FUNCTION sync.create_connection(name text, provider text, options jsonb)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    split jsonb;
BEGIN
    IF name IS NULL OR provider IS NULL OR options IS NULL THEN
        RAISE EXCEPTION 'sync.create_connection: name, provider and options must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF EXISTS (SELECT 1 FROM sync.connection c WHERE c.name = create_connection.name) THEN
        RAISE EXCEPTION 'connection "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Use sync.alter_connection() to change it.';
    END IF;
    IF name !~ '^[a-z_][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid connection name "%"', name
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'Connection names are lower-case letters, digits and underscores, starting with a letter or underscore.';
    END IF;
    -- secrets given as files (X_file) are checked and read here; setting
    -- one takes the privilege to read server files
    split := sync._check_connection(name, provider, options, '{}');
    INSERT INTO sync.connection (name, provider, options)
        VALUES (name, provider, split->'options');
    INSERT INTO sync.connection_secret (connection, secrets)
        VALUES (name, split->'secrets');
END $$;

-- b's keys over a's, recursively where both sides hold an object: the
-- stored options and secrets are two halves of one document (auth.type is
-- an option, auth.client_secret a secret).
CREATE FUNCTION sync._deep_merge(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text;
    r jsonb := a;
BEGIN
    FOR k IN SELECT jsonb_object_keys(b) LOOP
        IF jsonb_typeof(r->k) = 'object' AND jsonb_typeof(b->k) = 'object' THEN
            r := jsonb_set(r, ARRAY[k], sync._deep_merge(r->k, b->k));
        ELSE
            r := r || jsonb_build_object(k, b->k);
        END IF;
    END LOOP;
    RETURN r;
END $$;

-- Top-level keys of `options` replace those of the connection; a key set to
-- null removes it.
CREATE FUNCTION sync.alter_connection(name text, options jsonb)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c sync.connection;
    merged jsonb;
    split jsonb;
BEGIN
    IF options IS NULL THEN
        RAISE EXCEPTION 'sync.alter_connection: options must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass ''{}'' to keep the options as they are; a key set to null removes it.';
    END IF;
    SELECT * INTO c FROM sync.connection WHERE connection.name = alter_connection.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'connection "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT name FROM sync.connection.';
    END IF;
    SELECT sync._deep_merge(c.options, coalesce(s.secrets, '{}')) INTO merged
      FROM sync.connection_secret s WHERE s.connection = c.name;
    merged := coalesce(merged, c.options);
    IF jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'connection options must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- a secret file path that is new or changed takes the privilege to read
    -- server files; one already set may stay
    split := sync._check_connection(c.name, c.provider, jsonb_strip_nulls(merged || options), merged);
    UPDATE sync.connection SET options = split->'options' WHERE connection.name = c.name;
    UPDATE sync.connection_secret SET secrets = split->'secrets' WHERE connection = c.name;
END $$;

CREATE FUNCTION sync.test_connection(name text) RETURNS jsonb
    LANGUAGE C STRICT AS 'MODULE_PATHNAME', 'sync_test_connection';

CREATE FUNCTION sync.remote_fields(connection text, remote_object text)
RETURNS TABLE (remote_name text, label text, remote_type text, local_column text,
               local_type text, role text, createable boolean, updateable boolean,
               nillable boolean, is_unique boolean, external_id boolean,
               reference_to text, length int)
    LANGUAGE C STRICT AS 'MODULE_PATHNAME', 'sync_remote_fields';

CREATE FUNCTION sync._check_mirror(connection text, remote_object text, options jsonb)
RETURNS void LANGUAGE C STRICT AS 'MODULE_PATHNAME', 'sync_check_mirror';

CREATE FUNCTION sync.capture() RETURNS trigger
    LANGUAGE C AS 'MODULE_PATHNAME', 'sync_capture';
CREATE FUNCTION sync.truncate_guard() RETURNS trigger
    LANGUAGE C AS 'MODULE_PATHNAME', 'sync_truncate_guard';
-- Only sync.mirror() attaches them (PostgreSQL checks EXECUTE on a trigger
-- function when the trigger is created, not when it fires).
REVOKE EXECUTE ON FUNCTION sync.capture(), sync.truncate_guard() FROM PUBLIC;

CREATE FUNCTION sync._drop_triggers(t regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tg name;
BEGIN
    FOR tg IN SELECT tgname FROM pg_trigger WHERE tgrelid = t
               AND tgname IN ('sync_capture', 'sync_truncate_guard') LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', tg, t);
    END LOOP;
END $$;

-- (Re)create the triggers of a mirror from its field mapping: capture and
-- the TRUNCATE guard, the guard alone for a pull-only mirror.
CREATE FUNCTION sync._install_triggers(m int) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    mr sync.mirror;
    args text;
BEGIN
    SELECT * INTO STRICT mr FROM sync.mirror WHERE id = m;
    PERFORM sync._drop_triggers(mr.local_table);
    -- "delete": "flag" needs its column (src/sql/56_deletes.sql)
    PERFORM sync._delete_policy_column(mr.local_table);
    IF mr.direction = 'pull' THEN
        -- no capture, but TRUNCATE would still lose rows the pull never resends
        EXECUTE format('CREATE TRIGGER sync_truncate_guard BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION sync.truncate_guard(''pull'')',
                       mr.local_table);
        RETURN;
    END IF;
    SELECT string_agg(quote_literal(f.local_column), ', ' ORDER BY f.local_column) INTO args
      FROM sync.field f
     WHERE f.mirror = m AND (f.createable OR f.updateable) AND f.authority <> 'remote';
    -- "local_delete": "ignore": local deletes are not captured at all
    EXECUTE format('CREATE TRIGGER sync_capture AFTER INSERT OR UPDATE%s ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION sync.capture(%s, %L, %L%s)',
                   CASE WHEN mr.options->>'local_delete' = 'ignore' THEN '' ELSE ' OR DELETE' END,
                   mr.local_table, m, mr.key_column, mr.remote_id_column,
                   CASE WHEN args IS NULL THEN '' ELSE ', ' || args END);
    EXECUTE format('CREATE TRIGGER sync_truncate_guard BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION sync.truncate_guard()',
                   mr.local_table);
END $$;

-- Mirror options the engine understands; providers check their own parts.
CREATE FUNCTION sync._check_mirror_options(options jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text;
    known text[] := ARRAY['idempotency_field', 'conflict', 'filter', 'delete',
                          'pull_interval', 'authority', 'key_column',
                          'remote_id_column', 'stamp_column', 'batch_size', 'batch', 'local_delete',
                          'realtime'];
BEGIN
    IF jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'mirror options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k IN SELECT jsonb_object_keys(options) LOOP
        IF NOT k = ANY (known) THEN
            RAISE EXCEPTION 'unknown mirror option "%"', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Known options: ' || array_to_string(known, ', ') || '.';
        END IF;
    END LOOP;
    IF options ? 'conflict' AND options->>'conflict' NOT IN ('local_wins', 'remote_wins') THEN
        RAISE EXCEPTION 'invalid value for mirror option "conflict": %', options->'conflict'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use "local_wins" (pending local changes are kept) or "remote_wins".';
    END IF;
    IF options ? 'delete' AND coalesce(options->>'delete', '') NOT IN ('delete', 'keep', 'flag') THEN
        RAISE EXCEPTION 'invalid value for mirror option "delete": %', options->'delete'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use "delete" (remote deletes delete the row), "keep" (the row stays) or "flag" (the row stays with remote_deleted_at set).';
    END IF;
    IF options ? 'batch' AND jsonb_typeof(options->'batch') <> 'boolean' THEN
        RAISE EXCEPTION 'invalid value for mirror option "batch": %', options->'batch'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use true (writes go in the remote''s asynchronous batches, where it has them) or false.';
    END IF;
    IF options ? 'pull_interval' THEN
        BEGIN
            PERFORM (options->>'pull_interval')::interval;
        EXCEPTION WHEN others THEN
            RAISE EXCEPTION 'invalid value for mirror option "pull_interval": %', options->'pull_interval'
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Use an interval such as "30 seconds".';
        END;
    END IF;
    IF options ? 'authority' THEN
        IF jsonb_typeof(options->'authority') <> 'object' OR EXISTS (
            SELECT 1 FROM jsonb_each_text(options->'authority') a WHERE a.value NOT IN ('local', 'remote', 'both')) THEN
            RAISE EXCEPTION 'invalid value for mirror option "authority": %', options->'authority'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use an object mapping remote field names to "local", "remote" or "both".';
        END IF;
    END IF;
    IF options ? 'batch_size' AND (jsonb_typeof(options->'batch_size') <> 'number'
                                   OR (options->>'batch_size')::numeric NOT BETWEEN 1 AND 100000
                                   OR (options->>'batch_size')::numeric <> trunc((options->>'batch_size')::numeric)) THEN
        RAISE EXCEPTION 'invalid value for mirror option "batch_size": %', options->'batch_size'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use an integer from 1 to 100000.';
    END IF;
    FOR k IN SELECT unnest(ARRAY['key_column', 'remote_id_column', 'stamp_column']) LOOP
        IF options ? k AND (jsonb_typeof(options->k) <> 'string'
                            OR octet_length(options->>k) NOT BETWEEN 1 AND 63) THEN
            RAISE EXCEPTION 'invalid value for mirror option "%": %', k, options->k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use a column name of 1 to 63 bytes.';
        END IF;
    END LOOP;
    IF (SELECT count(DISTINCT c) <> count(*) FROM
          unnest(ARRAY[coalesce(options->>'key_column', 'id'),
                       coalesce(options->>'remote_id_column', 'remote_id'),
                       coalesce(options->>'stamp_column', 'remote_modified_at')]) c) THEN
        RAISE EXCEPTION 'mirror options "key_column", "remote_id_column" and "stamp_column" must name three different columns'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF options ? 'local_delete' AND coalesce(options->>'local_delete', '') NOT IN ('propagate', 'ignore') THEN
        RAISE EXCEPTION 'invalid value for mirror option "local_delete": %', options->'local_delete'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use "propagate" (local deletes delete the remote record) or "ignore" (the row leaves this database only).';
    END IF;
    IF options ? 'realtime' AND jsonb_typeof(options->'realtime') <> 'boolean' THEN
        RAISE EXCEPTION 'invalid value for mirror option "realtime": %', options->'realtime'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use true (remote changes arrive as a stream, where the remote has one: Salesforce Change Data Capture) or false.';
    END IF;
END $$;

CREATE FUNCTION sync.mirror(connection text, remote_object text, local_table text,
                            fields text[] DEFAULT NULL, direction text DEFAULT 'both',
                            options jsonb DEFAULT '{}')
RETURNS regclass LANGUAGE plpgsql AS $$
-- No pinned search_path: an unqualified table name is created where the
-- caller's search_path says; every other name here is schema-qualified.
DECLARE
    conn sync.connection;
    ident text[];
    schema_name text;
    table_name text;
    rel regclass;
    key_col text := coalesce(options->>'key_column', 'id');
    rid_col text := coalesce(options->>'remote_id_column', 'remote_id');
    stamp_col text := coalesce(options->>'stamp_column', 'remote_modified_at');
    rf record;
    missing text[];
    cols text := '';
    m int;
    pk_cols text[];
    att record;
    adopted boolean := false;
BEGIN
    IF connection IS NULL OR remote_object IS NULL OR local_table IS NULL THEN
        RAISE EXCEPTION 'sync.mirror: connection, remote_object and local_table must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO conn FROM sync.connection c WHERE c.name = mirror.connection;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'connection "%" does not exist', connection
            USING ERRCODE = 'undefined_object', HINT = 'Create it with sync.create_connection().';
    END IF;
    IF direction IS NULL OR direction NOT IN ('both', 'pull', 'push') THEN
        RAISE EXCEPTION 'invalid direction "%"', direction
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use ''both'', ''pull'' or ''push''.';
    END IF;
    PERFORM sync._check_mirror_options(coalesce(options, '{}'));
    PERFORM sync._check_mirror_fields(remote_object, fields);

    ident := parse_ident(local_table);
    IF array_length(ident, 1) = 1 THEN
        schema_name := current_schema();
        table_name := ident[1];
    ELSIF array_length(ident, 1) = 2 THEN
        schema_name := ident[1];
        table_name := ident[2];
    ELSE
        RAISE EXCEPTION 'invalid table name "%"', local_table USING ERRCODE = 'invalid_name';
    END IF;
    IF schema_name IS NULL THEN
        RAISE EXCEPTION 'no schema to create "%" in', local_table
            USING ERRCODE = 'invalid_schema_name', HINT = 'Qualify the table name with a schema.';
    END IF;
    IF schema_name IN ('sync', 'pg_catalog', 'information_schema', 'pg_toast', 'pg_temp') OR schema_name LIKE 'pg\_temp\_%' THEN
        RAISE EXCEPTION 'cannot mirror into schema "%"', schema_name
            USING ERRCODE = 'insufficient_privilege', HINT = 'Mirror into a schema of your own.';
    END IF;

    -- the remote schema (ERROR for an unknown object, with the remote's words)
    IF to_regclass('pg_temp.sync_remote_fields_tmp') IS NOT NULL THEN
        DROP TABLE pg_temp.sync_remote_fields_tmp;
    END IF;
    CREATE TEMP TABLE sync_remote_fields_tmp ON COMMIT DROP AS
        SELECT * FROM sync.remote_fields(connection, remote_object);

    -- provider checks of the options (e.g. a remote filter, judged by the remote)
    PERFORM sync._check_mirror(connection, remote_object, coalesce(options, '{}'));

    -- requested fields must exist and be mappable
    IF fields IS NOT NULL THEN
        SELECT array_agg(f ORDER BY f) INTO missing
          FROM unnest(fields) f
         WHERE NOT EXISTS (SELECT 1 FROM pg_temp.sync_remote_fields_tmp r WHERE r.remote_name = f);
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION '% has no field %', remote_object,
                            array_to_string(missing[1:10], ', ') ||
                            CASE WHEN cardinality(missing) > 10
                                 THEN format(' (and %s more)', cardinality(missing) - 10) ELSE '' END
                USING ERRCODE = 'undefined_column',
                      DETAIL = format('Connection "%s" describes %s without %s.', connection,
                                      remote_object, array_to_string(missing[1:10], ', ') ||
                                      CASE WHEN cardinality(missing) > 10 THEN ', ...' ELSE '' END),
                      HINT = format('See SELECT remote_name FROM sync.remote_fields(%L, %L).',
                                    connection, remote_object);
        END IF;
        SELECT array_agg(f ORDER BY f) INTO missing
          FROM unnest(fields) f JOIN pg_temp.sync_remote_fields_tmp r ON r.remote_name = f
         WHERE r.local_type IS NULL;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'field % of % cannot be mirrored', array_to_string(missing, ', '), remote_object
                USING ERRCODE = 'feature_not_supported',
                      DETAIL = 'Compound fields (addresses, geolocations) have no column type; mirror their components instead.';
        END IF;
        IF direction = 'push' THEN
            SELECT array_agg(f ORDER BY f) INTO missing
              FROM unnest(fields) f JOIN pg_temp.sync_remote_fields_tmp r ON r.remote_name = f
             WHERE NOT (r.createable OR r.updateable) AND r.role = 'data';
            IF missing IS NOT NULL THEN
                RAISE EXCEPTION 'field % of % is read-only and cannot be pushed', array_to_string(missing, ', '), remote_object
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Remove it from fields, or use direction ''both'' to pull it.';
            END IF;
        END IF;
    END IF;
    -- the idempotency field must be a field of the object
    IF options ? 'idempotency_field' AND NOT EXISTS (
        SELECT 1 FROM pg_temp.sync_remote_fields_tmp r WHERE r.remote_name = options->>'idempotency_field') THEN
        RAISE EXCEPTION '% has no field % (mirror option "idempotency_field")', remote_object, options->'idempotency_field'
            USING ERRCODE = 'undefined_column',
                  HINT = format('See SELECT remote_name FROM sync.remote_fields(%L, %L) WHERE external_id.',
                                connection, remote_object);
    END IF;
    -- the authority option must name mapped fields
    IF options ? 'authority' THEN
        SELECT array_agg(k ORDER BY k) INTO missing
          FROM jsonb_object_keys(options->'authority') k
         WHERE NOT EXISTS (SELECT 1 FROM pg_temp.sync_remote_fields_tmp r WHERE r.remote_name = k)
            OR (fields IS NOT NULL AND NOT k = ANY (fields));
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'mirror option "authority" names unmapped field %', array_to_string(missing, ', ')
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    -- the mapped set: requested data fields (or all mappable ones), plus id and stamp
    DELETE FROM pg_temp.sync_remote_fields_tmp r
     WHERE r.local_type IS NULL
        OR (r.role = 'data' AND fields IS NOT NULL AND NOT r.remote_name = ANY (fields));
    IF NOT EXISTS (SELECT 1 FROM pg_temp.sync_remote_fields_tmp WHERE role = 'id')
       OR NOT EXISTS (SELECT 1 FROM pg_temp.sync_remote_fields_tmp WHERE role = 'stamp') THEN
        RAISE EXCEPTION '% has no record ID or modification stamp field', remote_object
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'sync needs both to mirror an object incrementally.';
    END IF;
    UPDATE pg_temp.sync_remote_fields_tmp SET local_column =
        CASE role WHEN 'id' THEN rid_col WHEN 'stamp' THEN stamp_col ELSE local_column END;
    SELECT array_agg(local_column) INTO missing FROM pg_temp.sync_remote_fields_tmp
     WHERE role = 'data' AND local_column IN (key_col, rid_col, stamp_col);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'remote field column % collides with the key, remote-id or stamp column', array_to_string(missing, ', ')
            USING ERRCODE = 'duplicate_column',
                  HINT = 'Choose other names with the options key_column, remote_id_column or stamp_column.';
    END IF;

    rel := to_regclass(format('%I.%I', schema_name, table_name));
    IF rel IS NULL THEN
        -- create the table from the remote schema
        SELECT string_agg(format(',%s    %I %s', E'\n', r.local_column, r.local_type), ''
                          ORDER BY r.role <> 'id', r.role = 'stamp', r.local_column)
          INTO cols FROM pg_temp.sync_remote_fields_tmp r;
        EXECUTE format(E'CREATE TABLE %I.%I (\n    %I bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY%s,\n    UNIQUE (%I))',
                       schema_name, table_name, key_col, cols, rid_col);
        rel := format('%I.%I', schema_name, table_name)::regclass;
        EXECUTE format('COMMENT ON TABLE %s IS %L', rel,
                       format('mirror of %s %s (connection %s)', conn.provider, remote_object, connection));
    ELSE
        -- adopt an existing table with a compatible shape
        adopted := true;
        IF EXISTS (SELECT 1 FROM sync.mirror mm WHERE mm.local_table = rel) THEN
            RAISE EXCEPTION 'table % is already mirrored', rel
                USING ERRCODE = 'duplicate_object', HINT = 'Use sync.unmirror() first.';
        END IF;
        SELECT array_agg(a.attname::text) INTO pk_cols
          FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = rel AND i.indisprimary;
        IF pk_cols IS NULL OR array_length(pk_cols, 1) <> 1 THEN
            RAISE EXCEPTION 'cannot adopt table %: it needs a single-column primary key', rel
                USING ERRCODE = 'invalid_table_definition';
        END IF;
        key_col := pk_cols[1];
        FOR rf IN SELECT * FROM pg_temp.sync_remote_fields_tmp LOOP
            SELECT a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod) AS t, ty.typcategory
              INTO att
              FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
             WHERE a.attrelid = rel AND a.attname = rf.local_column AND a.attnum > 0 AND NOT a.attisdropped;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'cannot adopt table %: column "%" for remote field % is missing', rel, rf.local_column, rf.remote_name
                    USING ERRCODE = 'invalid_table_definition',
                          HINT = format('Add it: ALTER TABLE %s ADD COLUMN %I %s;', rel, rf.local_column, rf.local_type);
            END IF;
            IF att.typcategory <> (SELECT typcategory FROM pg_type WHERE oid = rf.local_type::regtype) THEN
                RAISE EXCEPTION 'cannot adopt table %: column "%" is %, remote field % needs %', rel,
                                rf.local_column, att.t, rf.remote_name, rf.local_type
                    USING ERRCODE = 'datatype_mismatch';
            END IF;
        END LOOP;
        IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
                        WHERE i.indrelid = rel AND i.indisunique AND i.indnkeyatts = 1
                          AND a.attnum = i.indkey[0] AND a.attname = rid_col AND i.indpred IS NULL) THEN
            RAISE EXCEPTION 'cannot adopt table %: remote-id column "%" needs a unique constraint', rel, rid_col
                USING ERRCODE = 'invalid_table_definition',
                      HINT = format('ALTER TABLE %s ADD UNIQUE (%I);', rel, rid_col);
        END IF;
    END IF;

    INSERT INTO sync.mirror (connection, remote_object, local_table, direction, options,
                             key_column, remote_id_column, stamp_column)
        VALUES (connection, remote_object, rel, direction, coalesce(options, '{}'),
                key_col, rid_col, stamp_col)
        RETURNING id INTO m;
    INSERT INTO sync.field (mirror, remote_name, local_column, remote_type, local_type,
                            createable, updateable, reference_to, authority)
        SELECT m, r.remote_name, r.local_column, r.remote_type, r.local_type,
               r.createable AND r.role = 'data', r.updateable AND r.role = 'data', r.reference_to,
               coalesce(options->'authority'->>r.remote_name, 'both')
          FROM pg_temp.sync_remote_fields_tmp r;
    INSERT INTO sync.mirror_state (mirror) VALUES (m);
    DROP TABLE pg_temp.sync_remote_fields_tmp;

    PERFORM sync._install_triggers(m);
    PERFORM sync.wake();
    IF adopted THEN
        RAISE NOTICE 'adopted existing table % as the mirror of % %', rel, connection, remote_object;
    END IF;
    RETURN rel;
END $$;

-- Fold the captured writes of a mirror (NULL: of every mirror) from
-- sync.capture_log into sync.outbox now; returns how many were folded.
-- Callers that read a mirror's outbox call it first.  One folder per mirror
-- at a time (a lock held to the end of the transaction): writes of a row
-- are folded in the order they were made.
CREATE FUNCTION sync._fold(mirror int DEFAULT NULL) RETURNS bigint
    LANGUAGE C CALLED ON NULL INPUT AS 'MODULE_PATHNAME', 'sync_fold';
REVOKE EXECUTE ON FUNCTION sync._fold(int) FROM PUBLIC;

CREATE FUNCTION sync.unmirror(local_table regclass, drop_table boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m int;
    pending bigint;
BEGIN
    IF drop_table IS NULL THEN
        RAISE EXCEPTION 'sync.unmirror: drop_table must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT id INTO m FROM sync.mirror WHERE mirror.local_table = unmirror.local_table FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not mirrored', local_table USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM sync._fold(m);
    SELECT count(*) INTO pending FROM sync.outbox WHERE mirror = m;
    IF pending > 0 THEN
        RAISE WARNING '% queued local writes of % are discarded and will not reach the remote', pending, local_table;
    END IF;
    DELETE FROM sync.outbox WHERE mirror = m;
    PERFORM sync._drop_triggers(local_table);
    DELETE FROM sync.mirror WHERE id = m;
    IF drop_table THEN
        EXECUTE format('DROP TABLE %s', local_table);
    END IF;
END $$;

CREATE FUNCTION sync.drop_connection(name text, cascade boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t regclass;
    mirrors text;
BEGIN
    PERFORM 1 FROM sync.connection c WHERE c.name = drop_connection.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'connection "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    IF cascade IS NULL THEN
        RAISE EXCEPTION 'sync.drop_connection: cascade must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT string_agg(local_table::text, ', ' ORDER BY local_table::text) INTO mirrors
      FROM sync.mirror WHERE connection = name;
    IF mirrors IS NOT NULL AND NOT cascade THEN
        RAISE EXCEPTION 'connection "%" is used by mirrors %', name, mirrors
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Unmirror them first, or call sync.drop_connection(name, cascade => true).';
    END IF;
    FOR t IN SELECT local_table FROM sync.mirror WHERE connection = name LOOP
        PERFORM sync.unmirror(t);
    END LOOP;
    DELETE FROM sync.connection c WHERE c.name = drop_connection.name;
END $$;

CREATE FUNCTION sync.pull(local_table regclass) RETURNS jsonb
    LANGUAGE C STRICT AS 'MODULE_PATHNAME', 'sync_pull';
CREATE FUNCTION sync.push(local_table regclass) RETURNS jsonb
    LANGUAGE C STRICT AS 'MODULE_PATHNAME', 'sync_push';

-- Requeue parked failures (all of a table's, or one outbox entry): outbound
-- entries are sent again; inbound records set aside are re-read from the
-- remote and applied again at the next pull.  Returns how many.
CREATE FUNCTION sync.retry(local_table regclass, outbox_id bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m int;
    n bigint;
    n_in bigint := 0;
BEGIN
    SELECT id INTO m FROM sync.mirror WHERE mirror.local_table = retry.local_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not mirrored', local_table USING ERRCODE = 'undefined_object';
    END IF;
    UPDATE sync.outbox o
       SET state = 'pending', next_attempt_at = now(), claimed_until = NULL,
           error_code = NULL, error_message = NULL, error_fields = NULL, updated_at = now()
     WHERE o.mirror = m AND o.state = 'parked' AND (retry.outbox_id IS NULL OR o.id = retry.outbox_id);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF retry.outbox_id IS NULL THEN
        UPDATE sync.inbound_error e SET state = 'retry' WHERE e.mirror = m;
        GET DIAGNOSTICS n_in = ROW_COUNT;
    END IF;
    UPDATE sync.mirror_state SET failures = 0, next_pull_at = now()
     WHERE mirror = m AND (failures > 0 OR n_in > 0);
    PERFORM sync.wake();
    RETURN n + n_in;
END $$;

-- Claim a batch of ready outbox entries of a mirror for pushing: only the
-- oldest entry of each row (later ones wait for it), skipping entries other
-- claimers hold, with a lease so a crashed claimer's entries come back.
-- Creates get their idempotency key here, once, so a retry reuses it (and
-- so do updates: one whose row never reached the remote is sent as a
-- create).  The key names this installation (sync.instance: the server,
-- the database, when syncing was enabled), the mirror and the entry, so no
-- other database, nor this one after the extension was re-created, can
-- produce the same key and upsert into a record that is not its own.
-- The entries are updated by id from an array, not by a join to `ready`:
-- with statistics from before a bulk write (an outbox analyzed while
-- empty) the join could rescan `ready` for every entry of the outbox.
CREATE FUNCTION sync._claim(mirror int, max_entries int, lease_seconds int)
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

-- The dotted paths of a JSON object's leaves: {"auth": {"token": 1}} -> {auth.token}
CREATE FUNCTION sync._leaf_paths(j jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE t(path, value) AS (
        SELECT e.key, e.value FROM jsonb_each(j) e
        UNION ALL
        SELECT t.path || '.' || e.key, e.value
          FROM t, jsonb_each(CASE jsonb_typeof(t.value) WHEN 'object' THEN t.value ELSE '{}' END) e)
    SELECT coalesce(array_agg(path ORDER BY path), '{}') FROM t WHERE jsonb_typeof(value) <> 'object'
$$;

-- Connections with their secrets redacted: only the names of secret options.
CREATE VIEW sync.connections AS
SELECT c.name, c.provider, c.options,
       sync._leaf_paths(s.secrets) AS secret_keys,
       st.api_usage, c.created_at
  FROM sync.connection c
  LEFT JOIN sync.connection_secret s ON s.connection = c.name
  LEFT JOIN sync.connection_state st ON st.connection = c.name;

-- sync.status is in 79_status.sql (it reads sync.paused and sync.schema_drift).

CREATE VIEW sync.errors AS
SELECT m.local_table,
       o.local_key,
       CASE o.op WHEN 'I' THEN 'insert' WHEN 'U' THEN 'update' WHEN 'W' THEN 'write-back'
                 ELSE 'delete' END AS operation,
       o.remote_id,
       o.error_code,
       o.error_message,
       o.error_fields,
       o.attempts,
       o.created_at AS queued_at,
       o.updated_at AS failed_at,
       o.id AS outbox_id,
       'out'::text AS direction
  FROM sync.outbox o
  JOIN sync.mirror m ON m.id = o.mirror
 WHERE o.state = 'parked'
UNION ALL
SELECT m.local_table,
       e.local_key,
       e.operation,
       e.remote_id,
       e.error_code,
       e.error_message,
       NULL::text[],
       e.attempts,
       e.first_failed_at,
       e.failed_at,
       NULL::bigint,
       'in'::text
  FROM sync.inbound_error e
  JOIN sync.mirror m ON m.id = e.mirror;

REVOKE ALL ON ALL TABLES IN SCHEMA sync FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
    sync._check_connection(text, jsonb),
    sync._deep_merge(jsonb, jsonb),
    sync._check_mirror(text, text, jsonb),
    sync.create_connection(text, text, jsonb),
    sync.alter_connection(text, jsonb),
    sync.drop_connection(text, boolean),
    sync.test_connection(text),
    sync.remote_fields(text, text),
    sync._install_triggers(int),
    sync._drop_triggers(regclass),
    sync._claim(int, int, int),
    sync._check_mirror_options(jsonb),
    sync.mirror(text, text, text, text[], text, jsonb),
    sync.unmirror(regclass, boolean),
    sync.pull(regclass),
    sync.push(regclass),
    sync.retry(regclass, bigint)
FROM PUBLIC;
