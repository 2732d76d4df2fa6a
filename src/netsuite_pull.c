/*
 * netsuite_pull.c — reading NetSuite: describe (the metadata catalog),
 * backfill and increments (SuiteQL), deletes (SuiteQL deletedrecord, else ID
 * reconciliation), fetch.
 *
 * Describe reads the record type's JSON Schema from the metadata catalog.
 * Records are read with SuiteQL only, a thousand a request, at offset 0
 * always (so the 100,000-row cap of offset paging is never reached): the
 * backfill by ID, the increments by a keyset on (lastmodifieddate, id),
 * sync.retry's re-reads by WHERE id IN (...).  SuiteQL speaks the user's
 * time zone: the cursor keeps SuiteQL's own text, the table gets UTC.
 * docs/netsuite.md documents the choices.
 */
#include "postgres.h"

#include <ctype.h>
#include <time.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgtime.h"
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

static void
set_type(SyncField *f, const char *remote_type, const char *local_type)
{
	f->remote_type = (char *) remote_type;
	f->local_type = (char *) local_type;
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
		/*
		 * The target's internal ID (digits; some, e.g. accounts, are
		 * negative), as text: so that a row may name a parent not yet
		 * pushed by its local key ('@' || key) and the engine resolves it,
		 * as for Salesforce's and HubSpot's references.
		 */
		set_type(f, "reference", "text");
		f->reference_to = ref_target(ref);
	}
	else if (type == NULL)
		set_type(f, "unknown", NULL);
	else if (strcmp(type, "string") == 0)
	{
		if (format && strcmp(format, "date") == 0)
			set_type(f, "date", "date");
		else if (format && strcmp(format, "date-time") == 0)
			set_type(f, "date-time", "timestamptz");
		else if (sjson_get(p, "enum"))
			set_type(f, "enum", "text");
		else
			set_type(f, "string", "text");
	}
	else if (strcmp(type, "boolean") == 0)
		set_type(f, "boolean", "boolean");
	else if (strcmp(type, "integer") == 0 ||
			 (strcmp(type, "number") == 0 && format &&
			  (strcmp(format, "integer") == 0 || strcmp(format, "int64") == 0 ||
			   strcmp(format, "int32") == 0)))
		set_type(f, "integer", "bigint");
	else if (strcmp(type, "number") == 0)
		set_type(f, (format && strcmp(format, "float") == 0) ? "float" : "double", "numeric");
	else
		set_type(f, pstrdup(type), NULL);	/* object (sublist, subrecord), array */
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

static void ql_source(SyncConnection *conn, SyncMirror *m, char **table, char **cond);
static HttpRequest *ql_send(SyncConnection *conn, const char *q, int limit);
static void ql_fail(SyncConnection *conn, const char *what, const HttpRequest *req) pg_attribute_noreturn();

/*
 * The mirror option filter: one SuiteQL condition (what follows WHERE) on
 * the type's table, e.g. "isinactive = 'F'".  Balanced quotes and
 * parentheses, no statement of its own; then NetSuite judges it.
 */
static void
check_filter(SyncConnection *conn, SyncMirror *m)
{
	const char *filter = sjson_get_string(m->options, "filter");
	static const char *const clauses[] = {" order by", " group by", " fetch ", " offset ", " union",
	" having", " limit ", NULL};
	int			depth = 0,
				k;
	bool		quoted = false;
	bool		bad = filter == NULL || *filter == '\0';
	const char *p;
	char	   *table,
			   *cond;
	HttpRequest *req;

	for (p = filter; !bad && *p; p++)
	{
		if (*p == '\'')
			quoted = !quoted;
		else if (!quoted && *p == '(')
			depth++;
		else if (!quoted && *p == ')')
			bad = --depth < 0;
		else if (!quoted && *p == ';')
			bad = true;
	}
	bad = bad || depth != 0 || quoted;
	for (k = 0; !bad && clauses[k]; k++)
		bad = strcasestr(filter, clauses[k]) != NULL;
	if (bad)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid mirror option \"filter\": %s", filter ? provider_quote_value(filter) : "not a string"),
				 errdetail("The filter must be one SuiteQL condition (what follows WHERE), with balanced quotes and "
						   "parentheses, and no ORDER BY, GROUP BY, HAVING, UNION, FETCH or OFFSET.")));
	ql_source(conn, m, &table, &cond);
	req = ql_send(conn, psprintf("SELECT id FROM %s WHERE %s", table, cond), 1);
	if (req->outcome == HTTP_DONE && req->status == 400)
	{
		char	   *msg = ns_error_text(req, NULL, NULL);

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid mirror option \"filter\" for NetSuite %s", m->remote_object),
				 errdetail("NetSuite said: %s", msg ? msg : "no reason given"),
				 errhint("Columns are SuiteQL's (lower-case field names); booleans are 'T' and 'F'.")));
	}
	if (req->outcome != HTTP_DONE || req->status != 200)
		ql_fail(conn, "checking the mirror option \"filter\"", req);
}

