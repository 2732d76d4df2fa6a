/*
 * http_sql.c — SQL-callable diagnostics for the HTTP module (tests, support):
 * sync.http_request() and sync.http_request_many().  They go through exactly
 * the code the engine uses (http_run), transport policy included.
 *
 * Both are revoked from PUBLIC in the install script: a function that fetches
 * arbitrary URLs from inside the database server is an SSRF tool.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "http.h"

/* sync.http_request_many() is a diagnostic: this many URLs at most */
#define HTTP_MANY_MAX 10000

PG_FUNCTION_INFO_V1(sync_http_request);
PG_FUNCTION_INFO_V1(sync_http_request_many);

/* jsonb scalar -> text */
static char *
jsonb_scalar_text(JsonbValue *v, const char *key)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("header \"%s\" must be a string, number or boolean", key)));
	}
	return NULL;				/* keep compiler quiet */
}

/* {"Name": "value", ...} -> request headers */
static void
add_headers_from_jsonb(HttpRequest *req, Jsonb *jb)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("headers must be a JSON object of name: value")));
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
		{
			if (v.type == jbvNull)
				continue;
			if (v.type == jbvBinary)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("header \"%s\" must be a string, number or boolean", key)));
			http_add_header(req, key, jsonb_scalar_text(&v, key));
		}
	}
}

static Datum
headers_to_jsonb(List *headers)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;
	ListCell   *lc;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	foreach(lc, headers)
	{
		HttpHeader *h = (HttpHeader *) lfirst(lc);
		JsonbValue	k,
					v;

		k.type = jbvString;
		k.val.string.val = h->name;
		k.val.string.len = strlen(h->name);
		v.type = jbvString;
		v.val.string.val = h->value;
		v.val.string.len = strlen(h->value);
		pushJsonbValue(&state, WJB_KEY, &k);
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

/*
 * sync.http_request(method, url, body, headers, ca_file, timeout_ms)
 *   RETURNS TABLE(outcome, status, headers, body, error, elapsed_ms)
 */
Datum
sync_http_request(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HttpRequest *req;
	char	   *method;
	Datum		values[6];
	bool		nulls[6] = {false};
	char	   *error;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("method and url must not be null")));
	method = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (method[0] == '\0' || strlen(method) > 16 ||
		strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(method))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid HTTP method \"%s\"", method),
				 errhint("Use an upper-case method such as GET, POST, PATCH or DELETE.")));
	if (!PG_ARGISNULL(5) && PG_GETARG_INT32(5) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_ms must not be negative"),
				 errhint("0 means sync.http_timeout.")));
	InitMaterializedSRF(fcinfo, 0);

	req = http_request_new(method, text_to_cstring(PG_GETARG_TEXT_PP(1)));
	if (!PG_ARGISNULL(3))
		add_headers_from_jsonb(req, PG_GETARG_JSONB_P(3));
	if (!PG_ARGISNULL(2))
	{
		text	   *b = PG_GETARG_TEXT_PP(2);

		http_set_body(req, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), NULL);
	}
	if (!PG_ARGISNULL(4))
		req->ca_file = text_to_cstring(PG_GETARG_TEXT_PP(4));
	if (!PG_ARGISNULL(5))
		req->timeout_ms = PG_GETARG_INT32(5);

	http_run_one(req);

	error = req->outcome == HTTP_DONE ? NULL : (char *) http_outcome_text(req);
	values[0] = CStringGetTextDatum(http_outcome_name(req->outcome));
	values[1] = Int32GetDatum((int32) req->status);
	nulls[1] = req->outcome != HTTP_DONE;
	values[2] = headers_to_jsonb(req->response_headers);
	nulls[2] = req->outcome != HTTP_DONE;
	if (req->outcome == HTTP_DONE &&
		pg_verifymbstr(req->response.data, req->response.len, true))
		values[3] = PointerGetDatum(cstring_to_text_with_len(req->response.data, req->response.len));
	else
	{
		nulls[3] = true;
		if (req->outcome == HTTP_DONE)
			error = psprintf("the response body (%d bytes) is not valid text in the database encoding",
							 req->response.len);
	}
	if (error)
		values[4] = CStringGetTextDatum(error);
	else
		nulls[4] = true;
	values[5] = Float8GetDatum(req->elapsed_ms);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/* should_stop for stop_after_ms: exercises http_run_ext's cancel path */
static bool
stop_after(void *arg)
{
	TimestampTz deadline = *(TimestampTz *) arg;

	return GetCurrentTimestamp() >= deadline;
}

/*
 * sync.http_request_many(urls, max_in_flight, ca_file, stop_after_ms)
 *   RETURNS TABLE(url, outcome, status, elapsed_ms, new_connections)
 * GETs every URL in one http_run, at most max_in_flight at once.  With
 * stop_after_ms > 0, a should_stop callback ends the run after that long
 * (what a worker with its own SIGTERM flag does).
 */
Datum
sync_http_request_many(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *enulls;
	int			n,
				i,
				max_in_flight;
	char	   *ca_file = NULL;
	int			stop_ms = 0;
	TimestampTz deadline;
	HttpRequest **reqs;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("urls must not be null")));
	arr = PG_GETARG_ARRAYTYPE_P(0);
	max_in_flight = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1);
	if (max_in_flight < 0 || max_in_flight > 256)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_in_flight must be between 0 (sync.http_max_in_flight) and 256")));
	if (!PG_ARGISNULL(2))
		ca_file = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (PG_NARGS() > 3 && !PG_ARGISNULL(3))
		stop_ms = PG_GETARG_INT32(3);
	InitMaterializedSRF(fcinfo, 0);

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	if (n > HTTP_MANY_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%d URLs given, at most %d per call", n, HTTP_MANY_MAX)));
	reqs = palloc(sizeof(HttpRequest *) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		if (enulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("urls must not contain nulls")));
		reqs[i] = http_request_new("GET", TextDatumGetCString(elems[i]));
		reqs[i]->ca_file = ca_file;
	}

	if (stop_ms > 0)
	{
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), stop_ms);
		http_run_ext(reqs, n, max_in_flight, stop_after, &deadline);
	}
	else
		http_run(reqs, n, max_in_flight);

	for (i = 0; i < n; i++)
	{
		Datum		values[5];
		bool		nulls[5] = {false};

		values[0] = CStringGetTextDatum(reqs[i]->url);
		values[1] = CStringGetTextDatum(http_outcome_name(reqs[i]->outcome));
		values[2] = Int32GetDatum((int32) reqs[i]->status);
		nulls[2] = reqs[i]->outcome != HTTP_DONE;
		values[3] = Float8GetDatum(reqs[i]->elapsed_ms);
		values[4] = Int32GetDatum(reqs[i]->new_connections);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
