
-- HTTP diagnostics (src/http_sql.c).  They run exactly the code the engine
-- uses, transport policy included (https, or plain http to loopback only).
-- Not granted to PUBLIC: fetching arbitrary URLs from inside the database
-- server is a server-side request forgery tool.

CREATE FUNCTION sync.http_request(method text, url text, body text DEFAULT NULL,
                                  headers jsonb DEFAULT '{}', ca_file text DEFAULT NULL,
                                  timeout_ms int DEFAULT 0)
    RETURNS TABLE(outcome text, status int, headers jsonb, body text, error text,
                  elapsed_ms float8)
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'sync_http_request';
COMMENT ON FUNCTION sync.http_request(text, text, text, jsonb, text, int) IS
    'diagnostic: one HTTP request through the extension''s HTTP client; outcome is done, timeout, connect_failed, tls_failed, transport_failed, too_large or refused';
REVOKE EXECUTE ON FUNCTION sync.http_request(text, text, text, jsonb, text, int) FROM PUBLIC;

CREATE FUNCTION sync.http_request_many(urls text[], max_in_flight int DEFAULT 0,
                                       ca_file text DEFAULT NULL, stop_after_ms int DEFAULT 0)
    RETURNS TABLE(url text, outcome text, status int, elapsed_ms float8,
                  new_connections int)
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'sync_http_request_many';
COMMENT ON FUNCTION sync.http_request_many(text[], int, text, int) IS
    'diagnostic: GET every URL concurrently (at most max_in_flight at once; 0 = sync.http_max_in_flight); new_connections = 0 means a keep-alive connection was reused; stop_after_ms > 0 stops the run after that long through a should_stop callback (in flight: cancelled, not started: pending)';
REVOKE EXECUTE ON FUNCTION sync.http_request_many(text[], int, text, int) FROM PUBLIC;
