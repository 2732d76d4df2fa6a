-- ---------------------------------------------------------------------------
-- Configuration as code (docs/operations.md, "Configuration as code"):
-- sync.export_config() writes connections (options without secrets),
-- mirrors, field mappings, authority and options as one JSON document;
-- sync.import_config() makes a database match such a document and reports
-- each action.  The document:
--   {"sync_config": 1,
--    "connections": [{"name", "provider", "options", "secret_keys"}, ...],
--    "mirrors": [{"local_table", "connection", "remote_object", "direction",
--                 "key_column", "remote_id_column", "stamp_column",
--                 "options", "fields": {"<remote name>": {"column", "authority"}}}, ...]}
-- arrays sorted by name (byte order), object keys in jsonb's order.
-- ---------------------------------------------------------------------------

CREATE FUNCTION sync._config_check_provider(connection text, provider text) RETURNS void
    LANGUAGE C STRICT AS 'MODULE_PATHNAME', 'sync_config_check_provider';

-- A table's name as the document holds it: schema-qualified, quoted where needed.
CREATE FUNCTION sync._config_table_name(t regclass) RETURNS text
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('%I.%I', n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = t
$$;

-- One mirror's entry.  The key, remote-ID and stamp columns and the
-- authority are given once, as the mirror uses them (not as its options
-- said when it was made); the ID and stamp fields are not listed as fields.
CREATE FUNCTION sync._config_mirror(m sync.mirror) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'local_table', sync._config_table_name(m.local_table),
        'connection', m.connection,
        'remote_object', m.remote_object,
        'direction', m.direction,
        'key_column', m.key_column,
        'remote_id_column', m.remote_id_column,
        'stamp_column', m.stamp_column,
        'options', m.options - ARRAY['authority', 'key_column', 'remote_id_column', 'stamp_column'],
        'fields', coalesce((
            SELECT jsonb_object_agg(f.remote_name,
                                    jsonb_build_object('column', f.local_column, 'authority', f.authority))
              FROM sync.field f
             WHERE f.mirror = m.id AND f.local_column NOT IN (m.remote_id_column, m.stamp_column)), '{}'))
$$;

-- SECURITY DEFINER: whoever is granted EXECUTE sees the configuration
-- (never a secret: only the names of secret options), without SELECT on
-- the catalog tables.  Not granted to PUBLIC.
CREATE FUNCTION sync.export_config() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'sync_config', 1,
        'connections', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'name', c.name,
                       'provider', c.provider,
                       'options', c.options,
                       'secret_keys', to_jsonb(coalesce(sync._leaf_paths(s.secrets), '{}'::text[])))
                   ORDER BY c.name COLLATE "C")
              FROM sync.connection c
              LEFT JOIN sync.connection_secret s ON s.connection = c.name), '[]'),
        'mirrors', coalesce((
            SELECT jsonb_agg(sync._config_mirror(m) ORDER BY sync._config_table_name(m.local_table) COLLATE "C")
              FROM sync.mirror m), '[]'))
$$;
COMMENT ON FUNCTION sync.export_config() IS
    'connections (without secrets), mirrors, field mappings and options as one JSON document';

