/*
 * salesforce.c — the Salesforce REST API as a sync provider.
 *
 * Auth: OAuth 2.0 client credentials, refresh token, or JWT bearer (RS256,
 * signed by jwt.c); API calls go to the token response's instance_url.
 * Schema: /sobjects/{Object}/describe.  Pull: SOQL ordered by
 * SystemModstamp, Id — /query for the backfill, /queryAll (soft deletes as
 * IsDeleted = true) for increments, with an overlap window; getDeleted as
 * the safety net, and a full ID reconciliation when its log was purged.
 * Push: sObject Collections, 200 records a request, allOrNone false;
 * creates with an idempotency field go through collection upsert by
 * external ID.  docs/salesforce.md documents the type mapping and choices.
 */
#include "postgres.h"

#include <time.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "conn.h"
#include "jwt.h"
#include "provider.h"
#include "salesforce_cdc.h"
#include "sync.h"

#define bad_option(key, why) provider_bad_option("Salesforce", key, why)

#define SF_BATCH_MAX 200
#define SF_FETCH_MAX 2000		/* SObject Collections retrieve */
#define SF_DEFAULT_VERSION "v59.0"
#define SF_OVERLAP_SECONDS 60

static const char *const sf_option_keys[] = {
	"login_url", "auth", "api_version", "ca_file", "requests_per_day",
	"max_in_flight", "requests_per_second", NULL
};

/* ---------------------------------------------------------------------
 * options
 * --------------------------------------------------------------------- */

/* "v59.0" or later: v, two or three digits, a dot, one digit; nothing else goes into URLs */
static bool
valid_api_version(const char *v)
{
	int			n = 0;

	if (v[0] != 'v')
		return false;
	while (isdigit((unsigned char) v[1 + n]))
		n++;
	if (n < 2 || n > 3 || v[1 + n] != '.' || !isdigit((unsigned char) v[2 + n]) || v[3 + n] != '\0')
		return false;
	return atoi(v + 1) >= 59;
}

static void
sf_check_options(SJson *o)
{
	const char **keys;
	int			n = sjson_object_keys(o, &keys);
	int			i;
	SJson	   *auth = sjson_get(o, "auth");
	const char *type;
	const char *login = sjson_get_string(o, "login_url");
	const char *ver = sjson_get_string(o, "api_version");

	for (i = 0; i < n; i++)
	{
		int			k;
		bool		known = false;

		for (k = 0; sf_option_keys[k]; k++)
			known |= strcmp(keys[i], sf_option_keys[k]) == 0;
		if (!known)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown Salesforce connection option \"%s\"", keys[i]),
					 errhint("Known options: login_url, auth, api_version, ca_file, requests_per_day, max_in_flight.")));
	}
	if (login == NULL)
		bad_option("login_url", "required, e.g. \"https://login.salesforce.com\" or your My Domain URL");
	if (!provider_url_ok(login))
		bad_option("login_url", "must be an https:// URL");
	if (ver != NULL && !valid_api_version(ver))
		bad_option("api_version", "must look like \"v59.0\" (v59.0 or later)");
	if (sjson_type(auth) != SJSON_OBJECT)
		bad_option("auth", "required: {\"type\": \"client_credentials\" | \"refresh_token\" | \"jwt_bearer\", ...}");
	type = sjson_get_string(auth, "type");
	if (type == NULL)
		bad_option("auth.type", "required: client_credentials, refresh_token or jwt_bearer");
	if (sjson_get_string(auth, "client_id") == NULL)
		bad_option("auth.client_id", "required (the connected app's consumer key)");
	if (strcmp(type, "client_credentials") == 0)
	{
		if (sjson_get_string(auth, "client_secret") == NULL)
			bad_option("auth.client_secret", "required for client_credentials");
	}
	else if (strcmp(type, "refresh_token") == 0)
	{
		if (sjson_get_string(auth, "refresh_token") == NULL)
			bad_option("auth.refresh_token", "required for refresh_token");
	}
	else if (strcmp(type, "jwt_bearer") == 0)
	{
		const char *key = sjson_get_string(auth, "private_key");

		if (sjson_get_string(auth, "username") == NULL)
			bad_option("auth.username", "required for jwt_bearer");
		if (key == NULL || strstr(key, "PRIVATE KEY-----") == NULL)
			bad_option("auth.private_key", "required for jwt_bearer: the PEM private key");
		jwt_check_key("RS256", key, "invalid Salesforce connection option \"auth.private_key\"");
	}
	else
		bad_option("auth.type", "must be client_credentials, refresh_token or jwt_bearer");
	if (sjson_has_key(o, "max_in_flight") &&
		(sjson_int(sjson_get(o, "max_in_flight"), 0) < 1 || sjson_int(sjson_get(o, "max_in_flight"), 0) > 64))
		bad_option("max_in_flight", "must be an integer from 1 to 64");
	if (sjson_has_key(o, "requests_per_day") && sjson_int(sjson_get(o, "requests_per_day"), 0) < 1)
		bad_option("requests_per_day", "must be a positive integer");
}

static bool
sf_is_secret(const char *path)
{
	return strcmp(path, "auth.client_secret") == 0 ||
		strcmp(path, "auth.refresh_token") == 0 ||
		strcmp(path, "auth.private_key") == 0;
}

/* ---------------------------------------------------------------------
 * HTTP helpers
 * --------------------------------------------------------------------- */

static const char *
api_version(SyncConnection *conn)
{
	const char *v = sjson_get_string(conn->options, "api_version");

	return v ? v : SF_DEFAULT_VERSION;
}

static char *
data_url(SyncConnection *conn, const char *fmt,...) pg_attribute_printf(2, 3);

static char *
data_url(SyncConnection *conn, const char *fmt,...)
{
	StringInfoData buf;
	va_list		ap;

	conn_ensure_auth(conn);
	initStringInfo(&buf);
	appendStringInfo(&buf, "%s/services/data/%s/", conn->api_base, api_version(conn));
	va_start(ap, fmt);
	provider_appendf_va(&buf, fmt, ap);
	va_end(ap);
	return buf.data;
}

/* Salesforce's error body is an array of {message, errorCode, fields}. */
static char *
sf_error_text(const HttpRequest *req, char **code)
{
	SJson	   *j = provider_response_json(req);
	SJson	   *e = sjson_type(j) == SJSON_ARRAY ? sjson_array_get(j, 0) : j;
	const char *msg = sjson_get_string(e, "message");
	const char *c = sjson_get_string(e, "errorCode");

	if (c == NULL)
		c = sjson_get_string(e, "error");
	if (msg == NULL)
		msg = sjson_get_string(e, "error_description");
	if (code)
		*code = c ? pstrdup(c) : NULL;
	if (msg == NULL && req->outcome == HTTP_DONE)
		return provider_body_excerpt(req, 300);
	return msg ? (c ? psprintf("%s: %s", c, msg) : pstrdup(msg)) : NULL;
}

