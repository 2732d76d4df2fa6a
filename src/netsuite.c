/*
 * netsuite.c — NetSuite's SuiteTalk REST web services as a sync provider:
 * connection options, URLs, requests and NetSuite's error bodies, and the
 * provider table.  Authentication is in netsuite_auth.c, reading (describe,
 * SuiteQL, deletes) in netsuite_pull.c, writing in netsuite_push.c.
 *
 * Hosts derive from the account ID: 1234567_SB1 is served at
 * https://1234567-sb1.suitetalk.api.netsuite.com and signs as realm
 * 1234567_SB1.  Every request NetSuite counts against one pool of
 * concurrent requests per account (REST, SOAP and RESTlets together):
 * "concurrency" caps what one connection keeps in flight, by default one
 * less than the account's limit, so that a person in the UI or another
 * integration is not locked out.  docs/netsuite.md documents the choices.
 */
#include "postgres.h"

#include <ctype.h>

#include "lib/stringinfo.h"
#include "pgtime.h"
#include "utils/timestamp.h"
#include "utils/memutils.h"

#include "netsuite.h"

#define bad_option(key, why) provider_bad_option("NetSuite", key, why)

static const char *const ns_option_keys[] = {
	"account", "base_url", "ca_file", "concurrency", "auth", "requests_per_second", "time_zone",
	"reconcile_interval", NULL
};

/* ---------------------------------------------------------------------
 * options
 * --------------------------------------------------------------------- */

static bool
valid_account(const char *a)
{
	const char *p;

	if (a == NULL || *a == '\0' || strlen(a) > 64)
		return false;
	for (p = a; *p; p++)
		if (!isalnum((unsigned char) *p) && *p != '_' && *p != '-')
			return false;
	return true;
}

static void
ns_check_options(SJson *o)
{
	const char **keys;
	int			n = sjson_object_keys(o, &keys);
	int			i;
	const char *base = sjson_get_string(o, "base_url");
	SJson	   *c = sjson_get(o, "concurrency");

	for (i = 0; i < n; i++)
	{
		int			k;

		for (k = 0; ns_option_keys[k]; k++)
			if (strcmp(keys[i], ns_option_keys[k]) == 0)
				break;
		if (ns_option_keys[k] == NULL)
			bad_option(keys[i], "unknown option (known: account, base_url, ca_file, concurrency, auth, "
					   "requests_per_second, time_zone, reconcile_interval)");
	}
	if (!valid_account(sjson_get_string(o, "account")))
		bad_option("account", "required: the account ID as NetSuite shows it (e.g. \"1234567\" or \"1234567_SB1\")");
	if (base && !provider_url_ok(base))
		bad_option("base_url", "must be an https:// URL");
	if (c && (sjson_type(c) != SJSON_INT || sjson_int(c, 0) < 1 || sjson_int(c, 0) > 64))
		bad_option("concurrency", "must be an integer from 1 to 64 (requests in flight)");
	if (sjson_has_key(o, "time_zone") &&
		(sjson_get_string(o, "time_zone") == NULL || pg_tzset(sjson_get_string(o, "time_zone")) == NULL))
		bad_option("time_zone", "must be a time zone name such as \"America/Los_Angeles\": the integration user's time zone in NetSuite");
	if (sjson_has_key(o, "reconcile_interval") &&
		(sjson_type(sjson_get(o, "reconcile_interval")) != SJSON_INT || sjson_int(sjson_get(o, "reconcile_interval"), -1) < 0))
		bad_option("reconcile_interval", "must be a number of seconds (0 or more) between full ID reconciliations");
	if (sjson_type(sjson_get(o, "auth")) != SJSON_OBJECT)
		bad_option("auth", "required: {\"type\": \"m2m\", ...} or {\"type\": \"tba\", ...}");
	ns_check_auth_options(sjson_get(o, "auth"));
}

/* ---------------------------------------------------------------------
 * URLs and requests
 * --------------------------------------------------------------------- */