void
ns_check_mirror(SyncConnection *conn, SyncMirror *m)
{
	const char *idem = sjson_get_string(m->options, "idempotency_field");

	if (sjson_has_key(m->options, "filter"))
		check_filter(conn, m);
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
 * SuiteQL
 * --------------------------------------------------------------------- */

#define NS_PAGE_LIMIT 1000		/* SuiteQL's largest page */
#define NS_IN_MAX 1000			/* values in one IN (...) */
#define NS_MAX_COLUMNS 100		/* more selected columns silently give no rows */
#define NS_OVERLAP_S 60			/* increments re-read the last minute */
#define NS_INDEX_SLACK_S 7200	/* the indexed bound: two hours below the keyset */
#define NS_RECONCILE_S 86400	/* full ID reconciliation: daily */
#define NS_MAX_OFFSET_S (15 * 3600)	/* zones are within UTC-12 and UTC+14 */
#define NS_CALIBRATE_S 600		/* an idle mirror re-reads SuiteQL's clock every 10 min */
#define NS_FMT "YYYY-MM-DD HH24:MI:SS"

/* Transaction record types: SuiteQL has them in one table, "transaction". */
static const char *const ns_transaction_types[] = {
	"assemblybuild", "cashrefund", "cashsale", "check", "creditmemo", "customerdeposit",
	"customerpayment", "customerrefund", "deposit", "estimate", "expensereport",
	"inventoryadjustment", "invoice", "itemfulfillment", "itemreceipt", "journalentry",
	"opportunity", "purchaseorder", "returnauthorization", "salesorder", "transferorder",
	"vendorbill", "vendorcredit", "vendorpayment", "workorder", NULL
};

/* An internal ID's value (digits, checked by ns_valid_remote_id); past int64: its maximum. */
static int64
id_value(const char *id)
{
	return (int64) strtoll(id, NULL, 10);
}

static char *
lower_name(const char *s)
{
	char	   *out = pstrdup(s);
	char	   *p;

	for (p = out; *p; p++)
		*p = pg_tolower((unsigned char) *p);
	return out;
}

/* 'text' as a SuiteQL string literal (quotes doubled) */
static char *
ql_literal(const char *s)
{
	StringInfoData b;

	initStringInfo(&b);
	appendStringInfoChar(&b, '\'');
	for (; *s; s++)
	{
		if (*s == '\'')
			appendStringInfoChar(&b, '\'');
		appendStringInfoChar(&b, *s);
	}
	appendStringInfoChar(&b, '\'');
	return b.data;
}

/*
 * The record type's SuiteQL table, and the condition that picks the
 * mirror's rows from it ("" for all of a table of its own): customer ->
 * customer; salesOrder -> transaction, recordtype = 'salesorder'; and the
 * mirror option filter.
 */
static void
ql_source(SyncConnection *conn, SyncMirror *m, char **table, char **cond)
{
	char	   *t = lower_name(m->remote_object);
	int			i;

	if (!valid_name(t))
		unknown_type(conn, m->remote_object, NULL);
	*table = t;
	*cond = "";
	for (i = 0; ns_transaction_types[i]; i++)
		if (strcmp(t, ns_transaction_types[i]) == 0)
		{
			*table = "transaction";
			*cond = psprintf("recordtype = %s", ql_literal(t));
			break;
		}
	/* the mirror option filter: a SuiteQL condition (ns_check_mirror checked it) */
	if (sjson_get_string(m->options, "filter"))
		*cond = psprintf("%s%s(%s)", *cond, **cond ? " AND " : "", sjson_get_string(m->options, "filter"));
}

/*
 * NetSuite returns no rows at all for a query of more than 100 columns.
 * The fields are read in chunks: the records query has id, the stamp,
 * SuiteQL's clock and the first NS_FIRST_CHUNK fields; each further chunk
 * is id and up to NS_MORE_CHUNK fields, read for the page's IDs.
 */
#define NS_FIRST_CHUNK (NS_MAX_COLUMNS - 3)
#define NS_MORE_CHUNK (NS_MAX_COLUMNS - 1)

/* The chunk of field k (a data field), by its place among the data fields. */
static int
field_chunk(SyncMirror *m, int k)
{
	int			p = 0,
				i;

	for (i = 0; i < k; i++)
		if (m->fields[i].role == FIELD_DATA)
			p++;
	return p < NS_FIRST_CHUNK ? 0 : 1 + (p - NS_FIRST_CHUNK) / NS_MORE_CHUNK;
}

static int
field_chunks(SyncMirror *m)
{
	int			k,
				n = 1;

	for (k = 0; k < m->nfields; k++)
		if (m->fields[k].role == FIELD_DATA)
			n = Max(n, field_chunk(m, k) + 1);
	return n;
}

/*
 * The select list of a chunk.  Chunk 0: id, the stamp as text (without
 * TO_CHAR SuiteQL gives a date only, in the user's format), SuiteQL's clock
 * (SYSDATE, in the same zone as the stamps) to calibrate the zone with, and
 * the chunk's fields by their lower-case names (dates and datetimes through
 * TO_CHAR).  Further chunks: id and their fields.
 */
static char *
ql_columns(SyncConnection *conn, SyncMirror *m, int chunk)
{
	StringInfoData s;
	int			k;

	initStringInfo(&s);
	appendStringInfoString(&s, "id");
	if (chunk == 0)
		appendStringInfo(&s, ", TO_CHAR(lastmodifieddate, '%s') AS sync_stamp, "
						 "TO_CHAR(SYSDATE, '%s') AS sync_now", NS_FMT, NS_FMT);
	for (k = 0; k < m->nfields; k++)
	{
		SyncField  *f = &m->fields[k];
		char	   *col;

		if (f->role != FIELD_DATA || field_chunk(m, k) != chunk)
			continue;
		col = lower_name(f->remote_name);
		if (!valid_name(col) || strncmp(col, "sync_", 5) == 0 || strcmp(col, "id") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("connection \"%s\": field \"%s\" of %s cannot be named in SuiteQL",
							conn->name, f->remote_name, m->qualified_table),
					 errhint("Remove the field from the mirror.")));
		if (strcmp(f->local_type, "timestamptz") == 0)
			appendStringInfo(&s, ", TO_CHAR(%s, '%s') AS %s", col, NS_FMT, col);
		else if (strcmp(f->local_type, "date") == 0)
			appendStringInfo(&s, ", TO_CHAR(%s, 'YYYY-MM-DD') AS %s", col, col);
		else
			appendStringInfo(&s, ", %s", col);
	}
	return s.data;
}

/*
 * One SuiteQL page (always offset 0: paging is by keyset).  Returns the
 * response; the caller checks it with ql_items().
 */
static HttpRequest *
ql_send(SyncConnection *conn, const char *q, int limit)
{
	SJson	   *body = sjson_new_object();
	HttpRequest *req;

	sjson_add_string(body, "q", q);
	req = ns_request(conn, "POST", ns_url(conn, "/query/v1/suiteql?limit=%d&offset=0", limit),
					 sjson_serialize(body), "application/json");
	http_add_header(req, "Prefer", "transient");
	conn_send_retrying(conn, req, 0);
	return req;
}

/*
 * A refused SuiteQL query.  A field of the record API that SuiteQL does not
 * know by the same name (a few differ) is the user's to drop from the
 * mirror: the hint says so.
 */
static void
ql_fail(SyncConnection *conn, const char *what, const HttpRequest *req) pg_attribute_noreturn();

static void
ql_fail(SyncConnection *conn, const char *what, const HttpRequest *req)
{
	char	   *code = NULL;
	char	   *msg = (req->outcome == HTTP_DONE && req->status == 400) ? ns_error_text(req, &code, NULL) : NULL;

	if (msg && (strstr(msg, "Unknown identifier") || strstr(msg, "was not found")))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("connection \"%s\": NetSuite refused the SuiteQL query while %s: %s",
						conn->name, what, msg),
				 code ? errdetail("NetSuite error code \"%s\", HTTP 400.", code) : 0,
				 errhint("A field of the record API that SuiteQL names otherwise or not at all cannot be "
						 "mirrored: mirror the type again without it (sync.unmirror(), then sync.mirror() "
						 "with fields).")));
	ns_fail(conn, what, req);
}

