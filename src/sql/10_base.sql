
CREATE FUNCTION sync.version() RETURNS jsonb
    LANGUAGE C STRICT STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'sync_version';
COMMENT ON FUNCTION sync.version() IS
    'extension version and the libcurl, json-c and OpenSSL versions linked at run time';
