/*
 * netsuite_push.c — writing NetSuite records through the REST record API.
 *
 * NetSuite takes one record per request (the batch collection endpoints
 * are asynchronous jobs, see below), so throughput is requests in flight
 * divided by latency: every call keeps the connection's max_in_flight
 * requests going (conn_send pipelines them on one libcurl multi handle),
 * never more.  The account's concurrency pool is shared with every other
 * integration and the UI; a 429 CONCURRENCY_LIMIT_EXCEEDED (no Retry-After)
 * makes netsuite.c's throttle_ms keep one request fewer in flight and hold
 * the connection for a backoff, and the refused records are retried from
 * the outbox.
 *
 *   create, idempotency field   PUT    /record/v1/{type}/eid:{key}   204 + Location
 *   create                      POST   /record/v1/{type}             204 + Location
 *   update                      PATCH  /record/v1/{type}/{id}        204
 *   delete                      DELETE /record/v1/{type}/{id}        204 (404: gone already)
 *
 * Only the fields that changed are sent (null clears a field).  A refusal
 * (o:errorDetails: detail, o:errorCode, o:errorPath) parks its record alone;
 * 429, 5xx and transport failures are retried.
 *
 * Asynchronous batches (article_0127092747), with the mirror option
 * "batch": true: updates go as PATCH of a collection
 * (application/vnd.oracle.resource+json; type=collection, {"items":
 * [{"id", fields...}]}), deletes as DELETE ?ids=1,2,3, up to 100 records a
 * request with Prefer: respond-async; the 202's Location names a job,
 * polled at /async/v1/job/{id} until it completes.  A job that succeeded
 * whole costs no read per record; the records of one that did not get
 * their task's result (.../task/{n}/result), which is what the synchronous
 * request would have answered.  Creates are always single requests: each
 * needs its internal ID, from its own Location.  (The SQL surface of this
 * version does not know the option yet: sync._check_mirror_options refuses
 * it until its key is added.)
 */
#include "postgres.h"

#include <ctype.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "netsuite.h"

/*
 * Records handed to one ns_push call per request in flight (push.c gives
 * batch_max x max_in_flight records a call).  NetSuite takes one record a
 * request; the larger call only lets the pipeline run on without waiting
 * for a wave's slowest request.
 */
#define NS_PUSH_PER_SLOT 50

/*
 * Requests given to conn_send at a time, in waves of max_in_flight: one
 * wave first, doubling while NetSuite takes them all (each slice's end
 * drains the pipeline once), one again after a 429.
 */
#define NS_SLICE_WAVES_MAX 32

/* The field NetSuite upserts by (PUT .../eid:{value}). */
#define NS_EXTERNAL_ID "externalId"

/* Asynchronous batches: records a request, and the longest wait for a job. */
#define NS_BATCH_MAX 100
#define NS_JOB_WAIT_MS 30000
#define NS_CT_COLLECTION "application/vnd.oracle.resource+json; type=collection"

/* ---------------------------------------------------------------------
 * options
 * --------------------------------------------------------------------- */

/*
 * The mirror options that concern writes (called by ns_check_mirror): an
 * idempotency field can only be NetSuite's external ID, the one field a
 * record can be upserted by.
 */
void
ns_check_push_options(SyncConnection *conn, SyncMirror *m)
{
	const char *idem = sjson_get_string(m->options, "idempotency_field");

	if (sjson_has_key(m->options, "batch") && sjson_type(sjson_get(m->options, "batch")) != SJSON_BOOL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid mirror option \"batch\" for NetSuite %s: must be true or false",
						m->remote_object),
				 errhint("true sends updates and deletes as asynchronous batch jobs of up to %d records.",
						 NS_BATCH_MAX)));

	if (sjson_get(m->options, "idempotency_field") != NULL &&
		(idem == NULL || strcmp(idem, NS_EXTERNAL_ID) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid mirror option \"idempotency_field\" for NetSuite %s: %s",
						m->remote_object,
						idem ? provider_quote_value(idem) : "not a string"),
				 errdetail("NetSuite creates a record exactly once only by its external ID "
						   "(PUT .../eid:{key}); no other field can be upserted by."),
				 errhint("Use \"idempotency_field\": \"externalId\".")));
}

static bool batch_mode(SyncMirror *m);

int
ns_batch_max(SyncConnection *conn, SyncMirror *m, char op)
{
	/* batch mode: a job of NS_BATCH_MAX updates or deletes per request in flight */
	if (op != 'I' && batch_mode(m))
		return NS_BATCH_MAX;
	return NS_PUSH_PER_SLOT;
}

/* ---------------------------------------------------------------------
 * values
 * --------------------------------------------------------------------- */