/* The items of a SuiteQL answer; ERROR (with NetSuite's words) unless it is one. */
static SJson *
ql_items(SyncConnection *conn, const char *what, HttpRequest *req, bool *more, int64 *total)
{
	SJson	   *j = provider_response_json(req);
	SJson	   *items = sjson_get(j, "items");
	int			i;

	if (req->outcome != HTTP_DONE || req->status != 200)
		ql_fail(conn, what, req);
	if (sjson_type(items) != SJSON_ARRAY)
		ns_bad_response(conn, what, req, j ? "no \"items\" array" : "not JSON");
	for (i = 0; i < sjson_array_length(items); i++)
		if (sjson_type(sjson_array_get(items, i)) != SJSON_OBJECT)
			ns_bad_response(conn, what, req, psprintf("item %d is not a JSON object", i + 1));
	if (more)
		*more = sjson_bool(sjson_get(j, "hasMore"), false);
	if (total)
		*total = sjson_int(sjson_get(j, "totalResults"), -1);
	return items;
}

/* A column's value as text (SuiteQL sends strings; another scalar as its text); NULL if absent. */
static char *
item_text(SJson *item, const char *col)
{
	SJson	   *v = sjson_get(item, col);

	if (v == NULL || sjson_type(v) == SJSON_OBJECT || sjson_type(v) == SJSON_ARRAY)
		return NULL;
	return sjson_string(v) ? pstrdup(sjson_string(v)) : sjson_scalar_text(v);
}

/* ---------------------------------------------------------------------
 * time: SuiteQL speaks the user's time zone, the record API UTC
 * --------------------------------------------------------------------- */

/* "YYYY-MM-DD HH24:MI:SS" (exactly) -> seconds since 1970 of that wall-clock time */
static bool
wall_seconds(const char *s, int64 *out)
{
	int			y,
				mo,
				d,
				h,
				mi,
				se;

	if (s == NULL || strlen(s) != 19 || s[10] != ' ' || !provider_valid_stamp(s))
		return false;
	if (sscanf(s, "%4d-%2d-%2d %2d:%2d:%2d", &y, &mo, &d, &h, &mi, &se) != 6)
		return false;
	*out = (int64) (date2j(y, mo, d) - UNIX_EPOCH_JDATE) * SECS_PER_DAY + h * 3600 + mi * 60 + se;
	return true;
}

/* seconds since 1970 -> "YYYY-MM-DD HH24:MI:SS", or with utc "YYYY-MM-DDTHH:MI:SSZ" */
static char *
wall_text(int64 secs, bool utc)
{
	int64		days = secs >= 0 ? secs / SECS_PER_DAY : -((-secs + SECS_PER_DAY - 1) / SECS_PER_DAY);
	int64		rest = secs - days * SECS_PER_DAY;
	int			y,
				mo,
				d;

	j2date((int) (days + UNIX_EPOCH_JDATE), &y, &mo, &d);
	return psprintf("%04d-%02d-%02d%c%02d:%02d:%02d%s", y, mo, d, utc ? 'T' : ' ',
					(int) (rest / 3600), (int) (rest % 3600 / 60), (int) (rest % 60), utc ? "Z" : "");
}

/* A SuiteQL stamp text moved by `delta` seconds (still SuiteQL's zone). */
static char *
wall_shift(const char *s, int64 delta)
{
	int64		secs;

	if (!wall_seconds(s, &secs))
		return pstrdup(s);
	return wall_text(secs + delta, false);
}

/* RFC 7231 Date: "Sun, 06 Nov 1994 08:49:37 GMT" -> seconds since 1970 */
static bool
http_date_seconds(const char *v, int64 *out)
{
	static const char *const months[] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
	};
	char		mon[4];
	int			d,
				y,
				h,
				mi,
				se,
				i;

	if (v == NULL || sscanf(v, "%*3s, %2d %3s %4d %2d:%2d:%2d GMT", &d, mon, &y, &h, &mi, &se) != 6)
		return false;
	for (i = 0; i < 12; i++)
		if (strcmp(mon, months[i]) == 0)
			break;
	if (i == 12 || d < 1 || d > 31 || y < 1970 || y > 9999 || h > 23 || mi > 59 || se > 60)
		return false;
	*out = (int64) (date2j(y, i + 1, d) - UNIX_EPOCH_JDATE) * SECS_PER_DAY + h * 3600 + mi * 60 + se;
	return true;
}

/*
 * The offset of zone z (an IANA name) at wall-clock time `wall` there:
 * seconds to add to get UTC.  False for an unknown zone.
 */
