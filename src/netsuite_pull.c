/*
 * netsuite_pull.c — reading NetSuite: describe (the metadata catalog),
 * backfill and increments (SuiteQL keyset on (lastmodifieddate, id)),
 * deletes (SuiteQL deletedrecord, else ID reconciliation), fetch.
 *
 * Describe reads the record type's JSON Schema from the metadata catalog.
 * Records are read with SuiteQL only: one query shape for the backfill,
 * the increments and sync.retry's re-reads, values as strings, no offset
 * beyond 0 (so the 100,000-row cap of offset paging is never reached).
 * docs/netsuite.md documents the choices.
 */
#include "postgres.h"

#include <ctype.h>
#include <time.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "netsuite.h"

#define ns_bad_response(conn, what, req, why) \
	provider_bad_response(conn, "NetSuite", what, req, why)

/* ---------------------------------------------------------------------
 * describe: the metadata catalog's JSON Schema
 * --------------------------------------------------------------------- */

/* A record type or field name: letters, digits, '_' (what SuiteQL can name unquoted). */
static bool
valid_name(const char *s)
{
	const char *p;

	if (s == NULL || *s == '\0' || strlen(s) > 100 || !isalpha((unsigned char) *s))
		return false;
	for (p = s; *p; p++)
		if (!isalnum((unsigned char) *p) && *p != '_')
			return false;
	return true;
}

/* "/rest/platform/v1/metadata-catalog/record/customerstatus" -> "customerstatus" */
static char *
ref_target(const char *ref)
{
	const char *slash = strrchr(ref, '/');
	const char *t = slash ? slash + 1 : ref;

	return valid_name(t) ? pstrdup(t) : NULL;
}

/*
 * One property of the schema -> *f (name, label, types).  JSON Schema
 * types: string (format date / date-time, or an enum), boolean, number
 * (format double / float: money and measures; integer / int64), integer,
 * $ref (a record of another type: its internal ID), object and array
 * (sublists, subrecords, links: not mapped).
 */
static void
field_from_property(const char *name, SJson *p, SyncField *f)
{
	const char *type = sjson_get_string(p, "type");
	const char *format = sjson_get_string(p, "format");
	const char *ref = sjson_get_string(p, "$ref");
	const char *title = sjson_get_string(p, "title");
	bool		ro = sjson_bool(sjson_get(p, "readOnly"), false);

	f->remote_name = pstrdup(name);
	if (title)
	{
		while (isspace((unsigned char) *title))
			title++;
		f->label = pstrdup(title);
	}
	f->nillable = sjson_bool(sjson_get(p, "nullable"), true);
	f->createable = f->updateable = !ro;
	if (ref)
	{
		f->remote_type = "reference";
		f->local_type = "bigint";	/* internal IDs; some (accounts) are negative */
		f->reference_to = ref_target(ref);
	}
	else if (type == NULL)
		f->remote_type = "unknown";
	else if (strcmp(type, "string") == 0)
	{
		if (format && strcmp(format, "date") == 0)
			f->remote_type = "date", f->local_type = "date";
		else if (format && strcmp(format, "date-time") == 0)
			f->remote_type = "date-time", f->local_type = "timestamptz";
		else if (sjson_get(p, "enum"))
			f->remote_type = "enum", f->local_type = "text";
		else
			f->remote_type = "string", f->local_type = "text";
	}
	else if (strcmp(type, "boolean") == 0)
		f->remote_type = "boolean", f->local_type = "boolean";
	else if (strcmp(type, "number") == 0 || strcmp(type, "integer") == 0)
	{
		if (format && (strcmp(format, "integer") == 0 || strcmp(format, "int64") == 0 ||
					   strcmp(format, "int32") == 0))
			f->remote_type = "integer", f->local_type = "bigint";
		else if (strcmp(type, "integer") == 0)
			f->remote_type = "integer", f->local_type = "bigint";
		else
			f->remote_type = (format && strcmp(format, "float") == 0) ? "float" : "double",
				f->local_type = "numeric";
	}
	else
		f->remote_type = pstrdup(type);	/* object (sublist, subrecord), array */
	if (f->local_type == NULL)
		f->createable = f->updateable = false;
}

static void
unknown_type(SyncConnection *conn, const char *object, const HttpRequest *req) pg_attribute_noreturn();