/* An external ID NetSuite can parse in a URL: letters, digits, '_' and '-'. */
static bool
valid_external_id(const char *s)
{
	int			n;

	if (s == NULL)
		return false;
	for (n = 0; s[n]; n++)
		if (!isalnum((unsigned char) s[n]) && s[n] != '_' && s[n] != '-')
			return false;
	return n > 0 && n <= 255;
}

/* A reference target's internal ID: digits, negative for some (accounts). */
static bool
valid_reference_id(const char *s)
{
	if (s == NULL)
		return false;
	if (*s == '-')
		s++;
	return ns_valid_remote_id(s);
}

static bool
numeric_type(const char *t)
{
	return strcmp(t, "numeric") == 0 || strcmp(t, "bigint") == 0 ||
		strcmp(t, "integer") == 0 || strcmp(t, "smallint") == 0 ||
		strcmp(t, "double precision") == 0 || strcmp(t, "real") == 0;
}

/* timestamptz text (any offset) -> 2026-05-06T11:56:44Z; NULL if NetSuite cannot hold it */
static char *
iso_utc(const char *s)
{
	TimestampTz ts;
	struct pg_tm tm;
	fsec_t		fsec;

	/* (an adopted table's column may be of another type of the category) */
	if (!provider_valid_stamp(s))
		return NULL;
	ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
												 ObjectIdGetDatum(InvalidOid),
												 Int32GetDatum(-1)));
	if (TIMESTAMP_NOT_FINITE(ts) || timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0 ||
		tm.tm_year < 1 || tm.tm_year > 9999)
		return NULL;
	/* NetSuite keeps datetimes to the second at most */
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * A JSON scalar or tree from to_json().  Wrapped in an array: json-c takes
 * a bare number at the end of the input for an incomplete one.
 */
static SJson *
parse_value(const char *json, char **err)
{
	char	   *wrapped = psprintf("[%s]", json);

	return sjson_array_get(sjson_parse(wrapped, strlen(wrapped), err), 0);
}

/*
 * Put one outbound value (JSON text from to_json(), NULL for SQL NULL) into
 * a record body as NetSuite takes it: null clears; a reference is
 * {"id": "<internal id>"}; datetimes ISO 8601 UTC; dates YYYY-MM-DD;
 * numbers and booleans as JSON.  Returns NULL, or why the value cannot be
 * sent.
 */
static char *
put_value(SJson *rec, const SyncField *f, const char *json)
{
	char	   *err;
	SJson	   *v;
	SJsonType	t;
	const char *lt = f->local_type ? f->local_type : "text";

	if (json == NULL)
	{
		sjson_add_null(rec, f->remote_name);
		return NULL;
	}
	err = NULL;
	v = parse_value(json, &err);
	if (v == NULL && err != NULL)
		return psprintf("not JSON (%s)", err);
	t = sjson_type(v);
	if (f->reference_to != NULL)
	{
		char	   *id = (t == SJSON_INT || t == SJSON_STRING) ? sjson_scalar_text(v) : NULL;

		if (!valid_reference_id(id))
			return psprintf("%s is not the internal ID of a NetSuite %s",
							provider_quote_value(id ? id : json), f->reference_to);
		sjson_add_string(sjson_add_object(rec, f->remote_name), "id", id);
		return NULL;
	}
	if (strcmp(lt, "timestamptz") == 0 || strcmp(lt, "timestamp with time zone") == 0)
	{
		char	   *iso = sjson_string(v) ? iso_utc(sjson_string(v)) : NULL;

		if (iso == NULL)
			return psprintf("%s is not a date and time NetSuite can hold (years 1 to 9999)",
							provider_quote_value(json));
		sjson_add_string(rec, f->remote_name, iso);
		return NULL;
	}
	if (strcmp(lt, "date") == 0)
	{
		const char *d = sjson_string(v);

		if (d == NULL || strlen(d) != 10 || !provider_valid_stamp(psprintf("%sT00:00:00Z", d)))
			return psprintf("%s is not a date NetSuite can hold (years 1 to 9999)",
							provider_quote_value(json));
		sjson_add_string(rec, f->remote_name, d);
		return NULL;
	}
	if (t == SJSON_INT || t == SJSON_DOUBLE)
	{
		/* the digits as PostgreSQL wrote them: no rounding through a double */
		sjson_add_number_text(rec, f->remote_name, json);
		return NULL;
	}
	if (numeric_type(lt))
		return psprintf("%s is not a number NetSuite can hold", provider_quote_value(json));
	/* strings, booleans; objects and arrays (sublists, subrecords) as they are */
	sjson_add_copy(rec, f->remote_name, v);
	return NULL;
}

