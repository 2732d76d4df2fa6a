/*
 * provider.c — the registry of providers.
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "provider.h"

static const SyncProvider *const providers[] = {
	&salesforce_provider,
	&hubspot_provider,
};

const char *
provider_names(void)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < lengthof(providers); i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", providers[i]->name);
	return buf.data;
}

const SyncProvider *
provider_lookup(const char *name, bool missing_ok)
{
	int			i;

	for (i = 0; i < lengthof(providers); i++)
		if (strcmp(providers[i]->name, name) == 0)
			return providers[i];
	if (!missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown provider \"%s\"", name),
				 errhint("Known providers: %s.", provider_names())));
	return NULL;
}