/* A Salesforce record ID: 15 (case-sensitive) or 18 (case-safe) alphanumerics. */
static bool
sf_valid_remote_id(const char *id)
{
	size_t		len;
	size_t		i;

	if (id == NULL)
		return false;
	len = strlen(id);
	if (len != 15 && len != 18)
		return false;
	for (i = 0; i < len; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') ||
			  (id[i] >= 'A' && id[i] <= 'Z')))
			return false;
	return true;
}

#define sf_bad_response(conn, what, req, why) \
	provider_bad_response(conn, "Salesforce", what, req, why)

static void
note_limits(SyncConnection *conn, const HttpRequest *req)
{
	const char *info = http_response_header(req, "sforce-limit-info");

	if (info)
		conn_note_usage(conn, info);
}

static HttpRequest *
sf_get(SyncConnection *conn, const char *url)
{
	HttpRequest *req = http_request_new("GET", url);

	http_add_header(req, "Accept", "application/json");
	conn_send_retrying(conn, req, 0);
	note_limits(conn, req);
	return req;
}

/* ---------------------------------------------------------------------
 * authentication
 * --------------------------------------------------------------------- */

/* An RS256-signed JWT for the bearer flow (jwt.c signs it). */
static char *
sf_jwt(SyncConnection *conn, SJson *auth)
{
	const char *login = sjson_get_string(conn->options, "login_url");
	SJson	   *header = sjson_new_object();
	SJson	   *claims = sjson_new_object();

	sjson_add_string(header, "alg", "RS256");
	sjson_add_string(header, "typ", "JWT");
	sjson_add_string(claims, "iss", sjson_get_string(auth, "client_id"));
	sjson_add_string(claims, "sub", sjson_get_string(auth, "username"));
	sjson_add_string(claims, "aud", sjson_get_string(auth, "audience") ?
					 sjson_get_string(auth, "audience") : login);
	sjson_add_int(claims, "exp", (int64) time(NULL) + 180);
	return jwt_sign(header, claims, sjson_get_string(auth, "private_key"),
					psprintf("connection \"%s\": auth.private_key", conn->name));
}

static void
sf_authenticate(SyncConnection *conn)
{
	SJson	   *auth = sjson_get(conn->options, "auth");
	const char *type = sjson_get_string(auth, "type");
	const char *login = sjson_get_string(conn->options, "login_url");
	HttpRequest *req;
	StringInfoData form;
	SJson	   *resp;
	const char *token,
			   *instance;

	initStringInfo(&form);
	if (strcmp(type, "client_credentials") == 0)
		appendStringInfo(&form, "grant_type=client_credentials&client_id=%s&client_secret=%s",
						 http_url_encode(sjson_get_string(auth, "client_id")),
						 http_url_encode(sjson_get_string(auth, "client_secret")));
	else if (strcmp(type, "refresh_token") == 0)
	{
		appendStringInfo(&form, "grant_type=refresh_token&client_id=%s&refresh_token=%s",
						 http_url_encode(sjson_get_string(auth, "client_id")),
						 http_url_encode(sjson_get_string(auth, "refresh_token")));
		if (sjson_get_string(auth, "client_secret"))
			appendStringInfo(&form, "&client_secret=%s",
							 http_url_encode(sjson_get_string(auth, "client_secret")));
	}
	else
		appendStringInfo(&form, "grant_type=%s&assertion=%s",
						 http_url_encode("urn:ietf:params:oauth:grant-type:jwt-bearer"),
						 http_url_encode(sf_jwt(conn, auth)));

	req = http_request_new("POST", psprintf("%s/services/oauth2/token", login));
	http_set_body(req, form.data, form.len, "application/x-www-form-urlencoded");
	http_add_header(req, "Accept", "application/json");
	req->body_is_secret = true;
	if (conn->ca_file)
		req->ca_file = conn->ca_file;
	http_run_one(req);

	resp = provider_response_json(req);
	if (req->outcome != HTTP_DONE || req->status != 200)
	{
		const char *desc = sjson_get_string(resp, "error_description");
		const char *err = sjson_get_string(resp, "error");

		if (req->outcome != HTTP_DONE)
			conn_error_from_response(conn, "Salesforce authentication", req, NULL);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("connection \"%s\": Salesforce refused the %s grant: %s",
						conn->name, type, desc ? desc : (err ? err : "no reason given")),
				 err ? errdetail("OAuth error \"%s\", HTTP %ld from %s.", err, req->status,
								 http_redact_url(login)) : 0,
				 errhint("Check the connection's auth options with sync.alter_connection().")));
	}
	token = sjson_get_string(resp, "access_token");
	instance = sjson_get_string(resp, "instance_url");
	if (token == NULL || instance == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("connection \"%s\": Salesforce token response lacks access_token or instance_url",
						conn->name)));
	if (!provider_url_ok(instance))
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("connection \"%s\": Salesforce returned a non-https instance_url", conn->name)));
	conn->access_token = MemoryContextStrdup(conn->cxt, token);
	conn->api_base = MemoryContextStrdup(conn->cxt, instance);
	conn->token_expires = 0;	/* opaque tokens: we learn of expiry by a 401 */
	if (conn->limit.rate_max == 0)
	{
		/* a daily budget becomes a steady rate, with a burst of one minute */
		int64		per_day = sjson_int(sjson_get(conn->options, "requests_per_day"), 0);

		if (per_day > 0)
			conn_rate_init(&conn->limit, per_day / 86400.0, per_day / 1440.0);
	}
}

static void
sf_test(SyncConnection *conn, SJson *facts)
{
	HttpRequest *req = sf_get(conn, data_url(conn, "sobjects/"));
	SJson	   *j = provider_response_json(req);

	if (req->outcome != HTTP_DONE || req->status != 200)
		conn_error_from_response(conn, "listing Salesforce objects", req, sf_error_text(req, NULL));
	if (sjson_type(sjson_get(j, "sobjects")) != SJSON_ARRAY)
		sf_bad_response(conn, "listing Salesforce objects", req, "no \"sobjects\" array");
	sjson_add_string(facts, "instance_url", conn->api_base);
	sjson_add_string(facts, "api_version", api_version(conn));
	sjson_add_int(facts, "objects", sjson_array_length(sjson_get(j, "sobjects")));
	sjson_add_int(facts, "max_batch_size", sjson_int(sjson_get(j, "maxBatchSize"), SF_BATCH_MAX));
}

/* ---------------------------------------------------------------------
 * schema
 * --------------------------------------------------------------------- */