/* ---------------------------------------------------------------------
 * push
 * --------------------------------------------------------------------- */

typedef enum NsWrite
{
	NS_NONE = 0,				/* nothing to send (settled already) */
	NS_POST,
	NS_PUT,
	NS_PATCH,
	NS_DELETE
} NsWrite;

static void
reject(SyncPushItem *it, const char *code, char *msg, const char *fields)
{
	it->result = PUSH_REJECTED;
	it->error_code = (char *) code;
	it->error_message = msg;
	it->error_fields = fields ? pstrdup(fields) : NULL;
}

/* The external ID a create is upserted by: the row's own, else the engine's key. */
static char *
upsert_key(SyncMirror *m, SyncPushItem *it, int idem_k)
{
	if (idem_k >= 0 && it->values[idem_k] != NULL)
	{
		char	   *err;
		SJson	   *v = parse_value(it->values[idem_k], &err);

		if (sjson_string(v) != NULL)
			return pstrdup(sjson_string(v));
	}
	return it->idempotency_key;
}

/* Updates and deletes name their record by the internal ID from the user's table. */
static bool
item_id_ok(SyncMirror *m, SyncPushItem *it)
{
	if (it->op == 'I' || ns_valid_remote_id(it->remote_id))
		return true;
	/* it goes into the URL: a comma or a slash must never widen a request */
	reject(it, "INVALID_REMOTE_ID",
		   psprintf("column \"%s\" holds %s, which is not a NetSuite internal ID (digits only); fix the column's value, then sync.retry()",
					m->remote_id_column, provider_quote_value(it->remote_id)), NULL);
	return false;
}

/*
 * The record body of a create or an update: the fields to send, as
 * NetSuite takes them.  NULL when the item is settled here (a value that
 * cannot be sent: rejected; an update with nothing to send: done).
 */
static SJson *
item_body(SyncMirror *m, SyncPushItem *it, const char *key)
{
	SJson	   *body = sjson_new_object();
	int			nsent = 0,
				k;

	for (k = 0; k < m->nfields; k++)
	{
		const SyncField *f = &m->fields[k];
		char	   *why;

		if (!it->send[k] || f->role != FIELD_DATA)
			continue;
		/* an upsert's external ID is the URL's */
		if (key != NULL && strcmp(f->remote_name, NS_EXTERNAL_ID) == 0)
			continue;

		/*
		 * A create leaves NULL columns out, so that NetSuite's defaults
		 * apply (subsidiary, currency, status, the form's); an explicit
		 * null would clear them and fail where they are required.
		 */
		if (it->op == 'I' && it->values[k] == NULL)
			continue;
		why = put_value(body, f, it->values[k]);
		if (why != NULL)
		{
			reject(it, "INVALID_VALUE",
				   psprintf("column \"%s\" (NetSuite field %s): %s", m->columns[k], f->remote_name, why),
				   f->remote_name);
			return NULL;
		}
		nsent++;
	}
	if (it->op == 'U' && nsent == 0)
	{
		it->result = PUSH_OK;	/* nothing NetSuite holds changed */
		return NULL;
	}
	return body;
}

/*
 * The request for one item, or NULL when the item is settled without one
 * (rejected here, or an update with nothing to send).
 */
static HttpRequest *
item_request(SyncConnection *conn, SyncMirror *m, SyncPushItem *it, const char *idem, int idem_k,
			 NsWrite *kind, char **upsert)
{
	const char *type = http_url_encode(m->remote_object);
	SJson	   *body;
	char	   *url;
	const char *method;
	char	   *key = NULL;

	*kind = NS_NONE;
	*upsert = NULL;
	if (!item_id_ok(m, it))
		return NULL;
	if (it->op == 'D')
	{
		*kind = NS_DELETE;
		return ns_request(conn, "DELETE", ns_url(conn, "/record/v1/%s/%s", type, it->remote_id),
						  NULL, NULL);
	}

	if (it->op == 'I' && idem != NULL)
	{
		if (strcmp(idem, NS_EXTERNAL_ID) != 0)
		{
			reject(it, "INVALID_OPTION",
				   psprintf("the mirror's idempotency_field is \"%s\", but NetSuite creates exactly once only by \"externalId\"; change the mirror option, then sync.retry()",
							idem), NULL);
			return NULL;
		}

		/*
		 * (No key at all: an update of a row that never reached NetSuite,
		 * turned into a create by the engine, which assigns keys to inserts
		 * only.  It is POSTed.)
		 */
		key = upsert_key(m, it, idem_k);
		if (key != NULL && !valid_external_id(key))
		{
			reject(it, "INVALID_EXTERNAL_ID",
				   idem_k >= 0 && it->values[idem_k] != NULL ?
				   psprintf("column \"%s\" holds %s, which cannot be a NetSuite external ID (letters, digits, '_' and '-' only); fix the column's value, then sync.retry()",
							m->columns[idem_k], provider_quote_value(key)) :
				   psprintf("the idempotency key %s cannot be a NetSuite external ID (letters, digits, '_' and '-' only)",
							provider_quote_value(key)),
				   NS_EXTERNAL_ID);
			return NULL;
		}
	}

	body = item_body(m, it, key);
	if (body == NULL)
		return NULL;
	*upsert = key;
	if (key != NULL)
	{
		*kind = NS_PUT;
		method = "PUT";
		url = ns_url(conn, "/record/v1/%s/eid:%s", type, http_url_encode(key));
	}
	else if (it->op == 'I')
	{
		*kind = NS_POST;
		method = "POST";
		url = ns_url(conn, "/record/v1/%s", type);
	}
	else
	{
		*kind = NS_PATCH;
		method = "PATCH";
		url = ns_url(conn, "/record/v1/%s/%s", type, it->remote_id);
	}
	return ns_request(conn, method, url, sjson_serialize(body), "application/json");
}

