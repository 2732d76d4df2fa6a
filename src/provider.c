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

/* ---------------------------------------------------------------------
 * helpers shared by the providers
 * --------------------------------------------------------------------- */

void
provider_bad_option(const char *provider, const char *key, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s connection option \"%s\": %s", provider, key, why)));
}

bool
provider_url_ok(const char *url)
{
	if (strncmp(url, "https://", 8) == 0)
		return true;
	/* plain http only for loopback (tests against the emulator) */
	return strncmp(url, "http://127.", 11) == 0 || strncmp(url, "http://localhost", 16) == 0 ||
		strncmp(url, "http://[::1]", 12) == 0;
}

void
provider_appendf_va(StringInfo buf, const char *fmt, va_list ap)
{
	for (;;)
	{
		va_list		copy;
		int			needed;

		va_copy(copy, ap);
		needed = appendStringInfoVA(buf, fmt, copy);
		va_end(copy);
		if (needed == 0)
			break;
		enlargeStringInfo(buf, needed);
	}
}

SJson *
provider_response_json(const HttpRequest *req)
{
	char	   *err;

	if (req->outcome != HTTP_DONE || req->response.len == 0)
		return NULL;
	return sjson_parse(req->response.data, req->response.len, &err);
}

/* The connection's access token as a bearer token (replacing a stale one). */
void
provider_sign_bearer(SyncConnection *conn, HttpRequest *req)
{
	ListCell   *lc;

	foreach(lc, req->headers)
	{
		HttpHeader *h = (HttpHeader *) lfirst(lc);

		if (pg_strcasecmp(h->name, "Authorization") == 0)
		{
			h->value = psprintf("Bearer %s", conn->access_token);
			return;
		}
	}
	http_add_header(req, "Authorization", psprintf("Bearer %s", conn->access_token));
}

/* A multi-select value "a;b" -> the array literal {"a","b"} ("" -> {}) */
char *
provider_list_array(const char *v)
{
	StringInfoData s;
	const char *p;

	if (*v == '\0')
		return pstrdup("{}");
	initStringInfo(&s);
	appendStringInfoString(&s, "{\"");
	for (p = v; *p; p++)
	{
		if (*p == ';')
			appendStringInfoString(&s, "\",\"");
		else
		{
			if (*p == '"' || *p == '\\')
				appendStringInfoChar(&s, '\\');
			appendStringInfoChar(&s, *p);
		}
	}
	appendStringInfoString(&s, "\"}");
	return s.data;
}