static bool
zone_offset(const char *z, int64 wall, int64 *offset)
{
	pg_tz	   *tz = z ? pg_tzset(z) : NULL;
	struct pg_tm tm;
	int64		days = wall >= 0 ? wall / SECS_PER_DAY : -((-wall + SECS_PER_DAY - 1) / SECS_PER_DAY);
	int64		rest = wall - days * SECS_PER_DAY;

	if (tz == NULL)
		return false;
	memset(&tm, 0, sizeof(tm));
	j2date((int) (days + UNIX_EPOCH_JDATE), &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
	tm.tm_hour = (int) (rest / 3600);
	tm.tm_min = (int) (rest % 3600 / 60);
	tm.tm_sec = (int) (rest % 60);
	tm.tm_isdst = -1;
	*offset = DetermineTimeZoneOffset(&tm, tz);
	return true;
}

/* The offset of zone z at the UTC time `utc` (seconds to add to its wall time). */
static bool
zone_offset_utc(const char *z, int64 utc, int64 *offset)
{
	int64		guess;

	return zone_offset(z, utc, &guess) && zone_offset(z, utc - guess, offset);
}

/*
 * The integration user's time zone when the connection names it (option
 * time_zone): stamps of either half of a daylight-saving year then convert
 * exactly.
 */
static const char *
user_zone(SyncConnection *conn)
{
	const char *z = sjson_get_string(conn->options, "time_zone");

	return (z && pg_tzset(z)) ? z : NULL;
}

/*
 * Calibrate the zone from a SuiteQL answer: SYSDATE as SuiteQL showed it
 * (sync_now) against the UTC time of the answer (its Date header; else our
 * clock), rounded to the quarter hour that every zone's offset is a
 * multiple of: seconds to add to a SuiteQL time to get UTC.  With option
 * time_zone, the zone's offset now counts; SYSDATE only checks it.
 */
static bool
calibrate(SyncConnection *conn, const HttpRequest *req, SJson *items)
{
	NsState    *st = ns_state(conn);
	char	   *now_text = item_text(sjson_array_get(items, 0), "sync_now");
	const char *z = user_zone(conn);
	int64		local,
				utc,
				diff,
				zoff;

	if (!wall_seconds(now_text, &local))
		return false;
	if (!http_date_seconds(http_response_header(req, "date"), &utc))
		utc = (int64) time(NULL);
	diff = utc - local;
	diff = (diff >= 0 ? (diff + 450) / 900 : -((-diff + 450) / 900)) * 900;
	if (diff < -NS_MAX_OFFSET_S || diff > NS_MAX_OFFSET_S)
		return false;			/* no zone is that far: not SuiteQL's clock */
	if (z && zone_offset_utc(z, utc, &zoff))
	{
		if (zoff != diff && !st->zone_warned)
			ereport(WARNING,
					(errmsg("connection \"%s\": SuiteQL's clock (SYSDATE) shows UTC%+d min, but the option time_zone \"%s\" is at UTC%+d min now",
							conn->name, (int) (-diff / 60), z, (int) (-zoff / 60)),
					 errdetail("Datetimes from SuiteQL are converted to UTC with time_zone; if it is not the "
							   "integration user's time zone in NetSuite, the stored stamps are off by the difference."),
					 errhint("Set time_zone to the integration user's time zone (NetSuite: Set Preferences), "
							 "with sync.alter_connection().")));
		st->zone_warned = st->zone_warned || zoff != diff;
		diff = zoff;
	}
	if (!st->tz_known || st->tz_offset_s != (int) diff)
		elog(DEBUG1, "sync: connection \"%s\": SuiteQL shows times at UTC%+d min",
			 conn->name, (int) (-diff / 60));
	st->tz_known = true;
	st->tz_offset_s = (int) diff;
	st->tz_at = GetCurrentTimestamp();
	return true;
}

/* A SuiteQL datetime -> UTC timestamptz text; NULL if unreadable. */
static char *
utc_stamp(SyncConnection *conn, const char *s)
{
	NsState    *st = ns_state(conn);
	int64		secs,
				offset;

	if (!wall_seconds(s, &secs))
		return NULL;
	if (!(user_zone(conn) && zone_offset(user_zone(conn), secs, &offset)))
		offset = st->tz_known ? st->tz_offset_s : 0;
	return wall_text(secs + offset, true);
}

/* ---------------------------------------------------------------------
 * records
 * --------------------------------------------------------------------- */

/* The values of one chunk's fields from a SuiteQL row into rec->values. */
static void
fill_values(SyncConnection *conn, SyncMirror *m, SJson *item, SyncRecord *rec, int chunk)
{
	int			k;

	for (k = 0; k < m->nfields; k++)
	{
		SyncField  *f = &m->fields[k];
		char	   *col;
		SJson	   *v;
		char	   *t;

		if (f->role != FIELD_DATA || field_chunk(m, k) != chunk)
			continue;
		col = lower_name(f->remote_name);
		v = sjson_get(item, col);
		if (sjson_repaired(v) && rec->invalid == NULL)
			rec->invalid = provider_broken_value(f->remote_name);
		t = item_text(item, col);
		if (t == NULL)
			continue;			/* NULL and empty columns are left out */
		if (strcmp(f->local_type, "boolean") == 0)
			rec->values[k] = strcmp(t, "T") == 0 ? "true" : strcmp(t, "F") == 0 ? "false" : t;
		else if (strcmp(f->local_type, "timestamptz") == 0)
		{
			rec->values[k] = utc_stamp(conn, t);
			if (rec->values[k] == NULL)
				rec->values[k] = t;	/* the table judges it */
		}
		else
			rec->values[k] = t;
	}
}

/*
 * One SuiteQL row -> *rec.  A row without an internal ID of digits or
 * with an unreadable stamp is NetSuite's error: the whole answer is
 * refused (nothing applied, the cursor stays).  Values the table may
 * refuse are passed on as text: the engine sets such records aside.
 */
static void
record_from_item(SyncConnection *conn, SyncMirror *m, const HttpRequest *req, const char *what,
				 SJson *item, SyncRecord *rec, char **stamp_text)
{
	const char *id = sjson_get_string(item, "id");	/* SuiteQL sends every value as a string */
	const char *st = sjson_get_string(item, "sync_stamp");

	if (!ns_valid_remote_id(id))
		ns_bad_response(conn, what, req,
						psprintf("a record's id %s is not a NetSuite internal ID", provider_quote_value(id)));
	if (st && (rec->stamp = utc_stamp(conn, st)) == NULL)
		ns_bad_response(conn, what, req,
						psprintf("record %s has an unreadable lastmodifieddate %s", id, provider_quote_value(st)));
	rec->remote_id = pstrdup(id);
	*stamp_text = st ? pstrdup(st) : NULL;
	rec->values = palloc0(sizeof(char *) * Max(1, m->nfields));
	fill_values(conn, m, item, rec, 0);
}

/*
 * The rest of a page's fields (more than one chunk): one query per further
 * chunk for the page's IDs.  A record changed in between may mix two of
 * its versions; its new stamp makes the next increment read it again.
 */
typedef struct IdIndex
{
	int64		id;
	int			rec;
} IdIndex;

static int
id_index_cmp(const void *a, const void *b)
{
	int64		x = ((const IdIndex *) a)->id,
				y = ((const IdIndex *) b)->id;

	return x < y ? -1 : x > y ? 1 : 0;
}

static void
fill_chunks(SyncConnection *conn, SyncMirror *m, SyncRecord *recs, int n, const char *what)
{
	int			chunks = field_chunks(m);
	IdIndex    *ix;
	char	   *table,
			   *cond;
	int			c,
				i;

	if (chunks <= 1 || n == 0)
		return;
	ql_source(conn, m, &table, &cond);
	ix = palloc(sizeof(IdIndex) * n);
	for (i = 0; i < n; i++)
	{
		ix[i].id = id_value(recs[i].remote_id);
		ix[i].rec = i;
	}
	qsort(ix, n, sizeof(IdIndex), id_index_cmp);
	for (c = 1; c < chunks; c++)
	{
		int			start;

		for (start = 0; start < n; start += NS_IN_MAX)
		{
			int			cnt = Min(NS_IN_MAX, n - start);
			StringInfoData q;
			HttpRequest *req;
			SJson	   *items;

			initStringInfo(&q);
			appendStringInfo(&q, "SELECT %s FROM %s WHERE %s%sid IN (", ql_columns(conn, m, c), table,
							 cond, *cond ? " AND " : "");
			for (i = 0; i < cnt; i++)
				appendStringInfo(&q, "%s" INT64_FORMAT, i ? ", " : "", ix[start + i].id);
			appendStringInfoString(&q, ") ORDER BY id");
			req = ql_send(conn, q.data, NS_PAGE_LIMIT);
			items = ql_items(conn, what, req, NULL, NULL);
			for (i = 0; i < sjson_array_length(items); i++)
			{
				SJson	   *item = sjson_array_get(items, i);
				const char *id = sjson_get_string(item, "id");
				IdIndex		key,
						   *hit;

				key.id = ns_valid_remote_id(id) ? id_value(id) : -1;
				hit = bsearch(&key, ix + start, cnt, sizeof(IdIndex), id_index_cmp);
				if (hit == NULL)
					ns_bad_response(conn, what, req,
									psprintf("record %s was not asked for", provider_quote_value(id)));
				fill_values(conn, m, item, &recs[hit->rec], c);
			}
			CHECK_FOR_INTERRUPTS();
		}
	}
}

/* ---------------------------------------------------------------------
 * pull: the cursor
 * --------------------------------------------------------------------- */

/*
 * The cursor (ours, stored by the engine).  Stamps in it are SuiteQL's own
 * text, in the user's time zone, and are only ever compared with SuiteQL's
 * text again: a wrong calibration can shift the UTC stamps stored in the
 * table, never skip a record.
 *   mode      "backfill" | "incremental"
 *   after_id  backfill: the last ID read (the backfill pages by ID)
 *   phase     "search" | "deleted" | "reconcile" (incremental)
 *   since     newest stamp of a completed run (after the backfill: SuiteQL's
 *             clock when it began)
 *   key_t, key_id   keyset position within a run; from: the run's window start
 *   run_t     newest stamp seen by the run
 *   tz        the zone offset (s) when `since` was written: a change (daylight
 *             saving time) widens the next window by as much
 *   deletes   "deletedrecord" | "reconcile" (absent: not probed yet)
 *   del_t, del_id   the deletedrecord keyset
 *   reconciled_at   when the last full ID reconciliation ended (unix s)
 */
typedef struct NsCursor
{
	bool		backfill;
	int64		after_id;		/* backfill: the last ID read (-1: none) */
	const char *phase;
	const char *since;
	const char *key_t;
	int64		key_id;
	const char *from;
	const char *run_t;
	const char *run_clock;		/* SuiteQL's clock when the run began */
	bool		tz_set;
	int64		tz;
	const char *deletes;
	const char *del_t;
	int64		del_id;
	int64		reconciled_at;
} NsCursor;

static const char *
cur_str(SJson *c, const char *key)
{
	const char *v = sjson_get_string(c, key);

	return v ? pstrdup(v) : NULL;
}

static int64
cur_int(SJson *c, const char *key, int64 dflt)
{
	return sjson_has_key(c, key) ? sjson_int(sjson_get(c, key), dflt) : dflt;
}

static void
cursor_read(SJson *c, NsCursor *nc)
{
	const char *mode = sjson_get_string(c, "mode");

	memset(nc, 0, sizeof(NsCursor));
	nc->backfill = mode == NULL || strcmp(mode, "backfill") == 0;
	nc->after_id = cur_int(c, "after_id", -1);
	nc->phase = cur_str(c, "phase");
	nc->since = cur_str(c, "since");
	nc->key_t = cur_str(c, "key_t");
	nc->key_id = cur_int(c, "key_id", 0);
	nc->from = cur_str(c, "from");
	nc->run_t = cur_str(c, "run_t");
	nc->run_clock = cur_str(c, "run_clock");
	nc->tz_set = sjson_has_key(c, "tz");
	nc->tz = cur_int(c, "tz", 0);
	nc->deletes = cur_str(c, "deletes");
	nc->del_t = cur_str(c, "del_t");
	nc->del_id = cur_int(c, "del_id", 0);
	nc->reconciled_at = cur_int(c, "reconciled_at", 0);
}

static SJson *
cursor_write(const NsCursor *nc)
{
	SJson	   *c = sjson_new_object();

	sjson_add_string(c, "mode", nc->backfill ? "backfill" : "incremental");
	if (nc->backfill && nc->after_id >= 0)
		sjson_add_int(c, "after_id", nc->after_id);
	if (!nc->backfill)
		sjson_add_string(c, "phase", nc->phase ? nc->phase : "search");
#define PUT_STR(k) do { if (nc->k) sjson_add_string(c, #k, nc->k); } while (0)
	PUT_STR(since);
	PUT_STR(key_t);
	if (nc->key_t)
		sjson_add_int(c, "key_id", nc->key_id);
	PUT_STR(from);
	PUT_STR(run_t);
	PUT_STR(run_clock);
	if (nc->tz_set)
		sjson_add_int(c, "tz", nc->tz);
	PUT_STR(deletes);
	PUT_STR(del_t);
	if (nc->del_t)
		sjson_add_int(c, "del_id", nc->del_id);
#undef PUT_STR
	sjson_add_int(c, "reconciled_at", nc->reconciled_at);
	return c;
}

/* Is b later than a (SuiteQL stamp texts, NULL = never)? */
static bool
later(const char *a, const char *b)
{
	return b != NULL && (a == NULL || strcmp(b, a) > 0);
}

/* ---------------------------------------------------------------------
 * pull: records by keyset
 * --------------------------------------------------------------------- */

/*
 * The records query: after the keyset position (key_t, key_id), else from
 * the window start `from` (NULL: all), in (stamp, id) order.  Stamps are
 * compared as SuiteQL's second-precision text, so records sharing a second
 * are told apart by id however NetSuite stores fractions; the TO_DATE bound
 * (two hours of slack, for the hour a daylight-saving change repeats) lets
 * NetSuite use its index on lastmodifieddate.
 */
static char *
records_query(SyncConnection *conn, SyncMirror *m, const char *from, const char *key_t, int64 key_id)
{
	char	   *table,
			   *cond;
	StringInfoData q;
	const char *stamp = "TO_CHAR(lastmodifieddate, '" NS_FMT "')";
	const char *lo = key_t ? key_t : from;

	ql_source(conn, m, &table, &cond);
	initStringInfo(&q);
	appendStringInfo(&q, "SELECT %s FROM %s", ql_columns(conn, m, 0), table);
	if (*cond || lo)
		appendStringInfoString(&q, " WHERE ");
	if (*cond)
		appendStringInfoString(&q, cond);
	if (*cond && lo)
		appendStringInfoString(&q, " AND ");
	if (lo)
	{
		appendStringInfo(&q, "lastmodifieddate >= TO_DATE(%s, '" NS_FMT "') AND ",
						 ql_literal(wall_shift(lo, -NS_INDEX_SLACK_S)));
		if (key_t)
			appendStringInfo(&q, "(%s > %s OR (%s = %s AND id > " INT64_FORMAT "))",
							 stamp, ql_literal(key_t), stamp, ql_literal(key_t), key_id);
		else
			appendStringInfo(&q, "%s >= %s", stamp, ql_literal(from));
	}
	appendStringInfo(&q, " ORDER BY %s, id", stamp);
	return q.data;
}

/*
 * The backfill's query: every record by ID, after `after_id` — the primary
 * key's order, cheap however many records there are.  Records changed
 * while it runs are read again by the increments, which start at SuiteQL's
 * clock when the backfill began.
 */
static char *
backfill_query(SyncConnection *conn, SyncMirror *m, int64 after_id)
{
	char	   *table,
			   *cond;
	StringInfoData q;

	ql_source(conn, m, &table, &cond);
	initStringInfo(&q);
	appendStringInfo(&q, "SELECT %s FROM %s", ql_columns(conn, m, 0), table);
	if (*cond || after_id >= 0)
		appendStringInfoString(&q, " WHERE ");
	appendStringInfoString(&q, cond);
	if (after_id >= 0)
		appendStringInfo(&q, "%sid > " INT64_FORMAT, *cond ? " AND " : "", after_id);
	appendStringInfoString(&q, " ORDER BY id");
	return q.data;
}

/* One page of records into *page; the last record's (stamp text, id). */
static void
records_page(SyncConnection *conn, SyncMirror *m, const char *q, SyncPage *page,
			 bool *more, int64 *total, char **last_t, int64 *last_id, char **now_t)
{
	char	   *what = psprintf("querying %s with SuiteQL", m->remote_object);
	HttpRequest *req = ql_send(conn, q, NS_PAGE_LIMIT);
	SJson	   *items = ql_items(conn, what, req, more, total);
	int			n = sjson_array_length(items);
	int			i;

	/* SuiteQL's clock, when it is one */
	if (n > 0 && calibrate(conn, req, items))
		*now_t = item_text(sjson_array_get(items, 0), "sync_now");
	page->records = palloc0(sizeof(SyncRecord) * Max(1, n));
	page->nrecords = n;
	for (i = 0; i < n; i++)
	{
		char	   *st;

		record_from_item(conn, m, req, what, sjson_array_get(items, i), &page->records[i], &st);
		if (st)
		{
			/* in (stamp, id) order: the last is the keyset position */
			*last_t = st;
			*last_id = id_value(page->records[i].remote_id);
		}
	}
	fill_chunks(conn, m, page->records, n, what);
	if (*more && n == 0)
		*more = false;
}

/* Calibrate with a query of its own (SYSDATE on one row of the type's table). */
static void
calibrate_now(SyncConnection *conn, SyncMirror *m)
{
	char	   *table,
			   *cond;
	HttpRequest *req;
	SJson	   *items;

	ql_source(conn, m, &table, &cond);
	req = ql_send(conn, psprintf("SELECT TO_CHAR(SYSDATE, '" NS_FMT "') AS sync_now FROM %s%s%s",
								 table, *cond ? " WHERE " : "", cond), 1);
	items = ql_items(conn, psprintf("reading SuiteQL's clock for %s", m->remote_object), req, NULL, NULL);
	if (sjson_array_length(items) > 0)
		(void) calibrate(conn, req, items);
}

/* ---------------------------------------------------------------------
 * pull: deletes
 * --------------------------------------------------------------------- */

/*
 * SuiteQL's deletedrecord table (the Deleted Record search type's rows:
 * recordid, the type, deleteddate; no external ID) is not in every account
 * or role.  Is this answer NetSuite refusing the query (the table or a
 * column unknown, a permission missing)?  Then the mirror falls back to ID
 * reconciliation.  (A failure that is not a refusal — 5xx after the
 * retries, a timeout — is an error of this pull.)
 */
static bool
deleted_refused(const HttpRequest *req)
{
	return req->outcome == HTTP_DONE &&
		(req->status == 400 || req->status == 403 || req->status == 404);
}

/*
 * The type's rows of deletedrecord after (del_t, del_id): `type` holds the
 * record type (compared with UPPER(): its case varies); a custom record
 * type's rows also carry its script ID.
 */
static char *
deleted_query(SyncMirror *m, const char *del_t, int64 del_id)
{
	const char *when = "TO_CHAR(deleteddate, '" NS_FMT "')";
	char	   *type = lower_name(m->remote_object);
	StringInfoData q;

	initStringInfo(&q);
	appendStringInfo(&q, "SELECT recordid, %s AS sync_deleted, TO_CHAR(SYSDATE, '" NS_FMT "') AS sync_now "
					 "FROM deletedrecord WHERE ", when);
	if (strncmp(type, "customrecord", 12) == 0)
		appendStringInfo(&q, "(UPPER(type) = UPPER(%s) OR UPPER(scriptid) = UPPER(%s))",
						 ql_literal(type), ql_literal(type));
	else
		appendStringInfo(&q, "UPPER(type) = UPPER(%s)", ql_literal(type));
	if (del_t)
		appendStringInfo(&q, " AND (%s > %s OR (%s = %s AND recordid > " INT64_FORMAT "))",
						 when, ql_literal(del_t), when, ql_literal(del_t), del_id);
	appendStringInfo(&q, " ORDER BY %s, recordid", when);
	return q.data;
}

/* One page of deletedrecord into page->deleted_ids; false if the table is missing. */
static bool
deleted_page(SyncConnection *conn, SyncMirror *m, NsCursor *nc, SyncPage *page, bool *more)
{
	char	   *what = psprintf("reading deleted %s records with SuiteQL", m->remote_object);
	HttpRequest *req = ql_send(conn, deleted_query(m, nc->del_t, nc->del_id), NS_PAGE_LIMIT);
	SJson	   *items;
	int			n,
				i;

	if (deleted_refused(req))
	{
		char	   *why = ns_error_text(req, NULL, NULL);

		ereport(nc->deletes ? WARNING : LOG,
				(errmsg("sync: %s: NetSuite's deletedrecord table cannot be read (%s); "
						"remote deletes are found by reconciling all IDs",
						m->qualified_table, why ? why : "no reason given"),
				 errhint("Give the integration role the Deleted Records permission (Lists); see docs/netsuite.md.")));
		return false;
	}
	items = ql_items(conn, what, req, more, NULL);
	nc->deletes = "deletedrecord";
	n = sjson_array_length(items);
	page->deleted_ids = palloc(sizeof(char *) * Max(1, n));
	page->ndeleted_ids = 0;
	for (i = 0; i < n; i++)
	{
		SJson	   *it = sjson_array_get(items, i);
		const char *id = sjson_get_string(it, "recordid");
		const char *when = sjson_get_string(it, "sync_deleted");
		int64		secs;

		if (!ns_valid_remote_id(id))
			ns_bad_response(conn, what, req,
							psprintf("row %d's recordid %s is not a NetSuite internal ID", i + 1,
									 provider_quote_value(id)));
		if (when && !wall_seconds(when, &secs))
			ns_bad_response(conn, what, req,
							psprintf("row %d has an unreadable deleteddate %s", i + 1, provider_quote_value(when)));
		page->deleted_ids[page->ndeleted_ids++] = pstrdup(id);
		if (when)
		{
			nc->del_t = pstrdup(when);
			nc->del_id = id_value(id);
		}
	}
	if (n == 0)
		*more = false;
	return true;
}

/*
 * Every live ID, for reconciliation (deletes that no feed reports): SuiteQL
 * keyset on id, a thousand a request, into one page.
 */
static void
all_ids(SyncConnection *conn, SyncMirror *m, SyncPage *page)
{
	char	   *what = psprintf("listing %s IDs with SuiteQL", m->remote_object);
	char	   *table,
			   *cond;
	int64		after = -1;
	int			cap = 1024;
	bool		more = true;

	ql_source(conn, m, &table, &cond);
	page->deleted_ids = palloc(sizeof(char *) * cap);
	page->ndeleted_ids = 0;
	page->reconcile = true;
	while (more)
	{
		char	   *q = psprintf("SELECT id FROM %s WHERE %s%sid > " INT64_FORMAT " ORDER BY id",
								 table, cond, *cond ? " AND " : "", after);
		HttpRequest *req = ql_send(conn, q, NS_PAGE_LIMIT);
		SJson	   *items = ql_items(conn, what, req, &more, NULL);
		int			i;

		for (i = 0; i < sjson_array_length(items); i++)
		{
			const char *id = sjson_get_string(sjson_array_get(items, i), "id");

			if (!ns_valid_remote_id(id) || id_value(id) <= after)
				ns_bad_response(conn, what, req,
								psprintf("row %d's id %s is not a NetSuite internal ID in order",
										 i + 1, provider_quote_value(id)));
			if (page->ndeleted_ids == cap)
			{
				cap *= 2;
				page->deleted_ids = repalloc(page->deleted_ids, sizeof(char *) * cap);
			}
			page->deleted_ids[page->ndeleted_ids++] = pstrdup(id);
			after = id_value(id);
		}
		if (sjson_array_length(items) == 0)
			more = false;
		CHECK_FOR_INTERRUPTS();
	}
}

/* ---------------------------------------------------------------------
 * pull_page
 * --------------------------------------------------------------------- */

/*
 * Seconds between full ID reconciliations: the connection option
 * reconcile_interval (seconds), else daily.
 */
static int64
reconcile_every(SyncConnection *conn)
{
	SJson	   *v = sjson_get(conn->options, "reconcile_interval");

	return (sjson_type(v) == SJSON_INT && sjson_int(v, -1) >= 0) ? sjson_int(v, NS_RECONCILE_S) : NS_RECONCILE_S;
}

/* After a run of records: the delete checks, as further pages of this pull. */
static void
after_run(SyncConnection *conn, NsCursor *nc, SyncPage *page, int64 now_s)
{
	if (nc->deletes == NULL || strcmp(nc->deletes, "deletedrecord") == 0)
	{
		nc->phase = "deleted";
		page->more = true;
	}
	else if (now_s - nc->reconciled_at >= reconcile_every(conn))
	{
		nc->phase = "reconcile";
		page->more = true;
	}
	else
		nc->phase = "search";
}

/* A backfill page: records by ID, the ID order checked. */
static void
pull_backfill(SyncConnection *conn, SyncMirror *m, NsCursor *nc, SyncPage *page, int64 now_s)
{
	NsState    *st = ns_state(conn);
	bool		more = false;
	int64		total = -1;
	char	   *last_t = NULL,
			   *now_t = NULL;
	int64		last_id = 0;

	records_page(conn, m, backfill_query(conn, m, nc->after_id), page,
				 &more, &total, &last_t, &last_id, &now_t);
	if (nc->after_id < 0)
	{
		page->total = total;
		/* increments and deletes start at SuiteQL's clock now (its zone's text) */
		if (now_t)
			nc->since = nc->del_t = wall_shift(now_t, -NS_OVERLAP_S);
	}
	if (st->tz_known && !nc->tz_set)
	{
		nc->tz_set = true;
		nc->tz = st->tz_offset_s;
	}
	if (page->nrecords > 0)
	{
		int64		id = id_value(page->records[page->nrecords - 1].remote_id);

		if (id <= nc->after_id)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("connection \"%s\": NetSuite sent an unusable response while querying %s with SuiteQL: "
							"the records did not come in ID order (%s after " INT64_FORMAT ")",
							conn->name, m->remote_object, page->records[page->nrecords - 1].remote_id,
							nc->after_id),
					 errhint("Nothing was applied from this response; the next attempt asks again.")));
		nc->after_id = id;
	}
	if (more)
		page->more = true;
	else
	{
		nc->backfill = false;
		nc->after_id = -1;
		page->backfill_done = true;
		after_run(conn, nc, page, now_s);
	}
}

