/*
 * sync.c — module entry point: _PG_init and sync.version().
 */
#include "postgres.h"

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

#include "adaptive.h"
#include "engine.h"
#include "http.h"
#include "secret.h"
#include "sjson.h"
#include "sync.h"
#include "worker.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(sync_version);

void
_PG_init(void)
{
	/*
	 * libcurl's global state must be set up once per process, before any
	 * thread could exist; the postmaster (preload) or the backend (on first
	 * use) does it here.
	 */
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("sync: could not initialize libcurl")));

	http_define_gucs();
	engine_define_gucs();
	adaptive_define_gucs();
	secret_define_gucs();
	worker_init();

	/* a misspelt sync.* setting is reported, not silently kept */
	MarkGUCPrefixReserved("sync");
}

/*
 * sync.version() returns the extension version and the versions of the
 * libraries actually linked at run time (not the headers compiled against).
 */
Datum
sync_version(PG_FUNCTION_ARGS)
{
	curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
	char	   *text;

	text = psprintf("{\"sync\": \"%s\", \"libcurl\": \"%s\", \"libcurl_ssl\": \"%s\", "
					"\"json-c\": \"%s\", \"openssl\": \"%s\", \"postgresql\": \"%s\"}",
					SYNC_VERSION, cv->version, cv->ssl_version ? cv->ssl_version : "none",
					sjson_library_version(), OpenSSL_version(OPENSSL_VERSION),
					PG_VERSION);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}