NsState *
ns_state(SyncConnection *conn)
{
	if (conn->provider_state == NULL)
	{
		NsState    *st = MemoryContextAllocZero(conn->cxt, sizeof(NsState));
		const char *acct = sjson_get_string(conn->options, "account");
		char	   *realm = MemoryContextStrdup(conn->cxt, acct);
		char	   *p;

		/* the realm is the account ID in upper case, with '_' (hotglue, NetSuite's help) */
		for (p = realm; *p; p++)
			*p = (*p == '-') ? '_' : pg_toupper((unsigned char) *p);
		st->realm = realm;
		st->concurrency_limit = NS_DEFAULT_CONCURRENCY_LIMIT;
		conn->provider_state = st;
	}
	return (NsState *) conn->provider_state;
}

/* https://1234567-sb1.suitetalk.api.netsuite.com, or the base_url override */
static char *
host_base(SyncConnection *conn)
{
	const char *b = sjson_get_string(conn->options, "base_url");
	char	   *host,
			   *p;

	if (b)
	{
		int			len = strlen(b);

		return pnstrdup(b, (len > 0 && b[len - 1] == '/') ? len - 1 : len);
	}
	host = pstrdup(sjson_get_string(conn->options, "account"));
	for (p = host; *p; p++)
		*p = (*p == '_') ? '-' : pg_tolower((unsigned char) *p);
	return psprintf("https://%s.suitetalk.api.netsuite.com", host);
}

/* A REST URL: fmt is the path under /services/rest (e.g. "/record/v1/customer"). */
char *
ns_url(SyncConnection *conn, const char *fmt,...)
{
	StringInfoData buf;
	va_list		ap;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s/services/rest", host_base(conn));
	va_start(ap, fmt);
	provider_appendf_va(&buf, fmt, ap);
	va_end(ap);
	return buf.data;
}

char *
ns_token_url(SyncConnection *conn)
{
	return ns_url(conn, "/auth/oauth2/v1/token");
}

/* A request with NetSuite's headers, not yet sent. */
HttpRequest *
ns_request(SyncConnection *conn, const char *method, const char *url,
		   const char *body, const char *content_type)
{
	HttpRequest *req = http_request_new(method, url);

	http_add_header(req, "Accept", "application/json");
	if (body)
		http_set_body(req, body, strlen(body), content_type);
	if (conn->ca_file)
		req->ca_file = conn->ca_file;
	return req;
}

/*
 * A read: sent with retries (429 and 5xx back off, a 401 re-authenticates
 * once); the caller checks the status.
 */
HttpRequest *
ns_send(SyncConnection *conn, const char *method, const char *url, SJson *body)
{
	HttpRequest *req = ns_request(conn, method, url,
								  body ? sjson_serialize(body) : NULL, "application/json");

	conn_send_retrying(conn, req, 0);
	if (req->outcome == HTTP_DONE && req->status != 429)
		ns_note_success(conn);
	return req;
}

/*
 * NetSuite's error body (RFC 9457 problem details):
 * {"type", "title", "status", "o:errorDetails": [{"detail", "o:errorCode",
 * "o:errorPath"?, "o:errorQueryParam"?, ...}]}; the first detail's words,
 * with *code and *path set if asked.  OAuth endpoints answer {"error": ...}.
 */
char *
ns_error_text(const HttpRequest *req, char **code, char **path)
{
	SJson	   *j = provider_response_json(req);
	SJson	   *d = sjson_array_get(sjson_get(j, "o:errorDetails"), 0);
	const char *detail = sjson_get_string(d, "detail");
	const char *c = sjson_get_string(d, "o:errorCode");
	const char *p = sjson_get_string(d, "o:errorPath");

	if (c == NULL)
		c = sjson_get_string(j, "error");
	if (detail == NULL)
		detail = sjson_get_string(j, "error_description");
	if (detail == NULL)
		detail = sjson_get_string(j, "title");
	if (code)
		*code = c ? pstrdup(c) : NULL;
	if (path)
		*path = p ? pstrdup(p) : NULL;
	if (detail == NULL && c == NULL && req->outcome == HTTP_DONE && req->response.len > 0)
		return provider_body_excerpt(req, 300);
	return detail ? pstrdup(detail) : (c ? pstrdup(c) : NULL);
}