/*
 * An increment's page: the keyset on (lastmodifieddate text, id) from the
 * cursor minus the overlap, with the time-zone checks; a complete run moves
 * `since` on and hands over to the delete checks.
 */
static void
pull_increment(SyncConnection *conn, SyncMirror *m, NsCursor *nc, SyncPage *page, int64 now_s)
{
	NsState    *st = ns_state(conn);
	bool		start = nc->key_t == NULL && nc->from == NULL;
	bool		more = false;
	int64		total = -1;
	char	   *last_t = NULL,
			   *now_t = NULL;
	int64		last_id = 0;
	const char *from = nc->from;

	if (start && nc->since)
		from = wall_shift(nc->since, -NS_OVERLAP_S);
	records_page(conn, m, records_query(conn, m, from, nc->key_t, nc->key_id), page,
				 &more, &total, &last_t, &last_id, &now_t);

	/*
	 * Nothing new: SuiteQL's clock may have gone back (daylight saving
	 * time ended), showing new changes before `since`.  Calibrate anew
	 * when the last calibration is older than NS_CALIBRATE_S.
	 */
	if (start && nc->since && page->nrecords == 0 &&
		(!st->tz_known || GetCurrentTimestamp() - st->tz_at >= NS_CALIBRATE_S * USECS_PER_SEC))
		calibrate_now(conn, m);

	/*
	 * SuiteQL's clock went back since the cursor was written (daylight
	 * saving time ended; the user's zone changed): changes from now on
	 * show stamps up to that much before `since`.  The cursor's stamps
	 * move back by as much, for good (the records between are read
	 * again, harmlessly).  A clock gone forward needs nothing: moving
	 * the cursor on could skip what was changed before the change.
	 */
	if (start && nc->since && nc->tz_set && st->tz_known && st->tz_offset_s > nc->tz)
	{
		int64		back = st->tz_offset_s - nc->tz;

		ereport(LOG,
				(errmsg("sync: %s: NetSuite's SuiteQL clock went back by %d min (time zone); reading changes from %d min earlier",
						m->qualified_table, (int) (back / 60), (int) (back / 60))));
		nc->since = wall_shift(nc->since, -back);
		if (nc->del_t)
			nc->del_t = wall_shift(nc->del_t, -back);
		from = wall_shift(nc->since, -NS_OVERLAP_S);
		last_t = NULL;
		records_page(conn, m, records_query(conn, m, from, NULL, 0), page,
					 &more, &total, &last_t, &last_id, &now_t);
	}
	if ((start || !nc->tz_set) && st->tz_known)
	{
		nc->tz_set = true;
		nc->tz = st->tz_offset_s;
	}
	if (later(nc->run_t, last_t))
		nc->run_t = last_t;
	if (start && now_t)
		nc->run_clock = now_t;

	/*
	 * Never past SuiteQL's clock: a stamp in the future (clocks apart,
	 * imported data) must not make the changes after it look old.  Such
	 * a record is read again until its time has come.
	 */
	if (now_t && later(now_t, nc->run_t))
		nc->run_t = now_t;
	if (more && last_t)
	{
		nc->key_t = last_t;
		nc->key_id = last_id;
		nc->from = from;
		page->more = true;
	}
	else
	{
		/*
		 * The run is complete: increments start at its newest stamp, or
		 * at SuiteQL's clock when the run began if that is later:
		 * everything stamped before it was read by this run, and the next
		 * run still re-reads the overlap before it (records saved while
		 * this one was reading).  Without the clock, an idle mirror would
		 * read its last burst of changes again at every pull.
		 */
		if (later(nc->since, nc->run_t))
			nc->since = nc->run_t;
		if (later(nc->since, nc->run_clock))
			nc->since = nc->run_clock;
		nc->key_t = nc->from = nc->run_t = nc->run_clock = NULL;
		after_run(conn, nc, page, now_s);
	}
}