/*
 * The internal ID in a create's Location
 * (https://…/services/rest/record/v1/customer/1234); NULL if there is none
 * or it is not an internal ID.
 */
static char *
location_id(const HttpRequest *req, const char **raw)
{
	const char *loc = http_response_header(req, "location");
	const char *end,
			   *start;
	char	   *id;

	*raw = loc;
	if (loc == NULL)
		return NULL;
	end = loc + strcspn(loc, "?#");
	while (end > loc && (end[-1] == '/' || isspace((unsigned char) end[-1])))
		end--;
	for (start = end; start > loc && start[-1] != '/'; start--)
		;
	id = pnstrdup(start, end - start);
	return ns_valid_remote_id(id) ? id : NULL;
}

/*
 * What NetSuite said about one item's request.
 *
 * new_stamp stays NULL.  NetSuite answers a write with 204 and no body, so
 * the record's new lastModifiedDate would cost a read per record: a GET
 * doubles the requests in the account's concurrency pool (halving the push
 * rate), and a SuiteQL read shows datetimes in the user's time zone.  The
 * engine does not need it: echo suppression compares a pulled record's
 * stamp with the time of our journal row, not with the row's stamp column,
 * and the apply compares data columns only.  The stamp column keeps its
 * last pulled value (NULL for a record created here) until the record
 * changes remotely.  Salesforce's push does the same.
 */
static bool
item_result(SyncConnection *conn, SyncMirror *m, SyncPushItem *it, NsWrite kind, HttpRequest *req)
{
	char	   *code = NULL;
	char	   *path = NULL;
	char	   *msg;
	const char *warn;

	if (req->outcome == HTTP_DONE && req->status >= 200 && req->status < 300)
	{
		SJson	   *j = provider_response_json(req);

		/* a 2xx that carries an error (a proxy, a hostile remote) proves nothing */
		if (sjson_get(j, "o:errorDetails") != NULL)
		{
			it->result = PUSH_RETRY;
			it->error_code = "BAD_RESPONSE";
			it->error_message = psprintf("NetSuite answered HTTP %ld with an error body: %s", req->status,
										 ns_error_text(req, NULL, NULL));
			return false;
		}
		it->result = PUSH_OK;
		if (kind == NS_POST || kind == NS_PUT)
		{
			const char *raw;
			char	   *id = location_id(req, &raw);

			if (id != NULL)
				it->new_remote_id = id;
			else if (kind == NS_PUT)
			{
				/* read by the external ID (read_ids); else sent again: an upsert is idempotent */
				it->result = PUSH_RETRY;
				it->error_code = "NO_LOCATION";
				it->error_message = psprintf("NetSuite accepted the upsert (HTTP %ld) but its Location %s names no internal ID, nor could the record be read by its external ID; it will be sent again",
											 req->status, provider_quote_value(raw));
				return true;
			}
			else
			{
				/* it may exist remotely: parked, never created again */
				reject(it, raw ? "INVALID_REMOTE_ID" : "NO_LOCATION",
					   psprintf("NetSuite accepted the create (HTTP %ld) but its Location %s names no internal ID; the record may exist remotely: "
								"find it, put its internal ID into column \"%s\", then sync.retry()",
								req->status, provider_quote_value(raw), m->remote_id_column), NULL);
				return false;
			}
		}
		/* fields NetSuite ignored (unknown or read-only) go into the journal */
		warn = http_response_header(req, "x-netsuite-propertyvalidation");
		if (warn != NULL)
			it->error_message = psprintf("NetSuite ignored: %s", warn);
		return false;
	}

	msg = ns_error_text(req, &code, &path);
	if (kind == NS_DELETE && req->outcome == HTTP_DONE && req->status == 404)
	{
		it->result = PUSH_OK;	/* already gone: the goal is reached */
		it->error_message = psprintf("already deleted remotely (%s)", code ? code : "HTTP 404");
		return false;
	}
	it->error_code = code ? code :
		(req->outcome == HTTP_DONE ? psprintf("HTTP_%ld", req->status) : "TRANSPORT");
	it->error_message = req->outcome != HTTP_DONE ? pstrdup(http_outcome_text(req)) :
		msg ? msg : psprintf("NetSuite answered HTTP %ld without a message", req->status);
	it->error_fields = path;
	if (conn_transient(req))
	{
		/*
		 * 429: netsuite.c's throttle_ms has lowered the connection's
		 * concurrency and holds its requests; the entry waits for that
		 * hold (push.c) or its own backoff, whichever is longer.
		 */
		it->result = PUSH_RETRY;
		it->retry_after_s = conn_retry_after(req);
	}
	else if (req->outcome == HTTP_DONE && req->status == 401)
	{
		/* refused again after a fresh signature: the credentials; not the record's fault */
		it->result = PUSH_RETRY;
		it->retry_after_s = 60;
	}
	else
		it->result = PUSH_REJECTED;
	return false;
}

