-- ---------------------------------------------------------------------------
-- Secrets given as files (src/secret.c, docs/security.md): a secret option
-- X may be given as X_file, the absolute path of a file the server's OS
-- user can read; its content never appears in SQL text.  Setting or
-- changing such a path takes the privilege to read server files
-- (superuser or pg_read_server_files), checked here against the options
-- the connection had (old_options; '{}' for a new connection).
-- ---------------------------------------------------------------------------

CREATE FUNCTION sync._check_connection(name text, provider text, options jsonb, old_options jsonb)
RETURNS jsonb
    LANGUAGE C STRICT AS 'MODULE_PATHNAME', 'sync_check_connection';
REVOKE EXECUTE ON FUNCTION sync._check_connection(text, text, jsonb, jsonb) FROM PUBLIC;

-- sync.mirror's remote object and requested fields, checked before the
-- remote is asked: no nulls, no empty or repeated names, a sane number.
CREATE FUNCTION sync._check_mirror_fields(remote_object text, fields text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    repeated text[];
BEGIN
    IF remote_object = '' THEN
        RAISE EXCEPTION 'sync.mirror: remote_object must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF fields IS NULL THEN
        RETURN;
    END IF;
    IF cardinality(fields) = 0 THEN
        RAISE EXCEPTION 'sync.mirror: fields is empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the remote fields to mirror, or pass NULL for every mappable field.';
    END IF;
    IF array_ndims(fields) > 1 THEN
        RAISE EXCEPTION 'sync.mirror: fields must be a one-dimensional array of remote field names'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position(fields, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'sync.mirror: fields must not contain nulls'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF array_position(fields, '') IS NOT NULL THEN
        RAISE EXCEPTION 'sync.mirror: fields must not contain empty names'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(fields) > 10000 THEN
        RAISE EXCEPTION 'sync.mirror: % fields requested, at most 10000 can be mirrored', cardinality(fields)
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Omit fields to mirror every mappable field.';
    END IF;
    SELECT array_agg(f ORDER BY f) INTO repeated
      FROM (SELECT f FROM unnest(fields) f GROUP BY f HAVING count(*) > 1) d;
    IF repeated IS NOT NULL THEN
        RAISE EXCEPTION 'sync.mirror: field % requested more than once', array_to_string(repeated[1:10], ', ')
            USING ERRCODE = 'duplicate_column';
    END IF;
END $$;
REVOKE EXECUTE ON FUNCTION sync._check_mirror_fields(text, text[]) FROM PUBLIC;