/* A page of SuiteQL's deletedrecord; where it is refused, ID reconciliation takes over. */
static void
pull_deleted(SyncConnection *conn, SyncMirror *m, NsCursor *nc, SyncPage *page, int64 now_s)
{
	bool		more = false;

	if (deleted_page(conn, m, nc, page, &more))
	{
		if (more)
			page->more = true;
		else if (now_s - nc->reconciled_at >= reconcile_every(conn))
		{
			nc->phase = "reconcile";
			page->more = true;
		}
		else
			nc->phase = "search";
	}
	else
	{
		/*
		 * No deletedrecord: ID reconciliation on its cadence — at once if
		 * the table worked until now (its feed has a gap).
		 */
		bool		had_feed = nc->deletes != NULL;

		nc->deletes = "reconcile";
		nc->del_t = NULL;
		if (had_feed || now_s - nc->reconciled_at >= reconcile_every(conn))
		{
			nc->phase = "reconcile";
			page->more = true;
		}
		else
			nc->phase = "search";
	}
}

/*
 * The page after `cursor`: the backfill, then runs of increments, each
 * followed by the delete checks (deletedrecord, or a full ID reconciliation
 * on its cadence); the phase is kept in the cursor.
 */
void
ns_pull_page(SyncConnection *conn, SyncMirror *m, SJson *cursor, SyncPage *page)
{
	NsCursor	nc;
	int64		now_s = (int64) time(NULL);

	conn_ensure_auth(conn);
	cursor_read(cursor, &nc);
	if (cursor == NULL)
		nc.reconciled_at = now_s;

	if (nc.backfill)
		pull_backfill(conn, m, &nc, page, now_s);
	else if (nc.phase == NULL || strcmp(nc.phase, "search") == 0)
		pull_increment(conn, m, &nc, page, now_s);
	else if (strcmp(nc.phase, "deleted") == 0)
		pull_deleted(conn, m, &nc, page, now_s);
	else
	{
		all_ids(conn, m, page);
		nc.reconciled_at = now_s;
		nc.phase = "search";
		/* probe deletedrecord again at the next run: a permission may have been granted */
		if (nc.deletes && strcmp(nc.deletes, "reconcile") == 0)
			nc.deletes = NULL;
	}
	page->cursor = cursor_write(&nc);
}