/*
 * Upserts NetSuite applied without a usable Location (documented for PUT
 * only on creates): their internal IDs, read by external ID.  An item whose
 * record cannot be read stays PUSH_RETRY, to be sent again.
 */
static void
read_ids(SyncConnection *conn, SyncMirror *m, SyncPushItem **its, char **keys, int n)
{
	HttpRequest **reqs = palloc(sizeof(HttpRequest *) * Max(1, n));
	int			i;

	for (i = 0; i < n; i++)
		reqs[i] = ns_request(conn, "GET", ns_url(conn, "/record/v1/%s/eid:%s?fields=%s",
												 http_url_encode(m->remote_object),
												 http_url_encode(keys[i]), NS_EXTERNAL_ID),
							 NULL, NULL);
	conn_send(conn, reqs, n);
	for (i = 0; i < n; i++)
	{
		SJson	   *j = provider_response_json(reqs[i]);
		char	   *id = sjson_scalar_text(sjson_get(j, "id"));

		if (reqs[i]->outcome != HTTP_DONE || reqs[i]->status != 200 || !ns_valid_remote_id(id))
			continue;
		its[i]->result = PUSH_OK;
		its[i]->new_remote_id = id;
		its[i]->error_code = NULL;
		its[i]->error_message = NULL;
	}
}

/* One request per record, up to max_in_flight at a time. */
static void
push_single(SyncConnection *conn, SyncMirror *m, SyncPushItem **items, int n)
{
	const char *idem = sjson_get_string(m->options, "idempotency_field");
	int			idem_k = -1;
	HttpRequest **reqs = palloc(sizeof(HttpRequest *) * Max(1, n));
	NsWrite    *kind = palloc(sizeof(NsWrite) * Max(1, n));
	int		   *item = palloc(sizeof(int) * Max(1, n));
	char	  **keys = palloc(sizeof(char *) * Max(1, n));
	SyncPushItem **unread = palloc(sizeof(SyncPushItem *) * Max(1, n));
	char	  **unread_keys = palloc(sizeof(char *) * Max(1, n));
	int			nreq = 0,
				start,
				i,
				k;
	int			waves = 1;

	for (k = 0; idem && k < m->nfields; k++)
		if (strcmp(m->fields[k].remote_name, idem) == 0)
			idem_k = k;

	for (i = 0; i < n; i++)
	{
		HttpRequest *req;

		req = item_request(conn, m, items[i], idem, idem_k, &kind[nreq], &keys[nreq]);
		if (req == NULL)
			continue;
		reqs[nreq] = req;
		item[nreq++] = i;
	}

	/*
	 * In slices: the first one wave at the current concurrency (a probe of
	 * the account's pool), then twice as many waves after each slice
	 * NetSuite took whole.  After a 429 (netsuite.c's throttle_ms has
	 * lowered the concurrency and holds the connection) the next slice is
	 * one wave again, at the lowered concurrency, once the hold is over; a
	 * hold past the batch's lease leaves the rest unsent (HTTP_PENDING), to
	 * be retried from the outbox.
	 */
	for (start = 0; start < nreq;)
	{
		int			cnt = Min(nreq - start, Max(1, conn->max_in_flight) * waves);
		bool		throttled = false;
		int			nunread = 0;

		conn_send(conn, reqs + start, cnt);
		for (i = start; i < start + cnt; i++)
		{
			if (item_result(conn, m, items[item[i]], kind[i], reqs[i]))
			{
				unread[nunread] = items[item[i]];
				unread_keys[nunread++] = keys[i];
			}
			throttled |= reqs[i]->outcome == HTTP_DONE && reqs[i]->status == 429;
		}
		if (nunread > 0)
			read_ids(conn, m, unread, unread_keys, nunread);
		if (throttled)
			waves = 1;
		else
		{
			/* the pool has room: backoffs start over, concurrency recovers */
			for (i = start; i < start + cnt; i++)
				if (reqs[i]->outcome == HTTP_DONE)
					ns_note_success(conn);
			waves = Min(waves * 2, NS_SLICE_WAVES_MAX);
		}
		start += cnt;
		CHECK_FOR_INTERRUPTS();
	}
}