static const char *
local_type_for(const char *t)
{
	static const char *const map[][2] = {
		{"id", "text"}, {"reference", "text"}, {"string", "text"}, {"picklist", "text"},
		{"email", "text"}, {"phone", "text"}, {"url", "text"}, {"textarea", "text"},
		{"combobox", "text"}, {"encryptedstring", "text"}, {"anyType", "text"},
		{"boolean", "boolean"}, {"int", "integer"}, {"long", "bigint"},
		{"double", "numeric"}, {"currency", "numeric"}, {"percent", "numeric"},
		{"date", "date"}, {"datetime", "timestamptz"}, {"time", "time"},
		{"multipicklist", "text[]"},
	};
	int			i;

	for (i = 0; i < lengthof(map); i++)
		if (strcmp(map[i][0], t) == 0)
			return map[i][1];
	return NULL;				/* address, location, base64, complexvalue */
}

static List *
sf_describe(SyncConnection *conn, const char *object)
{
	HttpRequest *req = sf_get(conn, data_url(conn, "sobjects/%s/describe", http_url_encode(object)));
	SJson	   *j = provider_response_json(req);
	SJson	   *fields;
	List	   *out = NIL;
	int			i;

	if (req->outcome == HTTP_DONE && req->status == 404)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("Salesforce object \"%s\" does not exist (connection \"%s\")", object, conn->name),
				 errdetail("Salesforce said: %s", sf_error_text(req, NULL)),
				 errhint("Object names are case-sensitive API names, e.g. Account, Contact, My_Object__c.")));
	if (req->outcome != HTTP_DONE || req->status != 200)
		conn_error_from_response(conn, psprintf("describing %s", object), req, sf_error_text(req, NULL));

	fields = sjson_get(j, "fields");
	if (sjson_type(fields) != SJSON_ARRAY)
		sf_bad_response(conn, psprintf("describing %s", object), req, "no \"fields\" array");
	for (i = 0; i < sjson_array_length(fields); i++)
	{
		SJson	   *f = sjson_array_get(fields, i);
		SyncField  *sf = palloc0(sizeof(SyncField));
		const char *type = sjson_get_string(f, "type");
		SJson	   *refs = sjson_get(f, "referenceTo");

		if (sjson_get_string(f, "name") == NULL || sjson_get_string(f, "name")[0] == '\0')
			sf_bad_response(conn, psprintf("describing %s", object), req,
							psprintf("field %d has no name", i + 1));
		sf->remote_name = pstrdup(sjson_get_string(f, "name"));
		if (strcmp(sf->remote_name, "IsDeleted") == 0)
			continue;			/* deletes are applied, not mirrored as a flag */
		sf->label = sjson_get_string(f, "label") ? pstrdup(sjson_get_string(f, "label")) : NULL;
		sf->remote_type = pstrdup(type ? type : "unknown");
		sf->local_type = type ? (char *) local_type_for(type) : NULL;
		sf->createable = sjson_bool(sjson_get(f, "createable"), false);
		sf->updateable = sjson_bool(sjson_get(f, "updateable"), false);
		sf->nillable = sjson_bool(sjson_get(f, "nillable"), true);
		sf->unique = sjson_bool(sjson_get(f, "unique"), false);
		sf->external_id = sjson_bool(sjson_get(f, "externalId"), false);
		sf->length = (int) sjson_int(sjson_get(f, "length"), 0);
		if (sjson_array_length(refs) > 0 && sjson_string(sjson_array_get(refs, 0)))
			sf->reference_to = pstrdup(sjson_string(sjson_array_get(refs, 0)));
		if (strcmp(sf->remote_name, "Id") == 0)
			sf->role = FIELD_ID;
		else if (strcmp(sf->remote_name, "SystemModstamp") == 0)
			sf->role = FIELD_STAMP;
		out = lappend(out, sf);
	}
	return out;
}

/* ---------------------------------------------------------------------
 * pull
 * --------------------------------------------------------------------- */

/* A Salesforce stamp (…+0000) minus `back` seconds, as a SOQL literal. */
static char *
soql_datetime(const char *stamp, int back)
{
	TimestampTz ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
															 CStringGetDatum(stamp),
															 ObjectIdGetDatum(InvalidOid),
															 Int32GetDatum(-1)));
	pg_time_t	t = timestamptz_to_time_t(ts) - back;
	char		buf[32];

	pg_strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", pg_gmtime(&t));
	return pstrdup(buf);
}

/*
 * Objects Salesforce merges (merge(), the Merge buttons): their records
 * have MasterRecordId, set on the deleted losers to the winner.
 */
static bool
sf_mergeable(const char *object)
{
	static const char *const objects[] = {"Account", "Contact", "Lead", "Case"};
	int			i;

	for (i = 0; i < lengthof(objects); i++)
		if (pg_strcasecmp(object, objects[i]) == 0)
			return true;
	return false;
}

static bool
mapped(SyncMirror *m, const char *field)
{
	int			i;

	for (i = 0; i < m->nfields; i++)
		if (strcmp(m->fields[i].remote_name, field) == 0)
			return true;
	return false;
}

/*
 * The SELECT list: the mapped fields, and for increments (queryAll)
 * IsDeleted and, on objects Salesforce merges, MasterRecordId (a deleted
 * record with it set lost a merge to that record).
 */
static char *
field_list(SyncMirror *m, bool with_deleted)
{
	StringInfoData s;
	int			i;

	initStringInfo(&s);
	for (i = 0; i < m->nfields; i++)
		appendStringInfo(&s, "%s%s", i ? ", " : "", m->fields[i].remote_name);
	if (with_deleted)
		appendStringInfoString(&s, ", IsDeleted");
	if (with_deleted && sf_mergeable(m->remote_object) && !mapped(m, "MasterRecordId"))
		appendStringInfoString(&s, ", MasterRecordId");
	return s.data;
}

static char *
soql(SyncMirror *m, const char *since, bool with_deleted)
{
	const char *filter = sjson_get_string(m->options, "filter");
	StringInfoData q;

	initStringInfo(&q);
	appendStringInfo(&q, "SELECT %s FROM %s", field_list(m, with_deleted), m->remote_object);
	if (since || filter)
		appendStringInfoString(&q, " WHERE ");
	if (since)
		appendStringInfo(&q, "SystemModstamp >= %s", since);
	if (since && filter)
		appendStringInfoString(&q, " AND ");
	if (filter)
		appendStringInfo(&q, "(%s)", filter);
	appendStringInfoString(&q, " ORDER BY SystemModstamp, Id");
	return q.data;
}

/*
 * One record of a query or retrieve answer -> *rec.  A record without a
 * well-formed Id or with an unreadable SystemModstamp is the remote's
 * error: the whole response is refused (nothing applied, the cursor stays),
 * never a row keyed by garbage or a cursor that fails every later pull.
 */
