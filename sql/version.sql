-- sync.version(): the extension version and the libraries linked at run time
SELECT jsonb_typeof(sync.version()) AS type;
SELECT key FROM jsonb_each(sync.version()) ORDER BY key;
-- the library's version is the installed extension's (both from sync.control)
SELECT sync.version()->>'sync' = extversion AS library_matches_extension FROM pg_extension WHERE extname = 'sync';
SELECT sync.version()->>'libcurl' ~ '^[0-9]+\.[0-9]+\.[0-9]+' AS libcurl_is_a_version,
       sync.version()->>'libcurl_ssl' ~ '^OpenSSL/3' AS curl_uses_openssl,
       sync.version()->>'json-c' ~ '^0\.[0-9]+' AS json_c_is_a_version,
       sync.version()->>'openssl' ~ '^OpenSSL 3\.' AS openssl_is_a_version;
-- the schema exists and the extension cannot be relocated
SELECT nspname FROM pg_namespace WHERE nspname = 'sync';
SELECT extrelocatable FROM pg_extension WHERE extname = 'sync';