/* ---------------------------------------------------------------------
 * asynchronous batches (updates and deletes)
 * --------------------------------------------------------------------- */

/* One batch request: up to NS_BATCH_MAX items, then its job. */
typedef struct NsJob
{
	SyncPushItem **items;
	SJson	  **bodies;			/* updates: each record's fields */
	int			n;
	HttpRequest *submit;
	char	   *job_id;			/* digits, from the 202's Location */
	bool		completed;
	bool		succeeded;		/* progress "succeeded": every task did */
	HttpRequest *poll;
	HttpRequest **results;		/* per item: its task's result */
} NsJob;

/* The mirror option "batch": updates and deletes as asynchronous batch jobs. */
static bool
batch_mode(SyncMirror *m)
{
	return sjson_bool(sjson_get(m->options, "batch"), false);
}

/* The submission of one batch: PATCH of a collection, or DELETE ?ids=. */
static HttpRequest *
batch_request(SyncConnection *conn, SyncMirror *m, NsJob *job, char op)
{
	const char *type = http_url_encode(m->remote_object);
	HttpRequest *req;
	int			i;

	if (op == 'D')
	{
		StringInfoData ids;

		initStringInfo(&ids);
		for (i = 0; i < job->n; i++)
			appendStringInfo(&ids, "%s%s", i ? "," : "", job->items[i]->remote_id);
		req = ns_request(conn, "DELETE", ns_url(conn, "/record/v1/%s?ids=%s", type, ids.data),
						 NULL, NULL);
	}
	else
	{
		SJson	   *body = sjson_new_object();
		SJson	   *arr = sjson_add_array(body, "items");

		for (i = 0; i < job->n; i++)
		{
			SJson	   *rec = job->bodies[i];

			sjson_add_string(rec, "id", job->items[i]->remote_id);
			sjson_append_copy(arr, rec);
		}
		req = ns_request(conn, "PATCH", ns_url(conn, "/record/v1/%s", type),
						 sjson_serialize(body), NS_CT_COLLECTION);
	}
	http_add_header(req, "Prefer", "respond-async");
	return req;
}

/* Every item of a job gets this outcome of a request about the whole job. */
static void
job_items_result(SyncConnection *conn, SyncMirror *m, NsJob *job, NsWrite kind, HttpRequest *req)
{
	int			i;

	for (i = 0; i < job->n; i++)
		(void) item_result(conn, m, job->items[i], kind, req);
}

static void
job_items_retry(NsJob *job, const char *code, char *msg)
{
	int			i;

	for (i = 0; i < job->n; i++)
	{
		job->items[i]->result = PUSH_RETRY;
		job->items[i]->error_code = (char *) code;
		job->items[i]->error_message = msg;
	}
}

/*
 * Wait for the jobs to complete: poll each pending job (GET
 * /async/v1/job/{id}), sleeping between rounds.  A job still pending after
 * NS_JOB_WAIT_MS, or that cannot be read, leaves its items to be sent again
 * (an update or a delete sent twice does no harm).
 */