static void
record_from_json(SyncConnection *conn, SyncMirror *m, const HttpRequest *req, const char *what,
				 SJson *r, SyncRecord *rec)
{
	const char *id = sjson_get_string(r, "Id");
	const char *stamp = sjson_get_string(r, "SystemModstamp");
	int			k;

	if (sjson_type(r) != SJSON_OBJECT)
		sf_bad_response(conn, what, req, "a record is not a JSON object");
	if (!sf_valid_remote_id(id))
		sf_bad_response(conn, what, req,
						psprintf("a record's Id %s is not a Salesforce ID", provider_quote_value(id)));
	if (sjson_has_key(r, "SystemModstamp") && sjson_type(sjson_get(r, "SystemModstamp")) != SJSON_NULL &&
		!provider_valid_stamp(stamp))
		sf_bad_response(conn, what, req,
						psprintf("record %s has an unreadable SystemModstamp", id));
	rec->remote_id = pstrdup(id);
	rec->stamp = stamp ? pstrdup(stamp) : NULL;
	rec->deleted = sjson_bool(sjson_get(r, "IsDeleted"), false);
	rec->values = palloc0(sizeof(char *) * Max(1, m->nfields));
	for (k = 0; k < m->nfields; k++)
	{
		SJson	   *v = sjson_get(r, m->fields[k].remote_name);

		if (sjson_type(v) == SJSON_NULL)
			continue;
		if (sjson_repaired(v) && rec->invalid == NULL)
			rec->invalid = provider_broken_value(m->fields[k].remote_name);
		if (strcmp(m->fields[k].local_type, "text[]") == 0 && sjson_string(v))
			rec->values[k] = provider_list_array(sjson_string(v));
		else
			rec->values[k] = sjson_scalar_text(v);	/* as text: the table judges it */
	}
}

static void
records_to_page(SyncConnection *conn, SyncMirror *m, const HttpRequest *req, const char *what,
				SJson *records, SyncPage *page, char **max_stamp)
{
	int			n = sjson_array_length(records);
	int			i;

	if (sjson_type(records) != SJSON_ARRAY)
		sf_bad_response(conn, what, req, "no \"records\" array");
	page->records = palloc0(sizeof(SyncRecord) * Max(1, n));
	page->nrecords = n;
	page->merged_ids = palloc(sizeof(char *) * Max(1, n));
	page->merged_into = palloc(sizeof(char *) * Max(1, n));
	for (i = 0; i < n; i++)
	{
		SyncRecord *rec = &page->records[i];
		const char *master;

		record_from_json(conn, m, req, what, sjson_array_get(records, i), rec);
		if (rec->stamp && (*max_stamp == NULL || strcmp(rec->stamp, *max_stamp) > 0))
			*max_stamp = rec->stamp;

		/* a loser of a merge: deleted, MasterRecordId = the winner */
		master = sjson_get_string(sjson_array_get(records, i), "MasterRecordId");
		if (rec->deleted && master != NULL)
		{
			if (!sf_valid_remote_id(master))
				sf_bad_response(conn, what, req,
								psprintf("record %s's MasterRecordId %s is not a Salesforce ID",
										 rec->remote_id, provider_quote_value(master)));
			page->merged_ids[page->nmerged] = rec->remote_id;
			page->merged_into[page->nmerged++] = pstrdup(master);
		}
	}
}

/* The n-th ID of a delete feed or an ID listing; the response is refused if it is not an ID. */
static char *
listed_id(SyncConnection *conn, const HttpRequest *req, const char *what, SJson *arr, int i,
		  const char *key)
{
	const char *id = sjson_get_string(sjson_array_get(arr, i), key);

	if (!sf_valid_remote_id(id))
		sf_bad_response(conn, what, req,
						psprintf("entry %d's %s %s is not a Salesforce ID", i + 1, key, provider_quote_value(id)));
	return pstrdup(id);
}

/* getDeleted since `since`; true if the delete log no longer covers it. */
static bool
sf_deleted_since(SyncConnection *conn, SyncMirror *m, const char *since, SyncPage *page)
{
	pg_time_t	now = time(NULL);
	char		end[32];
	HttpRequest *req;
	SJson	   *j,
			   *recs;
	const char *earliest;
	int			i;

	pg_strftime(end, sizeof(end), "%Y-%m-%dT%H:%M:%SZ", pg_gmtime(&now));
	req = sf_get(conn, data_url(conn, "sobjects/%s/deleted/?start=%s&end=%s",
								http_url_encode(m->remote_object), http_url_encode(since),
								http_url_encode(end)));
	j = provider_response_json(req);
	if (req->outcome == HTTP_DONE && req->status == 400)
	{
		char	   *code = NULL;

		(void) sf_error_text(req, &code);
		if (code && strcmp(code, "INVALID_REPLICATION_DATE") == 0)
			return true;		/* older than the 15-day window */
	}
	if (req->outcome != HTTP_DONE || req->status != 200)
		conn_error_from_response(conn, psprintf("reading deleted %s records", m->remote_object),
								 req, sf_error_text(req, NULL));
	earliest = sjson_get_string(j, "earliestDateAvailable");
	recs = sjson_get(j, "deletedRecords");
	if (sjson_type(recs) != SJSON_ARRAY)
		sf_bad_response(conn, psprintf("reading deleted %s records", m->remote_object), req,
						"no \"deletedRecords\" array");
	if (earliest && !provider_valid_stamp(earliest))
		sf_bad_response(conn, psprintf("reading deleted %s records", m->remote_object), req,
						"unreadable earliestDateAvailable");
	if (earliest && strncmp(soql_datetime(earliest, 0), since, 19) > 0)
		return true;			/* purged early: part of our window is gone */
	page->ndeleted_ids = sjson_array_length(recs);
	page->deleted_ids = palloc(sizeof(char *) * Max(1, page->ndeleted_ids));
	for (i = 0; i < page->ndeleted_ids; i++)
		page->deleted_ids[i] = listed_id(conn, req, psprintf("reading deleted %s records", m->remote_object),
										 recs, i, "id");
	return false;
}

/* Every live ID (for reconciliation after the delete log was purged). */
static void
sf_all_ids(SyncConnection *conn, SyncMirror *m, SyncPage *page)
{
	const char *filter = sjson_get_string(m->options, "filter");
	char	   *q = psprintf("SELECT Id FROM %s%s%s%s", m->remote_object,
							 filter ? " WHERE (" : "", filter ? filter : "", filter ? ")" : "");
	char	   *url = data_url(conn, "query?q=%s", http_url_encode(q));
	int			cap = 1024;

	page->deleted_ids = palloc(sizeof(char *) * cap);
	page->ndeleted_ids = 0;
	page->reconcile = true;
	while (url)
	{
		HttpRequest *req = sf_get(conn, url);
		SJson	   *j = provider_response_json(req);
		SJson	   *recs = sjson_get(j, "records");
		const char *next = sjson_get_string(j, "nextRecordsUrl");
		int			i;

		if (req->outcome != HTTP_DONE || req->status != 200)
			conn_error_from_response(conn, psprintf("listing %s IDs", m->remote_object),
									 req, sf_error_text(req, NULL));
		if (sjson_type(recs) != SJSON_ARRAY)
			sf_bad_response(conn, psprintf("listing %s IDs", m->remote_object), req, "no \"records\" array");
		if (next && next[0] != '/')
			sf_bad_response(conn, psprintf("listing %s IDs", m->remote_object), req,
							"nextRecordsUrl is not a path");
		for (i = 0; i < sjson_array_length(recs); i++)
		{
			if (page->ndeleted_ids == cap)
			{
				cap *= 2;
				page->deleted_ids = repalloc(page->deleted_ids, sizeof(char *) * cap);
			}
			page->deleted_ids[page->ndeleted_ids++] =
				listed_id(conn, req, psprintf("listing %s IDs", m->remote_object), recs, i, "Id");
		}
		url = next ? psprintf("%s%s", conn->api_base, next) : NULL;
	}
}