/* ---------------------------------------------------------------------
 * fetch (sync.retry): the same query by ID
 * --------------------------------------------------------------------- */

void
ns_fetch(SyncConnection *conn, SyncMirror *m, char **ids, int n, SyncPage *page)
{
	char	   *what = psprintf("re-reading %s records with SuiteQL", m->remote_object);
	char	   *table,
			   *cond;
	int			start,
				i;

	conn_ensure_auth(conn);
	ql_source(conn, m, &table, &cond);
	page->records = palloc0(sizeof(SyncRecord) * Max(1, n));
	page->nrecords = 0;
	page->deleted_ids = palloc(sizeof(char *) * Max(1, n));
	page->ndeleted_ids = 0;
	page->total = -1;
	for (start = 0; start < n; start += NS_IN_MAX)
	{
		int			cnt = Min(NS_IN_MAX, n - start);
		bool	   *found = palloc0(sizeof(bool) * cnt);
		StringInfoData q;
		HttpRequest *req;
		SJson	   *items;
		int			first;

		initStringInfo(&q);
		appendStringInfo(&q, "SELECT %s FROM %s WHERE %s%sid IN (", ql_columns(conn, m, 0), table,
						 cond, *cond ? " AND " : "");
		for (i = 0; i < cnt; i++)
		{
			if (!ns_valid_remote_id(ids[start + i]))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("connection \"%s\": %s is not a NetSuite internal ID", conn->name,
								provider_quote_value(ids[start + i]))));
			appendStringInfo(&q, "%s%s", i ? ", " : "", ids[start + i]);
		}
		appendStringInfoString(&q, ") ORDER BY id");
		req = ql_send(conn, q.data, NS_PAGE_LIMIT);
		items = ql_items(conn, what, req, NULL, NULL);
		first = page->nrecords;
		if (sjson_array_length(items) > 0)
			(void) calibrate(conn, req, items);
		for (i = 0; i < sjson_array_length(items); i++)
		{
			SyncRecord *rec = &page->records[page->nrecords];
			char	   *st;
			int			x;

			record_from_item(conn, m, req, what, sjson_array_get(items, i), rec, &st);
			for (x = 0; x < cnt; x++)
				if (!found[x] && strcmp(ids[start + x], rec->remote_id) == 0)
					break;
			if (x == cnt)
				ns_bad_response(conn, what, req,
								psprintf("record %s was not asked for (or came twice)", rec->remote_id));
			found[x] = true;
			page->nrecords++;
		}
		fill_chunks(conn, m, page->records + first, page->nrecords - first, what);
		/* IDs NetSuite no longer has */
		for (i = 0; i < cnt; i++)
			if (!found[i])
				page->deleted_ids[page->ndeleted_ids++] = pstrdup(ids[start + i]);
		CHECK_FOR_INTERRUPTS();
	}
}