-- Raise again an error met while applying an action, naming the object.
CREATE FUNCTION sync._config_reraise(what text, st text, msg text, det text, hnt text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m text := format('sync.import_config: %s: %s', what, msg);
BEGIN
    IF coalesce(det, '') <> '' AND coalesce(hnt, '') <> '' THEN
        RAISE EXCEPTION USING ERRCODE = st, MESSAGE = m, DETAIL = det, HINT = hnt;
    ELSIF coalesce(det, '') <> '' THEN
        RAISE EXCEPTION USING ERRCODE = st, MESSAGE = m, DETAIL = det;
    ELSIF coalesce(hnt, '') <> '' THEN
        RAISE EXCEPTION USING ERRCODE = st, MESSAGE = m, HINT = hnt;
    ELSE
        RAISE EXCEPTION USING ERRCODE = st, MESSAGE = m;
    END IF;
END $$;

-- The document's entries, checked: every error names the entry and says
-- what is wrong, before anything is changed.  Returns the mirrors with
-- their table names normalised ("local_table" as sync._config_table_name
-- writes it) and "fields" as an object.
CREATE FUNCTION sync._config_check_doc(doc jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    e jsonb;
    i int;
    k text;
    what text;
    names text[] := '{}';
    tables text[] := '{}';
    ident text[];
    f record;
    fields jsonb;
    mirrors jsonb := '[]';
    conn_keys text[] := ARRAY['name', 'provider', 'options', 'secret_keys'];
    mirror_keys text[] := ARRAY['local_table', 'connection', 'remote_object', 'direction', 'key_column',
                                'remote_id_column', 'stamp_column', 'options', 'fields'];
BEGIN
    IF jsonb_typeof(doc) <> 'object' THEN
        RAISE EXCEPTION 'a sync configuration document must be a JSON object, not %', jsonb_typeof(doc)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass what sync.export_config() returns: {"sync_config": 1, "connections": [...], "mirrors": [...]}.';
    END IF;
    IF NOT doc ? 'sync_config' THEN
        RAISE EXCEPTION 'not a sync configuration document: the key "sync_config" is missing'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass what sync.export_config() returns: {"sync_config": 1, "connections": [...], "mirrors": [...]}.';
    END IF;
    IF jsonb_typeof(doc->'sync_config') <> 'number' THEN
        RAISE EXCEPTION 'invalid configuration document version %', doc->'sync_config'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The version is a number: "sync_config": 1.';
    END IF;
    IF doc->'sync_config' <> '1' THEN
        RAISE EXCEPTION 'configuration document version % is not supported', doc->'sync_config'
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'This version of sync reads version 1.',
                  HINT = 'Export the document with the version of sync that is to read it.';
    END IF;
    FOR k IN SELECT jsonb_object_keys(doc) LOOP
        IF k NOT IN ('sync_config', 'connections', 'mirrors') THEN
            RAISE EXCEPTION 'unknown key "%" in the configuration document', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Known keys: sync_config, connections, mirrors.';
        END IF;
    END LOOP;
    FOR k IN SELECT unnest(ARRAY['connections', 'mirrors']) LOOP
        IF doc ? k AND jsonb_typeof(doc->k) <> 'array' THEN
            RAISE EXCEPTION '"%" of the configuration document must be an array', k
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;

    -- connections
    FOR e, i IN SELECT x.value, x.n FROM jsonb_array_elements(coalesce(doc->'connections', '[]')) WITH ORDINALITY x(value, n) LOOP
        what := format('connections[%s]', i);
        IF jsonb_typeof(e) <> 'object' THEN
            RAISE EXCEPTION '% of the configuration document must be an object', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(e->'name') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION '% of the configuration document has no "name"', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF e->>'name' !~ '^[a-z_][a-z0-9_]{0,62}$' THEN
            RAISE EXCEPTION 'invalid connection name "%" in the configuration document', e->>'name'
                USING ERRCODE = 'invalid_name',
                      DETAIL = 'Connection names are lower-case letters, digits and underscores, starting with a letter or underscore.';
        END IF;
        what := format('connection "%s"', e->>'name');
        IF e->>'name' = ANY (names) THEN
            RAISE EXCEPTION '% is in the configuration document more than once', what
                USING ERRCODE = 'duplicate_object';
        END IF;
        names := names || (e->>'name');
        FOR k IN SELECT jsonb_object_keys(e) LOOP
            IF NOT k = ANY (conn_keys) THEN
                RAISE EXCEPTION 'unknown key "%" in % of the configuration document', k, what
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Known keys: ' || array_to_string(conn_keys, ', ') || '.';
            END IF;
        END LOOP;
        IF jsonb_typeof(e->'provider') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION '% of the configuration document has no "provider"', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM sync._config_check_provider(e->>'name', e->>'provider');
        IF e ? 'options' AND jsonb_typeof(e->'options') <> 'object' THEN
            RAISE EXCEPTION '"options" of % must be a JSON object', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF e ? 'secret_keys' AND (jsonb_typeof(e->'secret_keys') <> 'array' OR EXISTS (
               SELECT 1 FROM jsonb_array_elements(e->'secret_keys') s
                WHERE jsonb_typeof(s) <> 'string' OR s->>0 !~ '^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$')) THEN
            RAISE EXCEPTION '"secret_keys" of % must be an array of option paths such as "auth.client_secret"', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;

    -- mirrors
    FOR e, i IN SELECT x.value, x.n FROM jsonb_array_elements(coalesce(doc->'mirrors', '[]')) WITH ORDINALITY x(value, n) LOOP
        what := format('mirrors[%s]', i);
        IF jsonb_typeof(e) <> 'object' THEN
            RAISE EXCEPTION '% of the configuration document must be an object', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(e->'local_table') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION '% of the configuration document has no "local_table"', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        BEGIN
            ident := parse_ident(e->>'local_table');
        EXCEPTION WHEN invalid_parameter_value THEN
            ident := NULL;
        END;
        IF ident IS NULL OR cardinality(ident) <> 2 THEN
            RAISE EXCEPTION 'invalid "local_table" % in % of the configuration document', e->'local_table', what
                USING ERRCODE = 'invalid_name',
                      HINT = 'Name the table with its schema, e.g. "crm.contact": a document means the same in every database.';
        END IF;
        e := jsonb_set(e, '{local_table}', to_jsonb(format('%I.%I', ident[1], ident[2])));
        what := format('mirror %s', e->>'local_table');
        IF e->>'local_table' = ANY (tables) THEN
            RAISE EXCEPTION '% is in the configuration document more than once', what
                USING ERRCODE = 'duplicate_object';
        END IF;
        tables := tables || (e->>'local_table');
        FOR k IN SELECT jsonb_object_keys(e) LOOP
            IF NOT k = ANY (mirror_keys) THEN
                RAISE EXCEPTION 'unknown key "%" in % of the configuration document', k, what
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Known keys: ' || array_to_string(mirror_keys, ', ') || '.';
            END IF;
        END LOOP;
        FOR k IN SELECT unnest(ARRAY['connection', 'remote_object']) LOOP
            IF jsonb_typeof(e->k) IS DISTINCT FROM 'string' OR e->>k = '' THEN
                RAISE EXCEPTION '% of the configuration document has no "%"', what, k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
        IF doc ? 'connections' THEN
            IF NOT (e->>'connection') = ANY (names) THEN
                RAISE EXCEPTION '% uses connection "%", which the configuration document does not list', what, e->>'connection'
                    USING ERRCODE = 'undefined_object',
                          HINT = 'Add the connection to "connections", or leave "connections" out to keep the database''s connections as they are.';
            END IF;
        ELSIF NOT EXISTS (SELECT 1 FROM sync.connection c WHERE c.name = e->>'connection') THEN
            RAISE EXCEPTION '% uses connection "%", which does not exist', what, e->>'connection'
                USING ERRCODE = 'undefined_object',
                      HINT = 'Create it with sync.create_connection(), or list it in "connections".';
        END IF;
        IF e ? 'direction' AND (jsonb_typeof(e->'direction') <> 'string' OR e->>'direction' NOT IN ('both', 'pull', 'push')) THEN
            RAISE EXCEPTION 'invalid "direction" % of %', e->'direction', what
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Use "both", "pull" or "push".';
        END IF;
        FOR k IN SELECT unnest(ARRAY['key_column', 'remote_id_column', 'stamp_column']) LOOP
            IF e ? k AND (jsonb_typeof(e->k) <> 'string' OR octet_length(e->>k) NOT BETWEEN 1 AND 63) THEN
                RAISE EXCEPTION 'invalid "%" % of %', k, e->k, what
                    USING ERRCODE = 'invalid_parameter_value', HINT = 'Use a column name of 1 to 63 bytes.';
            END IF;
        END LOOP;
        IF e ? 'options' THEN
            IF jsonb_typeof(e->'options') <> 'object' THEN
                RAISE EXCEPTION '"options" of % must be a JSON object', what
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            SELECT string_agg(x, ', ' ORDER BY x) INTO k FROM jsonb_object_keys(e->'options') x
             WHERE x IN ('authority', 'key_column', 'remote_id_column', 'stamp_column');
            IF k IS NOT NULL THEN
                RAISE EXCEPTION '"options" of % must not hold %', what, k
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Give the authority of each field in "fields" ({"Email": {"authority": "remote"}}) and the columns as "key_column", "remote_id_column" and "stamp_column" of the mirror.';
            END IF;
            BEGIN
                PERFORM sync._check_mirror_options(e->'options');
            EXCEPTION WHEN invalid_parameter_value THEN
                GET STACKED DIAGNOSTICS k = MESSAGE_TEXT;
                RAISE EXCEPTION '%: %', what, k USING ERRCODE = 'invalid_parameter_value';
            END;
        END IF;
        IF e ? 'fields' THEN
            fields := e->'fields';
            IF jsonb_typeof(fields) = 'array' THEN
                IF EXISTS (SELECT 1 FROM jsonb_array_elements(fields) x WHERE jsonb_typeof(x) <> 'string' OR x->>0 = '') THEN
                    RAISE EXCEPTION '"fields" of % must name remote fields', what
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
                IF (SELECT count(DISTINCT x) <> count(*) FROM jsonb_array_elements_text(fields) x) THEN
                    RAISE EXCEPTION '"fields" of % names a field more than once', what
                        USING ERRCODE = 'duplicate_column';
                END IF;
                SELECT coalesce(jsonb_object_agg(x, '{}'::jsonb), '{}') INTO fields FROM jsonb_array_elements_text(fields) x;
            ELSIF jsonb_typeof(fields) <> 'object' THEN
                RAISE EXCEPTION '"fields" of % must be an object {"<remote field>": {"column": ..., "authority": ...}} or an array of remote field names', what
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF fields = '{}' THEN
                RAISE EXCEPTION '"fields" of % is empty', what
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Name the remote fields to mirror, or leave "fields" out for every mappable field.';
            END IF;
            FOR f IN SELECT x.key, x.value FROM jsonb_each(fields) x LOOP
                IF f.key = '' OR jsonb_typeof(f.value) <> 'object' OR EXISTS (
                       SELECT 1 FROM jsonb_object_keys(f.value) y WHERE y NOT IN ('column', 'authority')) THEN
                    RAISE EXCEPTION 'invalid field % of %: %', to_jsonb(f.key), what, f.value
                        USING ERRCODE = 'invalid_parameter_value',
                              HINT = 'A field is {} or {"column": "<local column>", "authority": "both" | "local" | "remote"}.';
                END IF;
                IF f.value ? 'column' AND (jsonb_typeof(f.value->'column') <> 'string'
                                           OR octet_length(f.value->>'column') NOT BETWEEN 1 AND 63) THEN
                    RAISE EXCEPTION 'invalid "column" % of field % of %', f.value->'column', to_jsonb(f.key), what
                        USING ERRCODE = 'invalid_parameter_value', HINT = 'Use a column name of 1 to 63 bytes.';
                END IF;
                IF f.value ? 'authority' AND (jsonb_typeof(f.value->'authority') <> 'string'
                                              OR f.value->>'authority' NOT IN ('both', 'local', 'remote')) THEN
                    RAISE EXCEPTION 'invalid "authority" % of field % of %', f.value->'authority', to_jsonb(f.key), what
                        USING ERRCODE = 'invalid_parameter_value', HINT = 'Use "both", "local" or "remote".';
                END IF;
            END LOOP;
            IF (SELECT count(DISTINCT coalesce(x.value->>'column', sync.snake_case(x.key))) <> count(*) FROM jsonb_each(fields) x) THEN
                RAISE EXCEPTION 'two fields of % map to the same column', what
                    USING ERRCODE = 'duplicate_column';
            END IF;
            e := jsonb_set(e, '{fields}', fields);
        END IF;
        mirrors := mirrors || jsonb_build_array(e);
    END LOOP;
    RETURN mirrors;
END $$;

-- Make this database match a configuration document.  Returns each action:
-- status 'planned' (dry run), 'done', 'todo' (a person must complete it;
-- nothing was done) or 'skipped' (not asked for: unmirror or drop without
-- drop_missing).  A key the document leaves out (of the document or of a
-- mirror) leaves that part of the configuration as it is.
CREATE FUNCTION sync.import_config(doc jsonb, dry_run boolean DEFAULT true, drop_missing boolean DEFAULT false)
RETURNS TABLE (action text, object text, status text, detail jsonb)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    done_status text;
    mirrors jsonb;
    e jsonb;
    c sync.connection;
    m sync.mirror;
    cur_secrets jsonb;
    opts jsonb;
    missing text[];
    blocked text[] := '{}';
    split jsonb;
    list jsonb;
    changed text[];
    rel regclass;
    fields text[];
    mopts jsonb;
    renames jsonb;
    d jsonb;
    later jsonb;
    applied jsonb;
    auth jsonb;
    cur_opts jsonb;
    new_opts jsonb;
    k text;
    r record;
    st text; msg text; det text; hnt text;
    in_place text[] := ARRAY['conflict', 'delete', 'local_delete', 'pull_interval', 'batch_size'];
    structural text[] := ARRAY['authority', 'key_column', 'remote_id_column', 'stamp_column'];
BEGIN
    IF doc IS NULL OR dry_run IS NULL OR drop_missing IS NULL THEN
        RAISE EXCEPTION 'sync.import_config: doc, dry_run and drop_missing must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    done_status := CASE WHEN dry_run THEN 'planned' ELSE 'done' END;
    mirrors := sync._config_check_doc(doc);
    IF NOT dry_run THEN
        -- one import at a time
        PERFORM pg_advisory_xact_lock(hashtext('sync.import_config'));
    END IF;

    -- connections, by name
    FOR e IN SELECT x FROM jsonb_array_elements(coalesce(doc->'connections', '[]')) x
              ORDER BY x->>'name' COLLATE "C" LOOP
        opts := jsonb_strip_nulls(coalesce(e->'options', '{}'));
        SELECT * INTO c FROM sync.connection cc WHERE cc.name = e->>'name';
        IF NOT FOUND THEN
            -- secrets named by the document and given neither as values nor as files
            SELECT array_agg(p ORDER BY p) INTO missing
              FROM jsonb_array_elements_text(coalesce(e->'secret_keys', '[]')) p
             WHERE opts #> string_to_array(p, '.') IS NULL
               AND opts #> string_to_array(p || '_file', '.') IS NULL;
            IF missing IS NOT NULL THEN
                blocked := blocked || (e->>'name');
                RETURN QUERY SELECT 'create connection', e->>'name', 'todo', jsonb_build_object(
                    'provider', e->>'provider', 'missing_secrets', to_jsonb(missing),
                    'hint', format('The document does not carry secrets. Create the connection with them: '
                                   'sync.create_connection(%L, %L, <these options with %s>), '
                                   'or give each as a file (%s_file), then import again.',
                                   e->>'name', e->>'provider', array_to_string(missing, ', '), missing[1]));
                CONTINUE;
            END IF;
            BEGIN
                split := sync._check_connection(e->>'name', e->>'provider', opts, '{}');
                IF NOT dry_run THEN
                    PERFORM sync.create_connection(e->>'name', e->>'provider', opts);
                END IF;
            EXCEPTION WHEN others THEN
                GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
                PERFORM sync._config_reraise(format('connection "%s"', e->>'name'), st, msg, det, hnt);
            END;
            RETURN QUERY SELECT 'create connection', e->>'name', done_status, jsonb_build_object(
                'provider', e->>'provider', 'options', split->'options',
                'secret_keys', to_jsonb(sync._leaf_paths(split->'secrets')));
            CONTINUE;
        END IF;

        IF c.provider <> e->>'provider' THEN
            blocked := blocked || c.name;
            RETURN QUERY SELECT 'replace connection', c.name, 'todo', jsonb_build_object(
                'provider', jsonb_build_object('from', c.provider, 'to', e->>'provider'),
                'hint', 'A connection''s provider cannot change: unmirror its mirrors and drop it '
                        '(sync.drop_connection(name, cascade => true)), then import again.');
            CONTINUE;
        END IF;
        IF NOT e ? 'options' THEN
            CONTINUE;
        END IF;
        -- the secrets stay where the document gives neither a value nor a file
        SELECT s.secrets INTO cur_secrets FROM sync.connection_secret s WHERE s.connection = c.name;
        cur_secrets := coalesce(cur_secrets, '{}');
        FOR k IN SELECT unnest(sync._leaf_paths(cur_secrets)) LOOP
            IF opts #> string_to_array(k, '.') IS NULL AND opts #> string_to_array(k || '_file', '.') IS NULL THEN
                opts := jsonb_set(opts, string_to_array(k, '.'), cur_secrets #> string_to_array(k, '.'), true);
            END IF;
        END LOOP;
        BEGIN
            split := sync._check_connection(c.name, c.provider, opts, sync._deep_merge(c.options, cur_secrets));
        EXCEPTION WHEN others THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
            PERFORM sync._config_reraise(format('connection "%s"', c.name), st, msg, det, hnt);
        END;
        SELECT array_agg(p ORDER BY p) INTO changed
          FROM unnest(sync._leaf_paths(cur_secrets) || sync._leaf_paths(split->'secrets')) p
         WHERE cur_secrets #> string_to_array(p, '.') IS DISTINCT FROM split->'secrets' #> string_to_array(p, '.');
        IF split->'options' = c.options AND changed IS NULL THEN
            CONTINUE;
        END IF;
        IF NOT dry_run THEN
            -- alter_connection: top-level keys replace, null removes
            SELECT opts || coalesce(jsonb_object_agg(x, 'null'::jsonb), '{}') INTO opts
              FROM jsonb_object_keys(sync._deep_merge(c.options, cur_secrets)) x
             WHERE NOT opts ? x;
            BEGIN
                PERFORM sync.alter_connection(c.name, opts);
            EXCEPTION WHEN others THEN
                GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
                PERFORM sync._config_reraise(format('connection "%s"', c.name), st, msg, det, hnt);
            END;
        END IF;
        d := jsonb_build_object('options', jsonb_build_object('from', c.options, 'to', split->'options'));
        IF changed IS NOT NULL THEN
            d := d || jsonb_build_object('secrets_changed', to_jsonb(changed));
        END IF;
        RETURN QUERY SELECT 'alter connection', c.name, done_status, d;
    END LOOP;

    -- mirrors, by table
    FOR e IN SELECT x FROM jsonb_array_elements(mirrors) x ORDER BY x->>'local_table' COLLATE "C" LOOP
        rel := to_regclass(e->>'local_table');
        m := NULL;
        IF rel IS NOT NULL THEN
            SELECT * INTO m FROM sync.mirror mm WHERE mm.local_table = rel;
        END IF;

        IF m.id IS NULL THEN
            IF e->>'connection' = ANY (blocked) THEN
                RETURN QUERY SELECT 'create mirror', e->>'local_table', 'todo', jsonb_build_object(
                    'connection', e->>'connection', 'remote_object', e->>'remote_object',
                    'hint', format('Waits for connection "%s" (see its action); import again once it exists.', e->>'connection'));
                CONTINUE;
            END IF;
            SELECT array_agg(x ORDER BY x COLLATE "C") INTO fields FROM jsonb_object_keys(e->'fields') x;
            SELECT coalesce(jsonb_object_agg(x.key, x.value->'authority'), '{}') INTO auth
              FROM jsonb_each(e->'fields') x WHERE x.value->>'authority' <> 'both';
            mopts := coalesce(e->'options', '{}')
                     || CASE WHEN auth = '{}' THEN '{}' ELSE jsonb_build_object('authority', auth) END
                     || jsonb_strip_nulls(jsonb_build_object('key_column', e->'key_column',
                                                             'remote_id_column', e->'remote_id_column',
                                                             'stamp_column', e->'stamp_column'));
            -- columns named otherwise than the remote fields' default
            SELECT jsonb_agg(jsonb_build_object('field', x.key, 'from', sync.snake_case(x.key), 'to', x.value->>'column')
                             ORDER BY x.key COLLATE "C")
              INTO renames
              FROM jsonb_each(e->'fields') x
             WHERE x.value ? 'column' AND x.value->>'column' <> sync.snake_case(x.key);
            d := jsonb_build_object('connection', e->>'connection', 'remote_object', e->>'remote_object',
                                    'direction', coalesce(e->>'direction', 'both'),
                                    'fields', coalesce(to_jsonb(fields), '"all"'),
                                    'options', mopts, 'adopt', rel IS NOT NULL);
            IF renames IS NOT NULL THEN
                d := d || jsonb_build_object('columns', renames);
            END IF;
            IF rel IS NOT NULL AND renames IS NOT NULL THEN
                RETURN QUERY SELECT 'create mirror', e->>'local_table', 'todo', d || jsonb_build_object(
                    'hint', 'The table exists: sync.mirror() adopts it only with the default column names. '
                            'Rename the columns listed from "to" to "from", import again, then rename them back '
                            '(the mirror follows a rename).');
                CONTINUE;
            END IF;
            BEGIN
                PERFORM sync._check_mirror_options(mopts);
                IF NOT dry_run THEN
                    PERFORM sync.mirror(e->>'connection', e->>'remote_object', e->>'local_table', fields,
                                        coalesce(e->>'direction', 'both'), mopts);
                    rel := to_regclass(e->>'local_table');
                    FOR r IN SELECT x->>'from' AS a, x->>'to' AS b FROM jsonb_array_elements(renames) x LOOP
                        EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', rel, r.a, r.b);
                    END LOOP;
                END IF;
            EXCEPTION WHEN others THEN
                GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
                PERFORM sync._config_reraise(format('mirror %s', e->>'local_table'), st, msg, det, hnt);
            END;
            RETURN QUERY SELECT 'create mirror', e->>'local_table', done_status, d;
            CONTINUE;
        END IF;

        -- an existing mirror: what cannot change in place
        IF m.connection <> e->>'connection' OR m.remote_object <> e->>'remote_object' THEN
            RETURN QUERY SELECT 'replace mirror', e->>'local_table', 'todo', jsonb_build_object(
                'connection', jsonb_build_object('from', m.connection, 'to', e->>'connection'),
                'remote_object', jsonb_build_object('from', m.remote_object, 'to', e->>'remote_object'),
                'hint', format('A mirror''s connection and remote object cannot change: sync.unmirror(%L) '
                               '(the table and its rows stay), then import again to mirror the table anew.',
                               e->>'local_table'));
            CONTINUE;
        END IF;

        -- renamed columns: the user's table, so the user's decision
        SELECT jsonb_agg(jsonb_build_object('field', x.f, 'from', x.a, 'to', x.b) ORDER BY x.f COLLATE "C") INTO renames
          FROM (SELECT k2.f, k2.a, e->>k2.f AS b
                  FROM (VALUES ('key_column', m.key_column), ('remote_id_column', m.remote_id_column),
                               ('stamp_column', m.stamp_column)) k2(f, a)
                 WHERE e ? k2.f
                UNION ALL
                SELECT fl.remote_name, fl.local_column, e->'fields'->fl.remote_name->>'column'
                  FROM sync.field fl
                 WHERE fl.mirror = m.id AND e->'fields'->fl.remote_name ? 'column') x
         WHERE x.a <> x.b;
        IF renames IS NOT NULL THEN
            RETURN QUERY SELECT 'rename column', e->>'local_table', 'todo', jsonb_build_object(
                'columns', renames,
                'hint', 'Rename the table''s columns with ALTER TABLE ... RENAME COLUMN (the mirror follows), '
                        'or change the document.');
        END IF;

        -- in place now: the options in_place names, and authority;
        -- everything else waits for sync.alter_mirror
        later := '{}';
        applied := '{}';
        cur_opts := m.options - structural;
        new_opts := m.options;
        FOR k IN SELECT x FROM jsonb_object_keys(cur_opts || coalesce(e->'options', '{}')) x ORDER BY 1 LOOP
            CONTINUE WHEN NOT e ? 'options' OR cur_opts->k IS NOT DISTINCT FROM e->'options'->k;
            IF k = ANY (in_place) AND NOT (k = 'delete' AND 'flag' IN (coalesce(cur_opts->>k, ''), coalesce(e->'options'->>k, ''))) THEN
                applied := applied || jsonb_build_object(k, jsonb_build_object('from', cur_opts->k, 'to', e->'options'->k));
                new_opts := CASE WHEN e->'options' ? k THEN jsonb_set(new_opts, ARRAY[k], e->'options'->k)
                                 ELSE new_opts - k END;
            ELSE
                later := later || jsonb_build_object(k, jsonb_build_object('from', cur_opts->k, 'to', e->'options'->k));
            END IF;
        END LOOP;
        SELECT coalesce(jsonb_object_agg(fl.remote_name, jsonb_build_object(
                            'from', fl.authority, 'to', e->'fields'->fl.remote_name->>'authority')), '{}')
          INTO auth
          FROM sync.field fl
         WHERE fl.mirror = m.id AND e->'fields'->fl.remote_name ? 'authority'
           AND fl.authority <> e->'fields'->fl.remote_name->>'authority';
        IF applied <> '{}' OR auth <> '{}' THEN
            d := '{}';
            IF applied <> '{}' THEN d := d || jsonb_build_object('options', applied); END IF;
            IF auth <> '{}' THEN d := d || jsonb_build_object('authority', auth); END IF;
            BEGIN
                IF NOT dry_run THEN
                    UPDATE sync.field fl SET authority = auth->fl.remote_name->>'to'
                     WHERE fl.mirror = m.id AND auth ? fl.remote_name;
                    SELECT coalesce(jsonb_object_agg(fl.remote_name, fl.authority), '{}') INTO auth
                      FROM sync.field fl WHERE fl.mirror = m.id AND fl.authority <> 'both';
                    new_opts := CASE WHEN auth = '{}' THEN new_opts - 'authority'
                                     ELSE jsonb_set(new_opts, '{authority}', auth) END;
                END IF;
                PERFORM sync._check_mirror_options(new_opts);
                IF NOT dry_run THEN
                    UPDATE sync.mirror mm SET options = new_opts WHERE mm.id = m.id;
                    IF d ? 'authority' OR applied ? 'local_delete' THEN
                        PERFORM sync._install_triggers(m.id);
                    END IF;
                    PERFORM sync.wake();
                END IF;
            EXCEPTION WHEN others THEN
                GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
                PERFORM sync._config_reraise(format('mirror %s', e->>'local_table'), st, msg, det, hnt);
            END;
            RETURN QUERY SELECT 'alter mirror', e->>'local_table', done_status, d;
        END IF;

        d := '{}';
        IF e ? 'direction' AND m.direction <> e->>'direction' THEN
            d := d || jsonb_build_object('direction', jsonb_build_object('from', m.direction, 'to', e->>'direction'));
        END IF;
        IF e ? 'fields' THEN
            SELECT jsonb_agg(x ORDER BY x COLLATE "C") INTO list FROM jsonb_object_keys(e->'fields') x
             WHERE NOT EXISTS (SELECT 1 FROM sync.field fl WHERE fl.mirror = m.id AND fl.remote_name = x);
            IF list IS NOT NULL THEN
                d := d || jsonb_build_object('add_fields', list);
            END IF;
            SELECT jsonb_agg(fl.remote_name ORDER BY fl.remote_name COLLATE "C") INTO list FROM sync.field fl
             WHERE fl.mirror = m.id AND fl.local_column NOT IN (m.remote_id_column, m.stamp_column)
               AND NOT e->'fields' ? fl.remote_name;
            IF list IS NOT NULL THEN
                d := d || jsonb_build_object('drop_fields', list);
            END IF;
        END IF;
        IF later <> '{}' THEN
            d := d || jsonb_build_object('options', later);
        END IF;
        IF d <> '{}' THEN
            -- fields, direction and the other options: sync.alter_mirror
            -- (an added field's column takes the default name; a column
            -- name or authority the document gives it is applied by the
            -- next import)
            BEGIN
                IF NOT dry_run THEN
                    PERFORM sync.alter_mirror(m.local_table,
                        add_fields => (SELECT array_agg(x) FROM jsonb_array_elements_text(d->'add_fields') x),
                        drop_fields => (SELECT array_agg(x) FROM jsonb_array_elements_text(d->'drop_fields') x),
                        options => (SELECT jsonb_object_agg(o.key, o.value->'to')
                                      FROM jsonb_each(coalesce(d->'options', '{}')
                                                      || CASE WHEN d ? 'direction'
                                                              THEN jsonb_build_object('direction', d->'direction')
                                                              ELSE '{}' END) o));
                END IF;
            EXCEPTION WHEN others THEN
                GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
                PERFORM sync._config_reraise(format('mirror %s', e->>'local_table'), st, msg, det, hnt);
            END;
            RETURN QUERY SELECT 'alter mirror fields', e->>'local_table', done_status, d;
        END IF;
    END LOOP;

    -- what the document no longer lists: removed only when asked
    IF doc ? 'mirrors' THEN
        FOR m IN SELECT * FROM sync.mirror mm
                  WHERE NOT sync._config_table_name(mm.local_table) IN (SELECT x->>'local_table' FROM jsonb_array_elements(mirrors) x)
                  ORDER BY sync._config_table_name(mm.local_table) COLLATE "C" LOOP
            d := jsonb_build_object('connection', m.connection, 'remote_object', m.remote_object,
                                    'queued_writes', (SELECT count(*) FROM sync.outbox o WHERE o.mirror = m.id)
                                                     + (SELECT count(*) FROM sync.capture_log c WHERE c.mirror = m.id),
                                    'table', 'kept');
            IF NOT drop_missing THEN
                RETURN QUERY SELECT 'unmirror', sync._config_table_name(m.local_table), 'skipped',
                    d || jsonb_build_object('hint', 'Not in the document; pass drop_missing => true to unmirror it.');
                CONTINUE;
            END IF;
            RETURN QUERY SELECT 'unmirror', sync._config_table_name(m.local_table), done_status, d;
            IF NOT dry_run THEN
                PERFORM sync.unmirror(m.local_table);
            END IF;
        END LOOP;
    END IF;
    IF doc ? 'connections' THEN
        FOR c IN SELECT * FROM sync.connection cc
                  WHERE NOT cc.name IN (SELECT x->>'name' FROM jsonb_array_elements(doc->'connections') x)
                  ORDER BY cc.name COLLATE "C" LOOP
            d := jsonb_build_object('provider', c.provider);
            IF NOT drop_missing THEN
                RETURN QUERY SELECT 'drop connection', c.name, 'skipped',
                    d || jsonb_build_object('hint', 'Not in the document; pass drop_missing => true to drop it (with its secrets).');
            ELSIF NOT doc ? 'mirrors' AND EXISTS (SELECT 1 FROM sync.mirror mm WHERE mm.connection = c.name) THEN
                -- only mirrors the document does not manage ("mirrors" left out) remain
                RETURN QUERY SELECT 'drop connection', c.name, 'todo',
                    d || jsonb_build_object('hint', 'Mirrors the document does not manage use it: unmirror them first.');
            ELSE
                RETURN QUERY SELECT 'drop connection', c.name, done_status, d;
                IF NOT dry_run THEN
                    PERFORM sync.drop_connection(c.name);
                END IF;
            END IF;
        END LOOP;
    END IF;
END $$;
COMMENT ON FUNCTION sync.import_config(jsonb, boolean, boolean) IS
    'make the configuration match a document of sync.export_config(); dry run by default';

REVOKE EXECUTE ON FUNCTION
    sync._config_check_provider(text, text),
    sync._config_table_name(regclass),
    sync._config_mirror(sync.mirror),
    sync._config_reraise(text, text, text, text, text),
    sync._config_check_doc(jsonb),
    sync.export_config(),
    sync.import_config(jsonb, boolean, boolean)
FROM PUBLIC;