static void
unknown_type(SyncConnection *conn, const char *object, const HttpRequest *req)
{
	char	   *said = req ? ns_error_text(req, NULL, NULL) : NULL;

	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("NetSuite record type \"%s\" does not exist (connection \"%s\")", object, conn->name),
			 said ? errdetail("NetSuite said: %s", said) :
			 errdetail("A record type is named by letters, digits and underscores."),
			 errhint("Use a record type of the REST record API such as customer, contact, salesOrder, "
					 "or a custom record's script ID (customrecord_...); the role needs "
					 "the REST Web Services permission and access to the type.")));
}

List *
ns_describe(SyncConnection *conn, const char *object)
{
	HttpRequest *req;
	SJson	   *j,
			   *props;
	const char **names;
	char	   *what = psprintf("describing %s", object);
	List	   *out = NIL;
	ListCell   *lc;
	int			n,
				i;

	if (!valid_name(object))
		unknown_type(conn, object, NULL);
	req = ns_request(conn, "GET", ns_url(conn, "/record/v1/metadata-catalog/%s", http_url_encode(object)),
					 NULL, NULL);
	/* JSON Schema (any other Accept gives OpenAPI 3) */
	foreach(lc, req->headers)
	{
		HttpHeader *h = (HttpHeader *) lfirst(lc);

		if (pg_strcasecmp(h->name, "Accept") == 0)
			h->value = pstrdup("application/schema+json");
	}
	conn_send_retrying(conn, req, 0);
	if (req->outcome == HTTP_DONE && req->status == 404)
		unknown_type(conn, object, req);
	if (req->outcome != HTTP_DONE || req->status != 200)
		ns_fail(conn, what, req);
	j = provider_response_json(req);
	props = sjson_get(j, "properties");
	if (sjson_type(props) != SJSON_OBJECT)
		ns_bad_response(conn, what, req, j ? "no \"properties\" object" : "not JSON");

	n = sjson_object_keys(props, &names);
	for (i = 0; i < n; i++)
	{
		SyncField  *f;

		/* the envelope's links and refName are no fields of the record */
		if (strcmp(names[i], "links") == 0 || strcmp(names[i], "refName") == 0)
			continue;
		if (!valid_name(names[i]))
			continue;			/* never a column SuiteQL could name */
		f = palloc0(sizeof(SyncField));
		field_from_property(names[i], sjson_get(props, names[i]), f);
		if (strcmp(names[i], "id") == 0)
		{
			f->role = FIELD_ID;
			f->remote_type = "id";
			f->local_type = "text";
			f->createable = f->updateable = f->nillable = false;
			f->unique = true;
		}
		else if (strcmp(names[i], "lastModifiedDate") == 0)
		{
			f->role = FIELD_STAMP;
			f->local_type = "timestamptz";
			f->createable = f->updateable = false;
		}
		else if (strcmp(names[i], "externalId") == 0)
		{
			/* unique per record type; PUT .../eid:X upserts by it */
			f->unique = f->external_id = true;
			f->local_type = "text";
		}
		else if (strcmp(names[i], "dateCreated") == 0 || strcmp(names[i], "createdDate") == 0)
			f->createable = f->updateable = false;
		out = lappend(out, f);
	}
	return out;
}

/* ---------------------------------------------------------------------
 * mirror options
 * --------------------------------------------------------------------- */

void
ns_check_mirror(SyncConnection *conn, SyncMirror *m)
{
	const char *idem = sjson_get_string(m->options, "idempotency_field");

	if (sjson_has_key(m->options, "filter"))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("mirror option \"filter\" is not supported for NetSuite record types"),
				 errhint("Mirror the whole record type and filter with a view.")));
	if (sjson_has_key(m->options, "idempotency_field") &&
		(idem == NULL || strcmp(idem, "externalId") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid mirror option \"idempotency_field\" for NetSuite %s: %s",
						m->remote_object, idem ? provider_quote_value(idem) : "not a string"),
				 errdetail("NetSuite upserts only by external ID (PUT .../%s/eid:<value>).",
						   m->remote_object),
				 errhint("Use \"externalId\", or leave the option out.")));
	ns_check_push_options(conn, m);
}

/* ---------------------------------------------------------------------
 * pull (being built)
 * --------------------------------------------------------------------- */

static void
not_yet(SyncConnection *conn) pg_attribute_noreturn();

static void
not_yet(SyncConnection *conn)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("connection \"%s\": reading NetSuite records is not available in this build",
					conn->name)));
}

void
ns_pull_page(SyncConnection *conn, SyncMirror *m, SJson *cursor, SyncPage *page)
{
	not_yet(conn);
}

void
ns_fetch(SyncConnection *conn, SyncMirror *m, char **ids, int n, SyncPage *page)
{
	not_yet(conn);
}