/*
 * The incremental window.  Increments read SystemModstamp >= since - 60 s
 * (SF_OVERLAP_SECONDS): a record whose transaction committed late carries
 * an older stamp than records read before it.  Re-read on every poll, that
 * overlap makes an idle mirror read the last minute of its last burst again
 * and again (thousands of records a poll), until the next remote change.
 *
 * The overlap is needed only until every record stamped up to since has
 * committed.  Salesforce's answers carry no server time to tell when that
 * is, so our own clock measures it: "since_at" is when since last advanced
 * (the server's clock had reached since by then).  A run that started
 * SF_SETTLE_SECONDS after that (twice the overlap: a margin for steps of
 * our clock) and ended without anything newer than since read every record
 * stamped up to since; the cursor is then "settled", and later runs read
 * only newer stamps until since advances, which brings the overlap back.
 * A cursor without since_at (from before it existed) takes the current
 * time: later than the truth, so it never settles early.  queryAll's
 * deletes (IsDeleted, stamped when deleted) are changes like any other:
 * the same window serves them; getDeleted has its own ("deletes_checked").
 */
#define SF_SETTLE_SECONDS (2 * SF_OVERLAP_SECONDS)

typedef struct SfWindow
{
	const char *since;			/* newest stamp applied; NULL: none yet */
	pg_time_t	since_at;		/* our clock when since advanced; 0: unknown */
	pg_time_t	run_at;			/* our clock when this run's query went out; 0:
								 * unknown */
	bool		settled;		/* every record stamped <= since was read */
} SfWindow;

/* A time of our clock, as the cursor keeps it. */
static char *
clock_text(pg_time_t t)
{
	char		buf[32];

	pg_strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", pg_gmtime(&t));
	return pstrdup(buf);
}

/* A time of our clock from the cursor; 0 when absent or unreadable (unknown). */
static pg_time_t
cursor_clock(SJson *cursor, const char *key)
{
	const char *s = sjson_get_string(cursor, key);

	if (!provider_valid_stamp(s))
		return 0;
	return timestamptz_to_time_t(DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
																		 CStringGetDatum(s),
																		 ObjectIdGetDatum(InvalidOid),
																		 Int32GetDatum(-1))));
}

/* The window as the cursor left it; continued: a later page of a run. */
static void
window_read(SJson *cursor, bool continued, SfWindow *w)
{
	w->since = sjson_get_string(cursor, "since");
	w->since_at = cursor_clock(cursor, "since_at");
	w->settled = w->since != NULL && w->since_at != 0 && sjson_bool(sjson_get(cursor, "settled"), false);
	/* a run's first page: now, before its query goes out; later pages: the run's */
	w->run_at = continued ? cursor_clock(cursor, "run_at") : time(NULL);
}

/* The SOQL lower bound of a query (NULL: no stamp yet, everything). */
static char *
window_from(const SfWindow *w, bool backfill)
{
	if (w->since == NULL)
		return NULL;
	if (backfill)
		return soql_datetime(w->since, 0);
	/* Salesforce stamps are whole seconds: ">= the next second" is "> since" */
	if (w->settled)
		return soql_datetime(w->since, -1);
	return soql_datetime(w->since, SF_OVERLAP_SECONDS);
}

/*
 * The window's part of the new cursor, after a page that read up to
 * max_stamp; run_ends: no page follows in this run.
 */
static void
window_write(SyncMirror *m, SJson *cur, SfWindow *w, const char *max_stamp, bool incremental,
			 bool run_ends)
{
	if (max_stamp == NULL)
		return;					/* nothing read yet: no window */
	if (w->since == NULL || strcmp(max_stamp, w->since) > 0 || w->since_at == 0)
	{
		/* since advances (or when it did is unknown): the overlap is needed again */
		w->since_at = time(NULL);
		w->settled = false;
	}
	else if (incremental && run_ends && !w->settled && w->run_at != 0 &&
			 w->run_at >= w->since_at + SF_SETTLE_SECONDS)
	{
		w->settled = true;
		elog(DEBUG1, "sync: %s: no Salesforce change after %s: increments no longer re-read the %d s before it",
			 m->qualified_table, max_stamp, SF_OVERLAP_SECONDS);
	}
	sjson_add_string(cur, "since", max_stamp);
	sjson_add_string(cur, "since_at", clock_text(w->since_at));
	if (w->settled)
		sjson_add_bool(cur, "settled", true);
	if (incremental && !run_ends && w->run_at != 0)
		sjson_add_string(cur, "run_at", clock_text(w->run_at));
}

/*
 * The delete log as a safety net after the last page of a run, at most
 * every ten minutes; records when it last ran in the new cursor.
 */
static void
delete_log_check(SyncConnection *conn, SyncMirror *m, SyncPage *page, SJson *cur,
				 const char *checked, bool check)
{
	char	   *now = clock_text(time(NULL));

	if (check && checked)
	{
		TimestampTz last = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
																   CStringGetDatum(checked),
																   ObjectIdGetDatum(InvalidOid),
																   Int32GetDatum(-1)));

		if (GetCurrentTimestamp() - last >= 10 * 60 * USECS_PER_SEC)
		{
			if (sf_deleted_since(conn, m, checked, page))
			{
				ereport(LOG,
						(errmsg("sync: %s: the Salesforce delete log no longer reaches back to %s; reconciling all IDs",
								m->qualified_table, checked)));
				sf_all_ids(conn, m, page);
			}
			sjson_add_string(cur, "deletes_checked", now);
		}
		else
			sjson_add_string(cur, "deletes_checked", checked);
	}
	else
		sjson_add_string(cur, "deletes_checked", checked ? checked : now);
}

/*
 * Cursor: {"mode": "backfill"|"incremental", "next": locator path or
 * absent, "since": newest stamp fully applied, "since_at", "settled",
 * "run_at": the incremental window (above), "deletes_checked": when
 * getDeleted last ran}.
 */
