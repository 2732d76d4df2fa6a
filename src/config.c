/*
 * config.c — helpers of configuration as code (sync.export_config,
 * sync.import_config in src/sql/72_config.sql).
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "provider.h"

PG_FUNCTION_INFO_V1(sync_config_check_provider);

/*
 * sync._config_check_provider(connection text, provider text): ERROR unless
 * provider names one this build knows, naming the connection of the
 * document that asks for it.  A configuration document is checked before
 * anything is changed, also where no options could be checked (a
 * connection whose secrets the document does not carry).
 */
Datum
sync_config_check_provider(PG_FUNCTION_ARGS)
{
	char	   *conn = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *provider = text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (provider_lookup(provider, true) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("connection \"%s\" of the configuration document: unknown provider \"%s\"",
						conn, provider),
				 errhint("Known providers: %s.", provider_names())));
	PG_RETURN_VOID();
}