static void
poll_jobs(SyncConnection *conn, NsJob **jobs, int njobs)
{
	TimestampTz began = GetCurrentTimestamp();
	HttpRequest **reqs = palloc(sizeof(HttpRequest *) * Max(1, njobs));
	long		nap = 100;

	for (;;)
	{
		int			npending = 0,
					i;

		for (i = 0; i < njobs; i++)
			if (!jobs[i]->completed && jobs[i]->job_id != NULL)
			{
				jobs[i]->poll = ns_request(conn, "GET", ns_url(conn, "/async/v1/job/%s", jobs[i]->job_id),
										   NULL, NULL);
				reqs[npending++] = jobs[i]->poll;
			}
		if (npending == 0)
			return;
		conn_send(conn, reqs, npending);
		for (i = 0; i < njobs; i++)
		{
			NsJob	   *job = jobs[i];
			HttpRequest *req = job->poll;
			SJson	   *j;
			const char *progress;

			if (job->completed || job->job_id == NULL)
				continue;
			if (req->outcome == HTTP_DONE && req->status == 200)
			{
				j = provider_response_json(req);
				progress = sjson_get_string(j, "progress");
				if (sjson_bool(sjson_get(j, "completed"), false))
				{
					job->completed = true;
					job->succeeded = progress != NULL && strcmp(progress, "succeeded") == 0;
				}
			}
			else if (!conn_transient(req))
			{
				job_items_retry(job, "JOB_UNREADABLE",
								psprintf("NetSuite accepted the batch as job %s, but reading the job failed (%s); the records will be sent again",
										 job->job_id, req->outcome == HTTP_DONE ?
										 psprintf("HTTP %ld: %s", req->status, ns_error_text(req, NULL, NULL) ?
												  ns_error_text(req, NULL, NULL) : "no message") :
										 http_outcome_text(req)));
				job->job_id = NULL;
			}
		}
		if (TimestampDifferenceExceeds(began, GetCurrentTimestamp(), NS_JOB_WAIT_MS))
		{
			for (i = 0; i < njobs; i++)
				if (!jobs[i]->completed && jobs[i]->job_id != NULL)
				{
					job_items_retry(jobs[i], "JOB_PENDING",
									psprintf("NetSuite job %s had not finished after %d s; the records will be sent again",
											 jobs[i]->job_id, NS_JOB_WAIT_MS / 1000));
					jobs[i]->job_id = NULL;
				}
			return;
		}
		conn_sleep_ms(nap);
		nap = Min(nap * 2, 2000);
	}
}

/*
 * The outcome of each record of a job that did not succeed whole: its
 * task's result (GET .../task/{n}/result, tasks in the order of the items)
 * is what the synchronous request would have answered.
 */
static void
job_results(SyncConnection *conn, SyncMirror *m, NsJob **jobs, int njobs, NsWrite kind)
{
	HttpRequest **lists = palloc(sizeof(HttpRequest *) * Max(1, njobs));
	NsJob	  **failed = palloc(sizeof(NsJob *) * Max(1, njobs));
	HttpRequest **reqs;
	int			nfailed = 0,
				nreqs = 0,
				total = 0,
				i,
				t;

	for (i = 0; i < njobs; i++)
		if (jobs[i]->completed && jobs[i]->job_id != NULL && !jobs[i]->succeeded)
		{
			lists[nfailed] = ns_request(conn, "GET", ns_url(conn, "/async/v1/job/%s/task", jobs[i]->job_id),
										NULL, NULL);
			failed[nfailed++] = jobs[i];
			total += jobs[i]->n;
		}
	if (nfailed == 0)
		return;
	conn_send(conn, lists, nfailed);
	reqs = palloc(sizeof(HttpRequest *) * Max(1, total));
	for (i = 0; i < nfailed; i++)
	{
		NsJob	   *job = failed[i];
		SJson	   *tasks = sjson_get(provider_response_json(lists[i]), "items");

		if (lists[i]->outcome != HTTP_DONE || lists[i]->status != 200 ||
			sjson_array_length(tasks) != job->n)
		{
			job_items_retry(job, "JOB_TASKS",
							psprintf("NetSuite job %s did not succeed whole, and its tasks could not be matched to its %d records; they will be sent again",
									 job->job_id, job->n));
			job->job_id = NULL;
			continue;
		}
		job->results = palloc0(sizeof(HttpRequest *) * job->n);
		for (t = 0; t < job->n; t++)
		{
			char	   *tid = sjson_scalar_text(sjson_get(sjson_array_get(tasks, t), "id"));

			if (!ns_valid_remote_id(tid))
				continue;		/* no result: retried below */
			job->results[t] = ns_request(conn, "GET", ns_url(conn, "/async/v1/job/%s/task/%s/result",
															 job->job_id, tid), NULL, NULL);
			reqs[nreqs++] = job->results[t];
		}
	}
	conn_send(conn, reqs, nreqs);
	for (i = 0; i < nfailed; i++)
	{
		NsJob	   *job = failed[i];

		if (job->job_id == NULL)
			continue;
		for (t = 0; t < job->n; t++)
		{
			SyncPushItem *it = job->items[t];
			HttpRequest *req = job->results[t];

			if (req == NULL)
			{
				it->result = PUSH_RETRY;
				it->error_code = "JOB_TASKS";
				it->error_message = psprintf("NetSuite job %s listed a task without an ID; the record will be sent again",
											 job->job_id);
			}
			else if (req->outcome == HTTP_DONE && req->status >= 200 && req->status < 300 &&
					 sjson_get(provider_response_json(req), "o:errorDetails") != NULL)
			{
				/* a task's failure, should NetSuite serve it with a 2xx */
				char	   *code = NULL,
						   *path = NULL;
				char	   *msg = ns_error_text(req, &code, &path);

				reject(it, code ? code : "REJECTED", msg ? msg : "rejected without a message", path);
			}
			else
				(void) item_result(conn, m, it, kind, req);
		}
	}
}