static void
sf_pull_page(SyncConnection *conn, SyncMirror *m, SJson *cursor, SyncPage *page)
{
	const char *mode = sjson_get_string(cursor, "mode");
	const char *next = sjson_get_string(cursor, "next");
	const char *checked = sjson_get_string(cursor, "deletes_checked");
	bool		backfill = (mode == NULL || strcmp(mode, "backfill") == 0);
	SfWindow	w;
	char	   *url;
	HttpRequest *req;
	SJson	   *j;
	char	   *max_stamp;
	const char *newnext;
	SJson	   *cur;

	window_read(cursor, next != NULL, &w);
	max_stamp = w.since ? pstrdup(w.since) : NULL;
	if (next)
		url = psprintf("%s%s", conn->api_base, next);
	else
		/* increments: no stamp yet (the object was empty): everything, deletes included */
		url = data_url(conn, backfill ? "query?q=%s" : "queryAll?q=%s",
					   http_url_encode(soql(m, window_from(&w, backfill), !backfill)));

	req = sf_get(conn, url);
	if (next && req->outcome == HTTP_DONE && req->status == 400)
	{
		char	   *code = NULL;

		(void) sf_error_text(req, &code);
		if (code && strcmp(code, "INVALID_QUERY_LOCATOR") == 0)
		{
			/* the cursor expired: restart from the newest stamp applied, not from scratch */
			ereport(LOG,
					(errmsg("sync: %s: Salesforce query cursor expired; resuming from %s",
							m->qualified_table, w.since ? w.since : "the beginning")));
			url = data_url(conn, backfill ? "query?q=%s" : "queryAll?q=%s",
						   http_url_encode(soql(m, window_from(&w, backfill), !backfill)));
			req = sf_get(conn, url);
		}
	}
	j = provider_response_json(req);
	if (req->outcome != HTTP_DONE || req->status != 200)
		conn_error_from_response(conn, psprintf("querying %s", m->remote_object), req,
								 sf_error_text(req, NULL));
	if (sjson_type(j) != SJSON_OBJECT)
		sf_bad_response(conn, psprintf("querying %s", m->remote_object), req,
						j ? "not a JSON object" : "not JSON");

	records_to_page(conn, m, req, psprintf("querying %s", m->remote_object),
					sjson_get(j, "records"), page, &max_stamp);
	if (backfill && next == NULL && w.since == NULL)
		page->total = sjson_int(sjson_get(j, "totalSize"), -1);
	newnext = sjson_get_string(j, "nextRecordsUrl");
	if (newnext && (newnext[0] != '/' || strstr(newnext, "..") != NULL))
		sf_bad_response(conn, psprintf("querying %s", m->remote_object), req,
						"nextRecordsUrl is not a path on the instance");

	cur = sjson_new_object();
	if (sjson_get(cursor, "cdc_replay") != NULL)	/* the change stream's (salesforce_cdc.c) */
		sjson_add_copy(cur, "cdc_replay", sjson_get(cursor, "cdc_replay"));
	sjson_add_string(cur, "mode", (backfill && newnext) ? "backfill" : "incremental");
	if (newnext)
		sjson_add_string(cur, "next", newnext);
	window_write(m, cur, &w, max_stamp, !backfill, newnext == NULL);
	page->more = newnext != NULL;
	page->backfill_done = backfill && newnext == NULL;

	if (!newnext)
		delete_log_check(conn, m, page, cur, checked, !backfill && max_stamp != NULL);
	else if (checked)
		sjson_add_string(cur, "deletes_checked", checked);
	page->cursor = cur;
}

static void
sf_check_mirror(SyncConnection *conn, SyncMirror *m)
{
	const char *filter = sjson_get_string(m->options, "filter");
	int			depth = 0;
	bool		quoted = false;
	const char *p;
	HttpRequest *req;

	sf_cdc_check_mirror(conn, m);	/* "realtime" */
	if (filter == NULL)
		return;
	/* a condition only: balanced, no statement separators or clauses */
	for (p = filter; *p; p++)
	{
		if (*p == '\\' && quoted && p[1])
			p++;
		else if (*p == '\'')
			quoted = !quoted;
		else if (!quoted && *p == '(')
			depth++;
		else if (!quoted && *p == ')' && --depth < 0)
			break;
		else if (!quoted && *p == ';')
			depth = -1;
		if (depth < 0)
			break;
	}
	if (depth != 0 || quoted ||
		pg_strcasecmp(filter, "") == 0 ||
		strcasestr(filter, " order by") || strcasestr(filter, " limit ") ||
		strcasestr(filter, " group by") || strcasestr(filter, " offset "))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid mirror option \"filter\": %s", filter),
				 errdetail("The filter must be one SOQL condition (what follows WHERE), with balanced quotes and parentheses, and no ORDER BY, LIMIT, GROUP BY or OFFSET.")));
	/* let Salesforce judge the rest */
	req = sf_get(conn, data_url(conn, "query?q=%s",
								http_url_encode(psprintf("SELECT Id FROM %s WHERE (%s) LIMIT 1",
														 m->remote_object, filter))));
	if (req->outcome == HTTP_DONE && req->status == 400)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid mirror option \"filter\" for %s", m->remote_object),
				 errdetail("Salesforce said: %s", sf_error_text(req, NULL))));
	if (req->outcome != HTTP_DONE || req->status != 200)
		conn_error_from_response(conn, "checking the filter", req, sf_error_text(req, NULL));
}

/* ---------------------------------------------------------------------
 * push: sObject Collections
 * --------------------------------------------------------------------- */

static int
sf_batch_max(SyncConnection *conn, SyncMirror *m, char op)
{
	return SF_BATCH_MAX;
}

/* Put one outbound value (JSON text from to_json()) into a record. */
static void
put_value(SJson *rec, SyncField *f, const char *json)
{
	char	   *err;
	SJson	   *v;

	if (json == NULL)
	{
		sjson_add_null(rec, f->remote_name);
		return;
	}
	if (strcmp(f->local_type, "numeric") == 0 || strcmp(f->local_type, "integer") == 0 ||
		strcmp(f->local_type, "bigint") == 0)
	{
		sjson_add_number_text(rec, f->remote_name, json);
		return;
	}
	v = sjson_parse(json, strlen(json), &err);
	if (sjson_type(v) == SJSON_ARRAY)
	{
		/* text[] -> multipicklist "a;b" */
		StringInfoData s;
		int			i;

		initStringInfo(&s);
		for (i = 0; i < sjson_array_length(v); i++)
			appendStringInfo(&s, "%s%s", i ? ";" : "",
							 sjson_string(sjson_array_get(v, i)) ? sjson_string(sjson_array_get(v, i)) : "");
		sjson_add_string(rec, f->remote_name, s.data);
	}
	else
		sjson_add_copy(rec, f->remote_name, v);
}

static bool
transient_code(const char *code)
{
	return code && (strcmp(code, "UNABLE_TO_LOCK_ROW") == 0 ||
					strcmp(code, "SERVER_UNAVAILABLE") == 0 ||
					strcmp(code, "REQUEST_RUNNING_TOO_LONG") == 0 ||
					strcmp(code, "QUERY_TIMEOUT") == 0);
}