/* The connection's error for a failed read: names the connection and NetSuite's words. */
void
ns_fail(SyncConnection *conn, const char *what, const HttpRequest *req)
{
	char	   *code = NULL;
	char	   *msg = ns_error_text(req, &code, NULL);

	if (req->outcome == HTTP_DONE && (req->status == 401 || req->status == 403))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("connection \"%s\": NetSuite refused the credentials while %s: %s",
						conn->name, what, msg ? msg : "no reason given"),
				 code ? errdetail("NetSuite error code \"%s\", HTTP %ld.", code, req->status) : 0,
				 errhint("Check the connection's auth options and the role's permissions "
						 "(NetSuite's Login Audit Trail says why a login failed); "
						 "change them with sync.alter_connection().")));
	conn_error_from_response(conn, what, req,
							 msg ? (code ? psprintf("%s (%s)", msg, code) : msg) : NULL);
}

/* Requests in flight as configured: "concurrency", else one less than the account's limit. */
int
ns_concurrency(SyncConnection *conn)
{
	int64		c = sjson_int(sjson_get(conn->options, "concurrency"), 0);

	return c > 0 ? (int) c : Max(1, ns_state(conn)->concurrency_limit - 1);
}

/*
 * A request was answered (not 429): backoffs start over, and after 100
 * answers in a row one request more may be in flight again, up to the
 * configured concurrency (a 429 took one away).
 */
void
ns_note_success(SyncConnection *conn)
{
	NsState    *st = ns_state(conn);

	st->throttled = 0;
	if (++st->answered >= 100 && conn->max_in_flight < ns_concurrency(conn))
	{
		conn->max_in_flight++;
		st->answered = 0;
	}
}

/* NetSuite internal IDs: digits (reference targets such as accounts may be negative, records are not). */
bool
ns_valid_remote_id(const char *id)
{
	int			n = 0;

	if (id == NULL)
		return false;
	for (; id[n]; n++)
		if (!isdigit((unsigned char) id[n]))
			return false;
	return n > 0 && n <= 20;
}

/*
 * A 429 (CONCURRENCY_LIMIT_EXCEEDED) carries no Retry-After: someone else
 * holds the account's pool.  Keep one request fewer in flight from now on
 * and back off, doubling while it goes on (conn.c adds the jitter of its
 * retries; backoff_ms its own).
 */
static long
ns_throttle_ms(SyncConnection *conn, const HttpRequest *req)
{
	NsState    *st = ns_state(conn);
	TimestampTz sent = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), -(long) req->elapsed_ms);

	/* once per episode, not once per refused request of one wave */
	st->answered = 0;
	if (sent >= st->throttled_at)
	{
		if (conn->max_in_flight > 1)
			conn->max_in_flight--;
		st->throttled = Min(st->throttled + 1, 8);
		st->throttled_at = GetCurrentTimestamp();
	}
	return backoff_ms(st->throttled, 500, 30000);
}

/* ---------------------------------------------------------------------
 * sync.test_connection
 * --------------------------------------------------------------------- */

static void
ns_test(SyncConnection *conn, SJson *facts)
{
	HttpRequest *req;
	SJson	   *j;

	sjson_add_string(facts, "account", sjson_get_string(conn->options, "account"));
	sjson_add_string(facts, "base_url", host_base(conn));
	sjson_add_string(facts, "auth_type", sjson_get_string(sjson_get(conn->options, "auth"), "type"));
	sjson_add_int(facts, "concurrency", conn->max_in_flight);
	/* a cheap authenticated call */
	req = ns_send(conn, "GET", ns_url(conn, "/record/v1/customer?limit=1"), NULL);
	if (req->outcome != HTTP_DONE || req->status != 200)
		ns_fail(conn, "listing customers", req);
	j = provider_response_json(req);
	if (sjson_get(j, "totalResults"))
		sjson_add_int(facts, "customers", sjson_int(sjson_get(j, "totalResults"), 0));
}

const SyncProvider netsuite_provider = {
	.name = "netsuite",
	.check_options = ns_check_options,
	.is_secret = ns_is_secret,
	.authenticate = ns_authenticate,
	.sign = ns_sign,
	.test = ns_test,
	.describe = ns_describe,
	.check_mirror = ns_check_mirror,
	.pull_page = ns_pull_page,
	.batch_max = ns_batch_max,
	.push = ns_push,
	.valid_remote_id = ns_valid_remote_id,
	.fetch = ns_fetch,
	.throttle_ms = ns_throttle_ms,
};