/*
 * Updates and deletes as asynchronous batch jobs (the mirror option
 * "batch"): up to NS_BATCH_MAX records a request (Prefer: respond-async),
 * the jobs polled until they complete; a job that succeeded whole costs no
 * read per record, one with failures has each record's task result read
 * for NetSuite's words.  A batch NetSuite refuses whole (e.g. a body it
 * cannot parse) is sent again record by record.
 */
static void
push_batches(SyncConnection *conn, SyncMirror *m, SyncPushItem **items, int n)
{
	char		op = items[0]->op;
	NsWrite		kind = op == 'D' ? NS_DELETE : NS_PATCH;
	SyncPushItem **ok = palloc(sizeof(SyncPushItem *) * Max(1, n));
	SJson	  **bodies = palloc0(sizeof(SJson *) * Max(1, n));
	SyncPushItem **single = palloc(sizeof(SyncPushItem *) * Max(1, n));
	NsJob	  **jobs = palloc(sizeof(NsJob *) * Max(1, (n + NS_BATCH_MAX - 1) / NS_BATCH_MAX));
	HttpRequest **reqs = palloc(sizeof(HttpRequest *) * Max(1, (n + NS_BATCH_MAX - 1) / NS_BATCH_MAX));
	int			nok = 0,
				nsingle = 0,
				njobs = 0,
				i;

	/* each record checked and built: those settled here are not sent */
	for (i = 0; i < n; i++)
	{
		if (!item_id_ok(m, items[i]))
			continue;
		if (op != 'D' && (bodies[nok] = item_body(m, items[i], NULL)) == NULL)
			continue;
		ok[nok++] = items[i];
	}
	for (i = 0; i < nok; i += NS_BATCH_MAX)
	{
		NsJob	   *job = palloc0(sizeof(NsJob));

		job->items = ok + i;
		job->bodies = bodies + i;
		job->n = Min(NS_BATCH_MAX, nok - i);
		job->submit = batch_request(conn, m, job, op);
		reqs[njobs] = job->submit;
		jobs[njobs++] = job;
	}
	conn_send(conn, reqs, njobs);
	for (i = 0; i < njobs; i++)
	{
		NsJob	   *job = jobs[i];
		HttpRequest *req = job->submit;
		const char *raw;

		if (req->outcome == HTTP_DONE && req->status == 202)
		{
			job->job_id = location_id(req, &raw);
			if (job->job_id == NULL)
				job_items_retry(job, "NO_LOCATION",
								psprintf("NetSuite accepted the batch (HTTP 202) but its Location %s names no job; the records will be sent again",
										 provider_quote_value(raw)));
		}
		else if (conn_transient(req) || (req->outcome == HTTP_DONE && req->status == 401))
			job_items_result(conn, m, job, kind, req);
		else
		{
			/*
			 * Refused whole (or answered otherwise than as a job): record by
			 * record, for each record's own answer.
			 */
			memcpy(single + nsingle, job->items, sizeof(SyncPushItem *) * job->n);
			nsingle += job->n;
		}
	}
	poll_jobs(conn, jobs, njobs);
	for (i = 0; i < njobs; i++)
		if (jobs[i]->completed && jobs[i]->job_id != NULL && jobs[i]->succeeded)
		{
			int			k;

			for (k = 0; k < jobs[i]->n; k++)
				jobs[i]->items[k]->result = PUSH_OK;
		}
	job_results(conn, m, jobs, njobs, kind);
	if (nsingle > 0)
		push_single(conn, m, single, nsingle);
}

void
ns_push(SyncConnection *conn, SyncMirror *m, SyncPushItem *items, int n)
{
	SyncPushItem **pending = palloc(sizeof(SyncPushItem *) * Max(1, n));
	int			npending = 0,
				i;

	conn_ensure_auth(conn);
	for (i = 0; i < n; i++)
		if (items[i].result == PUSH_PENDING)
			pending[npending++] = &items[i];
	if (npending == 0)
		return;
	if (batch_mode(m) && pending[0]->op != 'I' && npending > 1)
		push_batches(conn, m, pending, npending);
	else
		push_single(conn, m, pending, npending);
}