/* Apply a whole-request failure to every item of the request. */
static void
request_failed(SyncConnection *conn, HttpRequest *req, SyncPushItem *items, int n)
{
	char	   *code = NULL;
	char	   *msg = sf_error_text(req, &code);
	bool		retry = conn_transient(req) || (req->outcome == HTTP_DONE && req->status == 200) ||
		(code && strcmp(code, "REQUEST_LIMIT_EXCEEDED") == 0);
	int			wait = conn_retry_after(req);
	int			i;

	if (code && strcmp(code, "REQUEST_LIMIT_EXCEEDED") == 0 && wait == 0)
		wait = 600;				/* the daily budget is spent: come back later */
	for (i = 0; i < n; i++)
	{
		items[i].result = retry ? PUSH_RETRY : PUSH_REJECTED;
		items[i].retry_after_s = wait;
		items[i].error_code = code ? code : (req->outcome == HTTP_DONE ? psprintf("HTTP_%ld", req->status) : "TRANSPORT");
		items[i].error_message = req->outcome == HTTP_DONE ?
			(msg ? msg : psprintf("unreadable response (HTTP %ld)", req->status)) :
			pstrdup(http_outcome_text(req));
	}
}

static void
parse_results(SyncConnection *conn, HttpRequest *req, SyncPushItem *items, int n, char op)
{
	SJson	   *j = provider_response_json(req);
	int			i;

	if (req->outcome != HTTP_DONE || req->status != 200 ||
		sjson_type(j) != SJSON_ARRAY || sjson_array_length(j) != n)
	{
		request_failed(conn, req, items, n);
		return;
	}
	for (i = 0; i < n; i++)
	{
		SJson	   *r = sjson_array_get(j, i);
		SJson	   *errs = sjson_get(r, "errors");
		SyncPushItem *it = &items[i];

		if (sjson_bool(sjson_get(r, "success"), false))
		{
			const char *id = sjson_get_string(r, "id");

			it->result = PUSH_OK;
			if (op == 'I' && id && !sf_valid_remote_id(id))
			{
				/* it may exist remotely: parked, never created again */
				it->result = PUSH_REJECTED;
				it->error_code = "INVALID_REMOTE_ID";
				it->error_message = psprintf("Salesforce reported success but returned %s, which is not a Salesforce ID; the record may exist remotely",
											 provider_quote_value(id));
			}
			else if (op == 'I' && id)
				it->new_remote_id = pstrdup(id);
		}
		else
		{
			SJson	   *e = sjson_array_get(errs, 0);
			const char *code = sjson_get_string(e, "statusCode");
			SJson	   *fields = sjson_get(e, "fields");
			StringInfoData fl;
			int			k;

			if (op == 'D' && code && (strcmp(code, "ENTITY_IS_DELETED") == 0 ||
									  strcmp(code, "INVALID_CROSS_REFERENCE_KEY") == 0))
			{
				it->result = PUSH_OK;	/* already gone: the goal is reached */
				it->error_message = psprintf("already deleted remotely (%s)", code);
				continue;
			}
			it->result = transient_code(code) ? PUSH_RETRY : PUSH_REJECTED;
			it->error_code = code ? pstrdup(code) : "UNKNOWN";
			it->error_message = sjson_get_string(e, "message") ?
				pstrdup(sjson_get_string(e, "message")) : "rejected without a message";
			initStringInfo(&fl);
			for (k = 0; k < sjson_array_length(fields); k++)
				appendStringInfo(&fl, "%s%s", k ? "," : "",
								 sjson_string(sjson_array_get(fields, k)) ? sjson_string(sjson_array_get(fields, k)) : "");
			it->error_fields = fl.len ? fl.data : NULL;
		}
	}
}

/*
 * One push call: the items with valid IDs (sent), where they came from,
 * and their requests (sObject Collections, 200 records each).
 */
typedef struct SfPushCall
{
	SyncPushItem *items;		/* the caller's */
	SyncPushItem *ok;			/* the ones sent */
	int		   *map;			/* ok[i] is items[map[i]] */
	int			nok;
	char		op;
	HttpRequest **reqs;
	int			nreq;
	ConnSend   *send;			/* pipelined: the requests on the network */
} SfPushCall;

static void sf_push_requests(SyncConnection *conn, SyncMirror *m, SfPushCall *call);

/*
 * Updates and deletes name their record by the remote ID from the user's
 * table: one that is not a Salesforce ID is rejected on its own here, so a
 * comma or a slash in it can never widen a request.
 */
static SfPushCall *
sf_push_prepare(SyncConnection *conn, SyncMirror *m, SyncPushItem *items, int n)
{
	SfPushCall *call = palloc0(sizeof(SfPushCall));
	int			i;

	call->items = items;
	call->ok = palloc(sizeof(SyncPushItem) * Max(1, n));
	call->map = palloc(sizeof(int) * Max(1, n));
	for (i = 0; i < n; i++)
	{
		SyncPushItem *it = &items[i];

		if (it->op != 'I' && !sf_valid_remote_id(it->remote_id))
		{
			it->result = PUSH_REJECTED;
			it->error_code = "INVALID_REMOTE_ID";
			it->error_message = psprintf("the remote-id column holds %s, which is not a Salesforce ID (15 or 18 letters and digits); fix the column's value, then sync.retry()",
										 provider_quote_value(it->remote_id));
			continue;
		}
		call->map[call->nok] = i;
		call->ok[call->nok++] = *it;
	}
	if (call->nok > 0)
		sf_push_requests(conn, m, call);
	return call;
}

/* The answers of a call's requests, into the caller's items. */
static void
sf_push_results(SyncConnection *conn, SfPushCall *call)
{
	int			r,
				i;

	for (r = 0; r < call->nreq; r++)
	{
		int			start = r * SF_BATCH_MAX;
		int			cnt = Min(SF_BATCH_MAX, call->nok - start);

		note_limits(conn, call->reqs[r]);
		parse_results(conn, call->reqs[r], call->ok + start, cnt, call->op);
	}
	for (i = 0; i < call->nok; i++)
		call->items[call->map[i]] = call->ok[i];
}

static void
sf_push(SyncConnection *conn, SyncMirror *m, SyncPushItem *items, int n)
{
	SfPushCall *call = sf_push_prepare(conn, m, items, n);

	if (call->nok == 0)
		return;
	conn_send(conn, call->reqs, call->nreq);
	sf_push_results(conn, call);
}

/*
 * The pipelined push (push.c, conn.h): the same requests, started here and
 * finished later, while the engine claims and records other batches.
 */
static void *
sf_pipe_begin(SyncConnection *conn, SyncMirror *m, SyncPushItem *items, int n)
{
	SfPushCall *call = sf_push_prepare(conn, m, items, n);

	if (call->nok > 0)
		call->send = conn_send_start(conn, call->reqs, call->nreq);
	return call;
}

