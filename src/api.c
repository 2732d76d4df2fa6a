/*
 * api.c — SQL-callable functions that talk to a provider:
 * sync._check_connection, sync.test_connection, sync.remote_fields,
 * sync.snake_case.
 */
#include "postgres.h"

#include <ctype.h>

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "conn.h"
#include "provider.h"
#include "secret.h"

PG_FUNCTION_INFO_V1(sync_check_connection);
PG_FUNCTION_INFO_V1(sync_test_connection);
PG_FUNCTION_INFO_V1(sync_remote_fields);
PG_FUNCTION_INFO_V1(sync_snake_case);

static SJson *
jsonb_to_sjson(Jsonb *jb, const char *what)
{
	char	   *text;
	char	   *err;
	SJson	   *j;

	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", what)));
	text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	j = sjson_parse(text, strlen(text), &err);

	if (j == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s could not be read: %s", what, err),
				 errhint("Nesting deeper than 32 levels is not supported.")));
	if (sjson_type(j) != SJSON_OBJECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", what)));
	return j;
}

static Datum
sjson_to_jsonb(SJson *j)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(sjson_serialize(j)));
}

/* Copy src into options/secrets by the provider's notion of a secret. */
static void
split_secrets(const SyncProvider *p, SJson *src, const char *prefix,
			  SJson *pub, SJson *sec, bool *any_secret)
{
	const char **keys;
	int			n = sjson_object_keys(src, &keys);
	int			i;

	for (i = 0; i < n; i++)
	{
		SJson	   *v = sjson_get(src, keys[i]);
		char	   *path = prefix ? psprintf("%s.%s", prefix, keys[i]) : pstrdup(keys[i]);

		if (sjson_type(v) == SJSON_OBJECT)
		{
			bool		sub_secret = false;
			SJson	   *pub_child = sjson_add_object(pub, keys[i]);
			SJson	   *sec_child = sjson_add_object(sec, keys[i]);

			split_secrets(p, v, path, pub_child, sec_child, &sub_secret);
			*any_secret |= sub_secret;
		}
		else if (p->is_secret(path))
		{
			sjson_add_copy(sec, keys[i], v);
			*any_secret = true;
		}
		else
			sjson_add_copy(pub, keys[i], v);
	}
}

/*
 * sync._check_connection(provider, options)                      (0.1)
 * sync._check_connection(name, provider, options, old_options)   (0.2)
 *
 * Validate options with the provider and split the secrets from the rest:
 * {"options": ..., "secrets": ...}.  Secrets given as files (X_file) stay
 * in the options (their paths are not secret); the files are read here so
 * that the provider checks what the connection will use.  Setting or
 * changing a file path needs the privilege to read server files: with the
 * 0.1 signature (no old options) every path counts as set.
 */
Datum
sync_check_connection(PG_FUNCTION_ARGS)
{
	bool		v2 = PG_NARGS() == 4;
	char	   *name = v2 ? text_to_cstring(PG_GETARG_TEXT_PP(0)) : NULL;
	char	   *provider = text_to_cstring(PG_GETARG_TEXT_PP(v2 ? 1 : 0));
	SJson	   *options = jsonb_to_sjson(PG_GETARG_JSONB_P(v2 ? 2 : 1), "connection options");
	SJson	   *old = v2 ? jsonb_to_sjson(PG_GETARG_JSONB_P(3), "old connection options") : NULL;
	const SyncProvider *p = provider_lookup(provider, false);
	SJson	   *out = sjson_new_object();
	SJson	   *pub = sjson_add_object(out, "options");
	SJson	   *sec = sjson_add_object(out, "secrets");
	bool		any = false;

	secret_check_files(p, options, old, name);
	p->check_options(secret_resolve_files(p, options, name, NULL));
	split_secrets(p, options, NULL, pub, sec, &any);
	PG_RETURN_DATUM(sjson_to_jsonb(out));
}

Datum
sync_test_connection(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	SyncConnection *conn = conn_get(name);
	SJson	   *facts = sjson_new_object();
	MemoryContext old;

	/* always authenticate afresh: this is what the user is testing */
	conn_invalidate_token(conn);
	old = MemoryContextSwitchTo(conn->cxt);
	conn->provider->authenticate(conn);
	MemoryContextSwitchTo(old);

	sjson_add_string(facts, "connection", conn->name);
	sjson_add_string(facts, "provider", conn->provider->name);
	conn->provider->test(conn, facts);
	if (conn->api_usage)
		sjson_add_string(facts, "api_usage", conn->api_usage);
	PG_RETURN_DATUM(sjson_to_jsonb(facts));
}

/*
 * FirstName -> first_name, AccountId -> account_id, HTMLBody -> html_body;
 * characters that need quoting in an identifier become "_"
 * (associations.companies -> associations_companies).
 */
static char *
snake_case(const char *s)
{
	StringInfoData buf;
	int			i;
	int			len = strlen(s);

	initStringInfo(&buf);
	for (i = 0; i < len; i++)
	{
		unsigned char c = s[i];

		if (isupper(c) && i > 0)
		{
			unsigned char prev = s[i - 1];
			bool		next_lower = i + 1 < len && islower((unsigned char) s[i + 1]);

			if (islower(prev) || isdigit(prev) || (isupper(prev) && next_lower))
				appendStringInfoChar(&buf, '_');
		}
		appendStringInfoChar(&buf, (isalnum(c) || c == '_' || c >= 0x80) ? tolower(c) : '_');
	}
	return buf.data;
}

Datum
sync_snake_case(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(snake_case(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}

Datum
sync_remote_fields(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *object = text_to_cstring(PG_GETARG_TEXT_PP(1));
	SyncConnection *conn;
	List	   *fields;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	conn = conn_get(name);
	fields = conn->provider->describe(conn, object);
	foreach(lc, fields)
	{
		SyncField  *f = (SyncField *) lfirst(lc);
		Datum		v[13];
		bool		n[13] = {0};

		v[0] = CStringGetTextDatum(f->remote_name);
		v[1] = CStringGetTextDatum(f->label ? f->label : f->remote_name);
		v[2] = CStringGetTextDatum(f->remote_type);
		v[3] = CStringGetTextDatum(snake_case(f->remote_name));
		if (f->local_type)
			v[4] = CStringGetTextDatum(f->local_type);
		else
			n[4] = true;
		v[5] = CStringGetTextDatum(f->role == FIELD_ID ? "id" : f->role == FIELD_STAMP ? "stamp" : "data");
		v[6] = BoolGetDatum(f->createable);
		v[7] = BoolGetDatum(f->updateable);
		v[8] = BoolGetDatum(f->nillable);
		v[9] = BoolGetDatum(f->unique);
		v[10] = BoolGetDatum(f->external_id);
		if (f->reference_to)
			v[11] = CStringGetTextDatum(f->reference_to);
		else
			n[11] = true;
		v[12] = Int32GetDatum(f->length);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(sync_check_mirror);

/* sync._check_mirror(connection, remote_object, options): provider checks */
Datum
sync_check_mirror(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	SyncConnection *conn = conn_get(name);
	SyncMirror	m = {0};

	m.remote_object = text_to_cstring(PG_GETARG_TEXT_PP(1));
	m.options = jsonb_to_sjson(PG_GETARG_JSONB_P(2), "mirror options");
	m.qualified_table = m.remote_object;
	if (conn->provider->check_mirror)
		conn->provider->check_mirror(conn, &m);
	PG_RETURN_VOID();
}