static void
sf_pipe_end(SyncConnection *conn, void *arg)
{
	SfPushCall *call = (SfPushCall *) arg;

	if (call->nok == 0)
		return;
	conn_send_finish(conn, call->send);
	sf_push_results(conn, call);
}

const SyncPushPipe salesforce_push_pipe = {
	.begin = sf_pipe_begin,
	.end = sf_pipe_end,
};

static void
sf_push_requests(SyncConnection *conn, SyncMirror *m, SfPushCall *call)
{
	const char *idem = sjson_get_string(m->options, "idempotency_field");
	SyncPushItem *items = call->ok;
	int			n = call->nok;
	char		op = items[0].op;
	int			nreq = (n + SF_BATCH_MAX - 1) / SF_BATCH_MAX;
	HttpRequest **reqs = palloc(sizeof(HttpRequest *) * nreq);
	int			r,
				i,
				k;

	conn_ensure_auth(conn);
	for (r = 0; r < nreq; r++)
	{
		int			start = r * SF_BATCH_MAX;
		int			cnt = Min(SF_BATCH_MAX, n - start);

		if (op == 'D')
		{
			StringInfoData ids;

			initStringInfo(&ids);
			for (i = 0; i < cnt; i++)
				appendStringInfo(&ids, "%s%s", i ? "," : "", items[start + i].remote_id);
			reqs[r] = http_request_new("DELETE",
									   data_url(conn, "composite/sobjects?ids=%s&allOrNone=false",
												http_url_encode(ids.data)));
			http_add_header(reqs[r], "Accept", "application/json");
			http_add_header(reqs[r], "Sforce-Call-Options", sf_cdc_call_options());
		}
		else
		{
			SJson	   *body = sjson_new_object();
			SJson	   *recs;
			bool		upsert = (op == 'I' && idem != NULL);
			char	   *text;

			sjson_add_bool(body, "allOrNone", false);
			recs = sjson_add_array(body, "records");
			for (i = 0; i < cnt; i++)
			{
				SyncPushItem *it = &items[start + i];
				SJson	   *rec = sjson_append_object(recs);
				SJson	   *attrs = sjson_add_object(rec, "attributes");

				sjson_add_string(attrs, "type", m->remote_object);
				if (op == 'U')
					sjson_add_string(rec, "id", it->remote_id);
				for (k = 0; k < m->nfields; k++)
					if (it->send[k] && !(upsert && strcmp(m->fields[k].remote_name, idem) == 0))
						put_value(rec, &m->fields[k], it->values[k]);
				if (upsert)
					sjson_add_string(rec, idem, it->idempotency_key);
			}
			text = sjson_serialize(body);
			if (upsert)
				reqs[r] = http_request_new("PATCH", data_url(conn, "composite/sobjects/%s/%s",
															 http_url_encode(m->remote_object),
															 http_url_encode(idem)));
			else
				reqs[r] = http_request_new(op == 'I' ? "POST" : "PATCH",
										   data_url(conn, "composite/sobjects"));
			http_set_body(reqs[r], text, strlen(text), "application/json");
			http_add_header(reqs[r], "Accept", "application/json");
			http_add_header(reqs[r], "Sforce-Call-Options", sf_cdc_call_options());
		}
	}

	call->op = op;
	call->reqs = reqs;
	call->nreq = nreq;
}

/* ---------------------------------------------------------------------
 * fetch: SObject Collections retrieve (POST, so 2,000 IDs fit)
 * --------------------------------------------------------------------- */

static void
sf_fetch(SyncConnection *conn, SyncMirror *m, char **ids, int n, SyncPage *page)
{
	char	   *what = psprintf("re-reading %s records", m->remote_object);
	int			start,
				i,
				k;

	page->records = palloc0(sizeof(SyncRecord) * Max(1, n));
	page->nrecords = 0;
	page->deleted_ids = palloc(sizeof(char *) * Max(1, n));
	page->ndeleted_ids = 0;
	page->total = -1;
	for (start = 0; start < n; start += SF_FETCH_MAX)
	{
		int			cnt = Min(SF_FETCH_MAX, n - start);
		SJson	   *body = sjson_new_object();
		SJson	   *arr = sjson_add_array(body, "ids");
		SJson	   *fields;
		char	   *text;
		HttpRequest *req;
		SJson	   *j;

		for (i = 0; i < cnt; i++)
		{
			if (!sf_valid_remote_id(ids[start + i]))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("connection \"%s\": %s is not a Salesforce ID", conn->name,
								provider_quote_value(ids[start + i]))));
			sjson_append_string(arr, ids[start + i]);
		}
		fields = sjson_add_array(body, "fields");
		for (k = 0; k < m->nfields; k++)
			sjson_append_string(fields, m->fields[k].remote_name);
		text = sjson_serialize(body);
		req = http_request_new("POST", data_url(conn, "composite/sobjects/%s",
												http_url_encode(m->remote_object)));
		http_add_header(req, "Accept", "application/json");
		http_set_body(req, text, strlen(text), "application/json");
		conn_send_retrying(conn, req, 0);
		note_limits(conn, req);
		j = provider_response_json(req);
		if (req->outcome != HTTP_DONE || req->status != 200)
			conn_error_from_response(conn, what, req, sf_error_text(req, NULL));
		if (sjson_type(j) != SJSON_ARRAY || sjson_array_length(j) != cnt)
			sf_bad_response(conn, what, req, psprintf("not an array of %d records", cnt));
		/* in the order asked; null for an ID that is gone (or not visible) */
		for (i = 0; i < cnt; i++)
		{
			SJson	   *r = sjson_array_get(j, i);

			if (sjson_type(r) == SJSON_NULL)
			{
				page->deleted_ids[page->ndeleted_ids++] = pstrdup(ids[start + i]);
				continue;
			}
			record_from_json(conn, m, req, what, r, &page->records[page->nrecords]);
			if (strncmp(page->records[page->nrecords].remote_id, ids[start + i], 15) != 0)
				sf_bad_response(conn, what, req,
								psprintf("record %d is %s, not the %s asked for", i + 1,
										 page->records[page->nrecords].remote_id, ids[start + i]));
			page->nrecords++;
		}
		CHECK_FOR_INTERRUPTS();
	}
}

const SyncProvider salesforce_provider = {
	.name = "salesforce",
	.check_options = sf_check_options,
	.is_secret = sf_is_secret,
	.authenticate = sf_authenticate,
	.sign = provider_sign_bearer,
	.test = sf_test,
	.describe = sf_describe,
	.check_mirror = sf_check_mirror,
	.pull_page = sf_pull_page,
	.batch_max = sf_batch_max,
	.push = sf_push,
	.valid_remote_id = sf_valid_remote_id,
	.fetch = sf_fetch,
};
