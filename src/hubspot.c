/*
 * hubspot.c — the HubSpot CRM API (v3 objects, v4 associations) as a sync
 * provider.
 *
 * Auth: a private-app token, or OAuth refresh (POST /oauth/v1/token; access
 * tokens live 30 minutes, a 401 re-authenticates once through conn.c).
 * Schema: GET /crm/v3/properties/{type}, plus virtual association fields
 * (contacts: "associations.companies", a reference to the companies mirror).
 * Pull: the list endpoint with `after` paging for the backfill; then search
 * sorted by the modification stamp, paged by keyset (stamp, hs_object_id)
 * so that no query ever reaches search's 10,000-result cap; archived
 * listings for soft deletes and a full ID reconciliation for hard deletes,
 * each on its own cadence.  Push: batch create / update / upsert / archive,
 * 100 inputs a request, objectWriteTraceId on every input; a whole-batch 400
 * is bisected so that only the bad inputs are parked.  Limits: the
 * per-10-second budget paces the connection's token bucket, search has its
 * own bucket, the daily budget holds work back when spent.
 * docs/hubspot.md documents the choices.
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>
#include <time.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "adaptive.h"
#include "conn.h"
#include "provider.h"

#define bad_option(key, why) provider_bad_option("HubSpot", key, why)

#define HS_DEFAULT_BASE "https://api.hubapi.com"
#define HS_BATCH_MAX 100
#define HS_LIST_LIMIT 100
#define HS_SEARCH_LIMIT 200
#define HS_DEFAULT_SEARCH_LAG_S 30	/* search index lag: re-read the last 30 s */
#define HS_MAX_SEARCH_LAG_S 86400
#define HS_DEFAULT_PER_10S 100
#define HS_DEFAULT_PER_DAY 250000
#define HS_DEFAULT_SEARCH_PER_S 4.0
#define HS_DEFAULT_ARCHIVED_S 300	/* archived listing: every 5 minutes */
#define HS_DEFAULT_RECONCILE_S 86400	/* full ID reconciliation: daily */
#define HS_ASSOC_PREFIX "associations."

static const char *const hs_option_keys[] = {
	"base_url", "auth", "requests_per_10s", "requests_per_day",
	"search_requests_per_second", "archived_interval", "reconcile_interval",
	"ca_file", "max_in_flight", "search_lag", NULL
};

/* Association fields: from-object, to-object, HubSpot-defined default type. */
typedef struct HsAssoc
{
	const char *from;
	const char *to;
	int			type_id;
} HsAssoc;

static const HsAssoc hs_assocs[] = {
	{"contacts", "companies", 279},
};

/* Per-connection state kept with the connection cache entry. */
typedef struct HsState
{
	SyncRateLimit search;		/* search: 5 requests/s of its own */
	int64		day;			/* UTC day of the counters below */
	int64		used_today;		/* requests counted today (ours or reported) */
	int64		per_day;
	int64		reported_per_day;	/* the daily limit HubSpot reports; 0: none yet */
} HsState;

/* ---------------------------------------------------------------------
 * options
 * --------------------------------------------------------------------- */

/*
 * An interval option: a number of seconds, or "<n> <unit>" with unit
 * seconds, minutes, hours or days (singular, plural or s/min/h/d).
 * -1 if malformed.
 */
static double
interval_seconds(SJson *v)
{
	const char *s;
	char	   *end;
	double		n;

	if (sjson_type(v) == SJSON_INT || sjson_type(v) == SJSON_DOUBLE)
		return sjson_double(v, -1) >= 0 ? sjson_double(v, -1) : -1;
	s = sjson_string(v);
	if (s == NULL)
		return -1;
	n = strtod(s, &end);
	if (end == s || n < 0)
		return -1;
	while (*end == ' ')
		end++;
	if (*end == '\0' || pg_strcasecmp(end, "s") == 0 || pg_strncasecmp(end, "sec", 3) == 0)
		return n;
	if (pg_strcasecmp(end, "min") == 0 || pg_strncasecmp(end, "minute", 6) == 0)
		return n * 60;
	if (pg_strcasecmp(end, "h") == 0 || pg_strncasecmp(end, "hour", 4) == 0)
		return n * 3600;
	if (pg_strcasecmp(end, "d") == 0 || pg_strncasecmp(end, "day", 3) == 0)
		return n * 86400;
	return -1;
}

static double
opt_interval(SJson *o, const char *key, double dflt)
{
	return sjson_has_key(o, key) ? interval_seconds(sjson_get(o, key)) : dflt;
}

static void
hs_check_options(SJson *o)
{
	const char **keys;
	int			n = sjson_object_keys(o, &keys);
	int			i;
	SJson	   *auth = sjson_get(o, "auth");
	const char *type;
	const char *base = sjson_get_string(o, "base_url");

	for (i = 0; i < n; i++)
	{
		int			k;
		bool		known = false;

		for (k = 0; hs_option_keys[k]; k++)
			known |= strcmp(keys[i], hs_option_keys[k]) == 0;
		if (!known)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown HubSpot connection option \"%s\"", keys[i]),
					 errhint("Known options: base_url, auth, requests_per_10s, requests_per_day, "
							 "search_requests_per_second, archived_interval, reconcile_interval, "
							 "ca_file, max_in_flight, search_lag.")));
	}
	if (sjson_has_key(o, "base_url") && (base == NULL || !provider_url_ok(base)))
		bad_option("base_url", "must be an https:// URL such as \"https://api.hubapi.com\"");
	if (sjson_type(auth) != SJSON_OBJECT)
		bad_option("auth", "required: {\"type\": \"private_app\", \"token\": ...} or "
				   "{\"type\": \"oauth_refresh\", \"client_id\", \"client_secret\", \"refresh_token\"}");
	type = sjson_get_string(auth, "type");
	if (type == NULL)
		bad_option("auth.type", "required: private_app or oauth_refresh");
	if (strcmp(type, "private_app") == 0)
	{
		if (sjson_get_string(auth, "token") == NULL || sjson_get_string(auth, "token")[0] == '\0')
			bad_option("auth.token", "required for private_app (the app's access token)");
	}
	else if (strcmp(type, "oauth_refresh") == 0)
	{
		if (sjson_get_string(auth, "client_id") == NULL)
			bad_option("auth.client_id", "required for oauth_refresh");
		if (sjson_get_string(auth, "client_secret") == NULL)
			bad_option("auth.client_secret", "required for oauth_refresh");
		if (sjson_get_string(auth, "refresh_token") == NULL)
			bad_option("auth.refresh_token", "required for oauth_refresh");
	}
	else
		bad_option("auth.type", "must be private_app or oauth_refresh");
	if (sjson_has_key(o, "requests_per_10s") &&
		(sjson_type(sjson_get(o, "requests_per_10s")) != SJSON_INT ||
		 sjson_int(sjson_get(o, "requests_per_10s"), 0) < 1))
		bad_option("requests_per_10s", "must be a positive integer (100 for Free/Starter, 190 for Professional/Enterprise)");
	if (sjson_has_key(o, "requests_per_day") &&
		(sjson_type(sjson_get(o, "requests_per_day")) != SJSON_INT ||
		 sjson_int(sjson_get(o, "requests_per_day"), 0) < 1))
		bad_option("requests_per_day", "must be a positive integer");
	if (sjson_has_key(o, "search_requests_per_second") &&
		!(sjson_double(sjson_get(o, "search_requests_per_second"), 0) > 0))
		bad_option("search_requests_per_second", "must be a positive number (HubSpot allows 5)");
	if (opt_interval(o, "archived_interval", 0) < 0)
		bad_option("archived_interval", "must be a number of seconds or e.g. \"5 minutes\"");
	if (opt_interval(o, "reconcile_interval", 0) < 0)
		bad_option("reconcile_interval", "must be a number of seconds or e.g. \"1 day\"");
	if (!(opt_interval(o, "search_lag", 0) >= 0 && opt_interval(o, "search_lag", 0) <= HS_MAX_SEARCH_LAG_S))
		bad_option("search_lag", "must be a number of seconds or e.g. \"30 seconds\", at most a day");
	if (sjson_has_key(o, "max_in_flight") &&
		(sjson_int(sjson_get(o, "max_in_flight"), 0) < 1 || sjson_int(sjson_get(o, "max_in_flight"), 0) > 64))
		bad_option("max_in_flight", "must be an integer from 1 to 64");
}

static bool
hs_is_secret(const char *path)
{
	return strcmp(path, "auth.token") == 0 ||
		strcmp(path, "auth.client_secret") == 0 ||
		strcmp(path, "auth.refresh_token") == 0;
}

/* ---------------------------------------------------------------------
 * HTTP helpers
 * --------------------------------------------------------------------- */

static const char *
base_url(SyncConnection *conn)
{
	const char *b = sjson_get_string(conn->options, "base_url");

	return b ? b : HS_DEFAULT_BASE;
}

static char *
hs_url(SyncConnection *conn, const char *fmt,...) pg_attribute_printf(2, 3);

static char *
hs_url(SyncConnection *conn, const char *fmt,...)
{
	StringInfoData buf;
	va_list		ap;
	const char *b = base_url(conn);
	int			blen = strlen(b);

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, b, (blen > 0 && b[blen - 1] == '/') ? blen - 1 : blen);
	va_start(ap, fmt);
	provider_appendf_va(&buf, fmt, ap);
	va_end(ap);
	return buf.data;
}

static HsState *
hs_state(SyncConnection *conn)
{
	if (conn->provider_state == NULL)
	{
		HsState    *st = MemoryContextAllocZero(conn->cxt, sizeof(HsState));
		double		search = sjson_double(sjson_get(conn->options, "search_requests_per_second"),
										  HS_DEFAULT_SEARCH_PER_S);

		conn_rate_init(&st->search, search, 1);
		conn_rate_share(conn, &st->search, "search");
		st->per_day = sjson_int(sjson_get(conn->options, "requests_per_day"), HS_DEFAULT_PER_DAY);
		conn->provider_state = st;
	}
	return (HsState *) conn->provider_state;
}

/* HubSpot's error body: {status, message, category, errors[...]}; *category set if asked. */
static char *
hs_error_text(const HttpRequest *req, char **category)
{
	SJson	   *j = provider_response_json(req);
	const char *msg = sjson_get_string(j, "message");
	const char *cat = sjson_get_string(j, "category");

	if (cat == NULL)
		cat = sjson_get_string(j, "policyName");
	if (cat == NULL && sjson_get_string(j, "status") && strcmp(sjson_get_string(j, "status"), "error") != 0)
		cat = sjson_get_string(j, "status");	/* OAuth errors: BAD_CLIENT_ID ... */
	if (category)
		*category = cat ? pstrdup(cat) : NULL;
	if (msg == NULL && req->outcome == HTTP_DONE && req->response.len > 0)
		return provider_body_excerpt(req, 300);
	return msg ? pstrdup(msg) : NULL;
}

/* A HubSpot record ID: decimal digits, at most 19 (a 64-bit integer). */
static bool
hs_valid_remote_id(const char *id)
{
	size_t		len;

	if (id == NULL)
		return false;
	len = strlen(id);
	return len >= 1 && len <= 19 && strspn(id, "0123456789") == len;
}

#define hs_bad_response(conn, what, req, why) \
	provider_bad_response(conn, "HubSpot", what, req, why)

static int64
utc_day(void)
{
	return (int64) (time(NULL) / 86400);
}

/* A count from a response header, clamped to [0, 2^31): headers are remote input. */
static int64
header_count(const char *v)
{
	char	   *end;
	long long	n;

	if (v == NULL)
		return 0;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || end == v || n < 0)
		return 0;
	return Min(n, (long long) PG_INT32_MAX);
}

/* Record what the rate-limit headers say; keep the daily count. */
static void
note_limits(SyncConnection *conn, const HttpRequest *req)
{
	HsState    *st = hs_state(conn);
	const char *max = http_response_header(req, "x-hubspot-ratelimit-max");
	const char *rem = http_response_header(req, "x-hubspot-ratelimit-remaining");
	const char *daily = http_response_header(req, "x-hubspot-ratelimit-daily");
	const char *drem = http_response_header(req, "x-hubspot-ratelimit-daily-remaining");

	if (st->day != utc_day())
	{
		st->day = utc_day();
		st->used_today = 0;
	}
	if (req->outcome != HTTP_PENDING)
		st->used_today++;
	if (daily && drem)
	{
		st->used_today = Max(st->used_today, header_count(daily) - header_count(drem));
		st->reported_per_day = header_count(daily);
	}
	if (max && rem)
		conn_note_usage(conn, daily && drem ?
						psprintf("ten-secondly %s/%s remaining, daily %s/%s remaining", rem, max, drem, daily) :
						psprintf("ten-secondly %s/%s remaining", rem, max));
}

/* Is the daily budget spent? */
static bool
daily_spent(SyncConnection *conn)
{
	HsState    *st = hs_state(conn);

	if (st->day != utc_day())
	{
		st->day = utc_day();
		st->used_today = 0;
	}
	return st->per_day > 0 && st->used_today >= st->per_day;
}

/*
 * The share of today's request budget left, 0 to 1: the budget is the
 * connection's requests_per_day or the daily limit HubSpot reports,
 * whichever is lower.  For adaptive polling (adaptive.c).
 */
double
hubspot_daily_share_left(SyncConnection *conn)
{
	HsState    *st = hs_state(conn);
	int64		budget = st->per_day;

	(void) daily_spent(conn);	/* rolls the counters over at midnight UTC */
	if (st->reported_per_day > 0 && (budget <= 0 || st->reported_per_day < budget))
		budget = st->reported_per_day;
	if (budget <= 0)
		return 1.0;
	if (st->used_today >= budget)
		return 0.0;
	return 1.0 - (double) st->used_today / (double) budget;
}

static void
check_daily(SyncConnection *conn)
{
	if (daily_spent(conn))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("connection \"%s\": the daily HubSpot request budget (%lld) is spent",
						conn->name, (long long) hs_state(conn)->per_day),
				 errhint("Work resumes after midnight UTC; raise requests_per_day if your account allows more.")));
}

/* The connection's error for a failed read. */
static void
hs_fail(SyncConnection *conn, const char *what, const HttpRequest *req) pg_attribute_noreturn();

static void
hs_fail(SyncConnection *conn, const char *what, const HttpRequest *req)
{
	char	   *cat = NULL;
	char	   *msg = hs_error_text(req, &cat);

	if (req->outcome == HTTP_DONE && (req->status == 401 || req->status == 403))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("connection \"%s\": HubSpot refused the credentials while %s: %s",
						conn->name, what, msg ? msg : "no reason given"),
				 cat ? errdetail("HubSpot category \"%s\", HTTP %ld.", cat, req->status) : 0,
				 errhint("Check the connection's auth options (and the app's scopes) with sync.alter_connection().")));
	conn_error_from_response(conn, what, req,
							 msg ? (cat ? psprintf("%s (%s)", msg, cat) : msg) : NULL);
}

static HttpRequest *
hs_send(SyncConnection *conn, const char *method, const char *url, SJson *body, bool search)
{
	HttpRequest *req = http_request_new(method, url);

	http_add_header(req, "Accept", "application/json");
	if (body)
	{
		char	   *text = sjson_serialize(body);

		http_set_body(req, text, strlen(text), "application/json");
	}
	check_daily(conn);
	if (search)
		conn_send_retrying_limited(conn, &hs_state(conn)->search, req, 0);
	else
		conn_send_retrying(conn, req, 0);
	note_limits(conn, req);
	return req;
}

/* ---------------------------------------------------------------------
 * authentication
 * --------------------------------------------------------------------- */

static void hs_oauth_refresh(SyncConnection *conn, SJson *auth);

static void
hs_authenticate(SyncConnection *conn)
{
	SJson	   *auth = sjson_get(conn->options, "auth");
	const char *type = sjson_get_string(auth, "type");
	MemoryContext tmp,
				old;

	(void) hs_state(conn);
	if (conn->limit.rate_max == 0)
	{
		/*
		 * The rolling 10-second budget becomes a steady 97 % of it, with a
		 * burst of 2 %: no 10-second window can see more than 99 % of the
		 * budget, whatever the network does to arrival times.
		 */
		int64		per_10s = sjson_int(sjson_get(conn->options, "requests_per_10s"), HS_DEFAULT_PER_10S);

		conn_rate_init(&conn->limit, per_10s * 0.97 / 10.0, floor(per_10s * 0.02));
	}
	if (conn->api_base == NULL)
		conn->api_base = MemoryContextStrdup(conn->cxt, base_url(conn));
	if (strcmp(type, "private_app") == 0)
	{
		/* a static token: a 401 means it was revoked or rotated */
		conn->access_token = MemoryContextStrdup(conn->cxt, sjson_get_string(auth, "token"));
		conn->token_expires = 0;
		return;
	}
	/* the exchange's garbage must not stay with the connection */
	tmp = AllocSetContextCreate(conn->cxt, "sync hubspot auth", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(tmp);
	PG_TRY();
	{
		hs_oauth_refresh(conn, auth);
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(tmp);
	}
	PG_END_TRY();
}

static void
hs_oauth_refresh(SyncConnection *conn, SJson *auth)
{
	HttpRequest *req;
	StringInfoData form;
	SJson	   *resp;
	const char *token;
	int64		ttl;
	char	   *url;

	initStringInfo(&form);
	appendStringInfo(&form, "grant_type=refresh_token&client_id=%s&client_secret=%s&refresh_token=%s",
					 http_url_encode(sjson_get_string(auth, "client_id")),
					 http_url_encode(sjson_get_string(auth, "client_secret")),
					 http_url_encode(sjson_get_string(auth, "refresh_token")));
	url = hs_url(conn, "/oauth/v1/token");
	req = http_request_new("POST", url);
	http_set_body(req, form.data, form.len, "application/x-www-form-urlencoded");
	http_add_header(req, "Accept", "application/json");
	req->body_is_secret = true;
	if (conn->ca_file)
		req->ca_file = conn->ca_file;
	http_run_one(req);

	resp = provider_response_json(req);
	if (req->outcome != HTTP_DONE || req->status != 200)
	{
		char	   *code = NULL;
		char	   *msg;

		if (req->outcome != HTTP_DONE)
			conn_error_from_response(conn, "HubSpot authentication", req, NULL);
		msg = hs_error_text(req, &code);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("connection \"%s\": HubSpot refused the oauth_refresh grant: %s",
						conn->name, msg ? msg : "no reason given"),
				 code ? errdetail("HubSpot error \"%s\", HTTP %ld from %s.", code, req->status,
								  http_redact_url(url)) : 0,
				 errhint("Check the connection's auth options with sync.alter_connection().")));
	}
	token = sjson_get_string(resp, "access_token");
	if (token == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("connection \"%s\": HubSpot token response lacks access_token", conn->name)));
	ttl = sjson_int(sjson_get(resp, "expires_in"), 0);
	if (ttl < 0 || ttl > 86400 * 366)
		ttl = 0;				/* nonsense: learn of expiry by a 401 */
	conn->access_token = MemoryContextStrdup(conn->cxt, token);
	/* renew a minute early; a 401 before that re-authenticates anyway */
	conn->token_expires = ttl > 120 ?
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (ttl - 60) * 1000) : 0;
}

/* After a 429: HubSpot sends no Retry-After; its policy says how long. */
static long
hs_throttle_ms(SyncConnection *conn, const HttpRequest *req)
{
	char	   *cat = NULL;
	const char *interval = http_response_header(req, "x-hubspot-ratelimit-interval-milliseconds");

	(void) hs_error_text(req, &cat);
	if (cat && strcmp(cat, "TEN_SECONDLY_ROLLING") == 0)
		return header_count(interval) > 0 ? Min(header_count(interval), 60000) : 10000;
	if (cat && strcmp(cat, "DAILY") == 0)
		return 10000;			/* pushes are parked for longer (see push) */
	return 1000;				/* search: 5 a second */
}

static void
hs_test(SyncConnection *conn, SJson *facts)
{
	HttpRequest *req;
	SJson	   *j;
	const char *v;

	sjson_add_string(facts, "base_url", base_url(conn));
	sjson_add_string(facts, "auth_type", sjson_get_string(sjson_get(conn->options, "auth"), "type"));
	req = hs_send(conn, "GET", hs_url(conn, "/account-info/v3/details"), NULL, false);
	j = provider_response_json(req);
	if (req->outcome == HTTP_DONE && req->status == 200 && sjson_get(j, "portalId"))
	{
		sjson_add_string(facts, "portal_id", sjson_scalar_text(sjson_get(j, "portalId")));
		if (sjson_get_string(j, "timeZone"))
			sjson_add_string(facts, "time_zone", sjson_get_string(j, "timeZone"));
	}
	/* a cheap authenticated call: proves the token, shows the limits */
	req = hs_send(conn, "GET", hs_url(conn, "/crm/v3/objects/contacts?limit=1"), NULL, false);
	if (req->outcome != HTTP_DONE || req->status != 200)
		hs_fail(conn, "reading contacts", req);
	j = provider_response_json(req);
	if (sjson_type(sjson_get(j, "results")) != SJSON_ARRAY)
		hs_bad_response(conn, "reading contacts", req, "no \"results\" array");
	if (!sjson_has_key(facts, "portal_id"))
	{
		/* the record URL names the portal: …/contacts/{portalId}/record/… */
		const char *url = sjson_get_string(sjson_array_get(sjson_get(j, "results"), 0), "url");
		const char *p = url ? strstr(url, "/contacts/") : NULL;

		if (p && isdigit((unsigned char) p[10]))
			sjson_add_string(facts, "portal_id", pnstrdup(p + 10, strspn(p + 10, "0123456789")));
	}
	if ((v = http_response_header(req, "x-hubspot-ratelimit-max")))
		sjson_add_int(facts, "requests_per_10s_remote", atoll(v));
	if ((v = http_response_header(req, "x-hubspot-ratelimit-remaining")))
		sjson_add_int(facts, "requests_10s_remaining", atoll(v));
	if ((v = http_response_header(req, "x-hubspot-ratelimit-daily")))
		sjson_add_int(facts, "requests_per_day_remote", atoll(v));
	if ((v = http_response_header(req, "x-hubspot-ratelimit-daily-remaining")))
		sjson_add_int(facts, "requests_day_remaining", atoll(v));
	sjson_add_int(facts, "requests_per_10s", sjson_int(sjson_get(conn->options, "requests_per_10s"), HS_DEFAULT_PER_10S));
	sjson_add_int(facts, "requests_per_day", hs_state(conn)->per_day);
	sjson_add_int(facts, "max_batch_size", HS_BATCH_MAX);
}

/* ---------------------------------------------------------------------
 * schema
 * --------------------------------------------------------------------- */

/* contacts, contact, CONTACT, 0-1 -> "contacts"; others lower-cased */
static char *
canonical_object(const char *object)
{
	static const char *const std[][3] = {
		{"contacts", "contact", "0-1"}, {"companies", "company", "0-2"}, {"deals", "deal", "0-3"},
	};
	int			i,
				k;

	for (i = 0; i < lengthof(std); i++)
		for (k = 0; k < 3; k++)
			if (pg_strcasecmp(object, std[i][k]) == 0)
				return pstrdup(std[i][0]);
	return pstrdup(object);
}

static const char *
stamp_property(const char *object)
{
	return strcmp(canonical_object(object), "contacts") == 0 ? "lastmodifieddate" : "hs_lastmodifieddate";
}

static bool
is_assoc_field(const SyncField *f)
{
	return strncmp(f->remote_name, HS_ASSOC_PREFIX, strlen(HS_ASSOC_PREFIX)) == 0;
}

static const HsAssoc *
assoc_for(const char *object, const char *remote_name)
{
	char	   *obj = canonical_object(object);
	int			i;

	for (i = 0; i < lengthof(hs_assocs); i++)
		if (strcmp(hs_assocs[i].from, obj) == 0 &&
			strcmp(remote_name + strlen(HS_ASSOC_PREFIX), hs_assocs[i].to) == 0)
			return &hs_assocs[i];
	return NULL;
}

static const char *
local_type_for(const char *type, const char *field_type)
{
	if (strcmp(type, "string") == 0 || strcmp(type, "phone_number") == 0)
		return "text";
	if (strcmp(type, "enumeration") == 0)
		return (field_type && strcmp(field_type, "checkbox") == 0) ? "text[]" : "text";
	if (strcmp(type, "number") == 0 || strcmp(type, "currency_number") == 0)
		return "numeric";
	if (strcmp(type, "bool") == 0)
		return "boolean";
	if (strcmp(type, "date") == 0)
		return "date";
	if (strcmp(type, "datetime") == 0)
		return "timestamptz";
	return NULL;				/* json, object_coordinates, ... */
}

static void
unknown_object(SyncConnection *conn, const char *object, const HttpRequest *req) pg_attribute_noreturn();

static void
unknown_object(SyncConnection *conn, const char *object, const HttpRequest *req)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("HubSpot object \"%s\" does not exist (connection \"%s\")", object, conn->name),
			 errdetail("HubSpot said: %s", hs_error_text(req, NULL) ? hs_error_text(req, NULL) : "not found"),
			 errhint("Use an object type such as contacts, companies, deals, tickets, or a custom object's p_name or objectTypeId (2-123456).")));
}

static List *
hs_describe(SyncConnection *conn, const char *object)
{
	HttpRequest *req = hs_send(conn, "GET", hs_url(conn, "/crm/v3/properties/%s", http_url_encode(object)),
							   NULL, false);
	SJson	   *j = provider_response_json(req);
	SJson	   *props;
	const char *stamp = stamp_property(object);
	char	   *obj = canonical_object(object);
	List	   *out = NIL;
	int			i;

	if (req->outcome == HTTP_DONE && (req->status == 404 ||
									  (req->status == 400 && hs_error_text(req, NULL) &&
									   strstr(hs_error_text(req, NULL), "object type"))))
		unknown_object(conn, object, req);
	if (req->outcome != HTTP_DONE || req->status != 200 || sjson_type(j) != SJSON_OBJECT)
		hs_fail(conn, psprintf("describing %s", object), req);

	props = sjson_get(j, "results");
	if (sjson_type(props) != SJSON_ARRAY)
		hs_bad_response(conn, psprintf("describing %s", object), req, "no \"results\" array");
	for (i = 0; i < sjson_array_length(props); i++)
	{
		SJson	   *p = sjson_array_get(props, i);
		SyncField  *f = palloc0(sizeof(SyncField));
		const char *type = sjson_get_string(p, "type");
		const char *name = sjson_get_string(p, "name");
		bool		ro = sjson_bool(sjson_get(sjson_get(p, "modificationMetadata"), "readOnlyValue"), false) ||
			sjson_bool(sjson_get(p, "calculated"), false);

		if (name == NULL || sjson_bool(sjson_get(p, "archived"), false))
			continue;
		f->remote_name = pstrdup(name);
		f->label = sjson_get_string(p, "label") ? pstrdup(sjson_get_string(p, "label")) : NULL;
		f->remote_type = pstrdup(type ? type : "unknown");
		f->local_type = type ? (char *) local_type_for(type, sjson_get_string(p, "fieldType")) : NULL;
		f->createable = f->updateable = !ro;
		f->nillable = true;
		f->unique = sjson_bool(sjson_get(p, "hasUniqueValue"), false) ||
			(strcmp(obj, "contacts") == 0 && strcmp(name, "email") == 0);
		f->external_id = f->unique;
		if (strcmp(name, "hs_object_id") == 0)
		{
			f->role = FIELD_ID;
			f->local_type = "text";
			f->createable = f->updateable = false;
		}
		else if (strcmp(name, stamp) == 0)
		{
			f->role = FIELD_STAMP;
			f->createable = f->updateable = false;
		}
		out = lappend(out, f);
	}
	/* associations as reference fields, e.g. a contact's company */
	for (i = 0; i < lengthof(hs_assocs); i++)
	{
		SyncField  *f;

		if (strcmp(hs_assocs[i].from, obj) != 0)
			continue;
		f = palloc0(sizeof(SyncField));
		f->remote_name = psprintf(HS_ASSOC_PREFIX "%s", hs_assocs[i].to);
		f->label = psprintf("Associated %s record ID", hs_assocs[i].to);
		f->remote_type = "association";
		f->local_type = "text";
		f->createable = f->updateable = f->nillable = true;
		f->reference_to = pstrdup(hs_assocs[i].to);
		out = lappend(out, f);
	}
	return out;
}

static void
hs_check_mirror(SyncConnection *conn, SyncMirror *m)
{
	const char *idem = sjson_get_string(m->options, "idempotency_field");
	HttpRequest *req;
	SJson	   *p;

	if (sjson_has_key(m->options, "filter"))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("mirror option \"filter\" is not supported for HubSpot objects"),
				 errhint("Mirror the whole object and filter with a view.")));
	if (idem == NULL)
		return;
	req = hs_send(conn, "GET", hs_url(conn, "/crm/v3/properties/%s/%s", http_url_encode(m->remote_object),
									  http_url_encode(idem)), NULL, false);
	if (req->outcome == HTTP_DONE && req->status == 404)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid mirror option \"idempotency_field\": %s has no property \"%s\"",
						m->remote_object, idem)));
	if (req->outcome != HTTP_DONE || req->status != 200)
		hs_fail(conn, "checking idempotency_field", req);
	p = provider_response_json(req);
	if (!sjson_bool(sjson_get(p, "hasUniqueValue"), false) &&
		!(strcmp(canonical_object(m->remote_object), "contacts") == 0 && strcmp(idem, "email") == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid mirror option \"idempotency_field\": property \"%s\" of %s is not unique",
						idem, m->remote_object),
				 errhint("HubSpot upserts by email (contacts) or by a property with hasUniqueValue.")));
}

/* ---------------------------------------------------------------------
 * values
 * --------------------------------------------------------------------- */

static int64
timestamptz_to_ms(TimestampTz ts)
{
	return (ts + (TimestampTz) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC) / 1000;
}

/* An ISO stamp (as HubSpot writes them) or epoch ms -> epoch ms; -1 if unreadable. */
static int64
stamp_ms(const char *s)
{
	if (s == NULL || *s == '\0')
		return -1;
	if (strspn(s, "0123456789") == strlen(s))
	{
		/* up to the year 9999; beyond, no calendar conversion is defined */
		if (strlen(s) > 15 || atoll(s) > INT64CONST(253402300799999))
			return -1;
		return atoll(s);
	}
	if (strlen(s) == 10 && s[4] == '-' && s[7] == '-')
		s = psprintf("%sT00:00:00Z", s);	/* a date */
	if (!provider_valid_stamp(s))
		return -1;
	return timestamptz_to_ms(DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
																	 ObjectIdGetDatum(InvalidOid),
																	 Int32GetDatum(-1))));
}

/* epoch ms -> 2024-01-02T08:30:00.123Z */
static char *
ms_iso(int64 ms)
{
	pg_time_t	t = (pg_time_t) (ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	char		buf[40];

	struct pg_tm *tm = pg_gmtime(&t);

	if (tm == NULL)
		elog(ERROR, "sync: HubSpot time %lld ms is out of range", (long long) ms);
	pg_strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", tm);
	return psprintf("%s.%03dZ", buf, (int) (ms - (int64) t * 1000));
}

/*
 * A HubSpot property value (always a string) -> PostgreSQL input syntax for
 * the local type; NULL for no value ("" included: HubSpot does not tell an
 * empty value from none) and for values the type cannot hold.
 */
static char *
value_to_pg(const char *local_type, const char *v)
{
	if (v == NULL || *v == '\0')
		return NULL;
	if (strcmp(local_type, "numeric") == 0)
	{
		char	   *end;

		(void) strtod(v, &end);
		return (*end == '\0' && strspn(v, "+-0123456789.eE") == strlen(v)) ? pstrdup(v) : NULL;
	}
	if (strcmp(local_type, "boolean") == 0)
		return pg_strcasecmp(v, "true") == 0 ? pstrdup("true") :
			pg_strcasecmp(v, "false") == 0 ? pstrdup("false") : NULL;
	if (strcmp(local_type, "date") == 0)
	{
		if (strspn(v, "0123456789") == strlen(v))
			return stamp_ms(v) >= 0 ? pnstrdup(ms_iso(stamp_ms(v)), 10) : NULL;
		return (strlen(v) >= 10 && v[4] == '-' && v[7] == '-') ? pnstrdup(v, 10) : NULL;
	}
	if (strcmp(local_type, "timestamptz") == 0)
	{
		if (strspn(v, "0123456789") == strlen(v))
			return stamp_ms(v) >= 0 ? ms_iso(stamp_ms(v)) : NULL;
		return (strlen(v) >= 10 && v[4] == '-') ? pstrdup(v) : NULL;
	}
	if (strcmp(local_type, "text[]") == 0)
		return provider_list_array(v);
	return pstrdup(v);
}

/*
 * An outbound value (JSON text from to_json(), NULL for SQL NULL) -> the
 * string HubSpot takes: "" clears; numbers and booleans as their text;
 * dates YYYY-MM-DD; datetimes ISO 8601 UTC; arrays "a;b".
 */
static char *
value_to_wire(const SyncField *f, const char *json)
{
	char	   *err;
	SJson	   *v;

	if (json == NULL)
		return "";
	if (strcmp(f->local_type, "numeric") == 0 || strcmp(f->local_type, "boolean") == 0)
		return pstrdup(json);
	v = sjson_parse(json, strlen(json), &err);
	if (sjson_type(v) == SJSON_ARRAY)
	{
		StringInfoData s;
		int			i;

		initStringInfo(&s);
		for (i = 0; i < sjson_array_length(v); i++)
		{
			char	   *t = sjson_scalar_text(sjson_array_get(v, i));

			appendStringInfo(&s, "%s%s", i ? ";" : "", t ? t : "");
		}
		return s.data;
	}
	if (strcmp(f->local_type, "timestamptz") == 0 && sjson_string(v))
		return ms_iso(stamp_ms(sjson_string(v)));
	if (sjson_type(v) == SJSON_NULL)
		return "";
	return sjson_scalar_text(v);
}

/* ---------------------------------------------------------------------
 * pull
 * --------------------------------------------------------------------- */

/*
 * The IDs of the records merged into a record (";"-separated, on the
 * merged record): read with every record, mapped or not, so that merges
 * are followed.  A property the object lacks is ignored by HubSpot.
 */
#define HS_MERGED_PROP "hs_merged_object_ids"

static bool
merged_prop_mapped(SyncMirror *m)
{
	int			i;

	for (i = 0; i < m->nfields; i++)
		if (strcmp(m->fields[i].remote_name, HS_MERGED_PROP) == 0)
			return true;
	return false;
}

/* Comma-separated property names to read (mapped properties + the stamp). */
static char *
property_list(SyncMirror *m)
{
	StringInfoData s;
	int			i;

	initStringInfo(&s);
	for (i = 0; i < m->nfields; i++)
	{
		if (is_assoc_field(&m->fields[i]))
			continue;
		appendStringInfo(&s, "%s%s", s.len ? "," : "", m->fields[i].remote_name);
	}
	if (!merged_prop_mapped(m))
		appendStringInfo(&s, "%s%s", s.len ? "," : "", HS_MERGED_PROP);
	return s.data;
}

static SJson *
property_array(SJson *body, SyncMirror *m)
{
	SJson	   *arr = sjson_add_array(body, "properties");
	int			i;

	for (i = 0; i < m->nfields; i++)
		if (!is_assoc_field(&m->fields[i]))
			sjson_append_string(arr, m->fields[i].remote_name);
	if (!merged_prop_mapped(m))
		sjson_append_string(arr, HS_MERGED_PROP);
	return arr;
}

/*
 * A record's hs_merged_object_ids -> the page's merges (each listed ID was
 * merged into this record).  The property keeps every merge of the
 * record's history; the engine acts only on losers it still knows.
 */
static void
note_merges(SyncConnection *conn, const HttpRequest *req, const char *what, SJson *r,
			SyncRecord *rec, SyncPage *page, int *cap)
{
	const char *v = sjson_get_string(sjson_get(r, "properties"), HS_MERGED_PROP);
	char	   *copy,
			   *tok,
			   *save = NULL;

	if (v == NULL || v[0] == '\0')
		return;
	copy = pstrdup(v);
	for (tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save))
	{
		while (*tok == ' ')
			tok++;
		if (*tok == '\0' || strcmp(tok, rec->remote_id) == 0)
			continue;
		if (!hs_valid_remote_id(tok))
			hs_bad_response(conn, what, req,
							psprintf("record %s's %s lists %s, not a HubSpot ID", rec->remote_id,
									 HS_MERGED_PROP, provider_quote_value(tok)));
		if (page->nmerged == *cap)
		{
			*cap = *cap ? *cap * 2 : 16;
			page->merged_ids = page->merged_ids ? repalloc(page->merged_ids, sizeof(char *) * *cap)
				: palloc(sizeof(char *) * *cap);
			page->merged_into = page->merged_into ? repalloc(page->merged_into, sizeof(char *) * *cap)
				: palloc(sizeof(char *) * *cap);
		}
		page->merged_ids[page->nmerged] = pstrdup(tok);
		page->merged_into[page->nmerged++] = rec->remote_id;
	}
}

static const char *
mirror_stamp(SyncMirror *m)
{
	int			i;

	for (i = 0; i < m->nfields; i++)
		if (m->fields[i].role == FIELD_STAMP)
			return m->fields[i].remote_name;
	return stamp_property(m->remote_object);
}

/* Index of the first association field of the mirror, or -1. */
static int
assoc_index(SyncMirror *m, int from)
{
	int			i;

	for (i = from; i < m->nfields; i++)
		if (is_assoc_field(&m->fields[i]))
			return i;
	return -1;
}

/* The id to show for a record's associations (v3 shape): the primary, else the lowest id. */
static char *
pick_v3_association(SJson *results)
{
	const char *best = NULL;
	int			i;

	for (i = 0; i < sjson_array_length(results); i++)
	{
		SJson	   *a = sjson_array_get(results, i);
		const char *id = sjson_get_string(a, "id");
		const char *type = sjson_get_string(a, "type");

		if (id == NULL)
			continue;
		if (type && strstr(type, "unlabeled") == NULL && strstr(type, "_to_") != NULL)
			return pstrdup(id);	/* contact_to_company: the primary */
		if (best == NULL || strlen(id) < strlen(best) ||
			(strlen(id) == strlen(best) && strcmp(id, best) < 0))
			best = id;
	}
	return best ? pstrdup(best) : NULL;
}

/* The same for the v4 shape: [{toObjectId, associationTypes: [{typeId, label}]}] */
static char *
pick_v4_association(SJson *to)
{
	int64		best = -1;
	int			i,
				k;

	for (i = 0; i < sjson_array_length(to); i++)
	{
		SJson	   *a = sjson_array_get(to, i);
		int64		id = sjson_int(sjson_get(a, "toObjectId"), -1);
		SJson	   *types = sjson_get(a, "associationTypes");

		if (id < 0)
		{
			const char *s = sjson_get_string(a, "toObjectId");

			id = s ? atoll(s) : -1;
		}
		if (id < 0)
			continue;
		for (k = 0; k < sjson_array_length(types); k++)
		{
			const char *label = sjson_get_string(sjson_array_get(types, k), "label");

			if (label && strcmp(label, "Primary") == 0)
				return psprintf(INT64_FORMAT, id);
		}
		if (best < 0 || id < best)
			best = id;
	}
	return best >= 0 ? psprintf(INT64_FORMAT, best) : NULL;
}

/* SimplePublicObjects -> page records; the (stamp, id) of the last in stamp order. */
/*
 * One SimplePublicObject -> *rec.  A record without a numeric id, without
 * a properties object, or with an unreadable stamp is the remote's error:
 * the whole response is refused (nothing applied, the cursor stays).
 */
static void
record_from_json(SyncConnection *conn, SyncMirror *m, const HttpRequest *req, const char *what,
				 SJson *r, SyncRecord *rec)
{
	SJson	   *props = sjson_get(r, "properties");
	const char *stamp = mirror_stamp(m);
	const char *st = sjson_get_string(props, stamp);
	const char *id = sjson_get_string(r, "id");
	int64		ms;
	int			k;

	if (sjson_type(r) != SJSON_OBJECT)
		hs_bad_response(conn, what, req, "a record is not a JSON object");
	if (!hs_valid_remote_id(id))
		hs_bad_response(conn, what, req,
						psprintf("a record's id %s is not a HubSpot ID", provider_quote_value(id)));
	if (sjson_type(props) != SJSON_OBJECT)
		hs_bad_response(conn, what, req, psprintf("record %s has no \"properties\" object", id));
	rec->remote_id = pstrdup(id);
	if (st == NULL)
		st = sjson_get_string(r, "updatedAt");
	ms = stamp_ms(st);
	if (st != NULL && ms < 0)
		hs_bad_response(conn, what, req, psprintf("record %s has an unreadable %s", id, stamp));
	rec->stamp = ms >= 0 ? ms_iso(ms) : NULL;
	rec->deleted = sjson_bool(sjson_get(r, "archived"), false);
	rec->values = palloc0(sizeof(char *) * Max(1, m->nfields));
	for (k = 0; k < m->nfields; k++)
	{
		SyncField  *f = &m->fields[k];

		if (is_assoc_field(f))
		{
			SJson	   *assoc = sjson_get(r, "associations");

			rec->values[k] = pick_v3_association(sjson_get(sjson_get(assoc, f->reference_to), "results"));
		}
		else if (f->role == FIELD_DATA)
		{
			SJson	   *v = sjson_get(props, f->remote_name);

			if (sjson_repaired(v) && rec->invalid == NULL)
				rec->invalid = provider_broken_value(f->remote_name);
			/* values are strings; another scalar is passed on as its text */
			rec->values[k] = value_to_pg(f->local_type,
										 sjson_string(v) ? sjson_string(v) : sjson_scalar_text(v));
		}
	}
}

static void
records_to_page(SyncConnection *conn, SyncMirror *m, const HttpRequest *req, const char *what,
				SJson *results, SyncPage *page, int64 *last_ms, int64 *last_id)
{
	int			n = sjson_array_length(results);
	int			i,
				cap = 0;

	if (sjson_type(results) != SJSON_ARRAY)
		hs_bad_response(conn, what, req, "no \"results\" array");
	page->records = palloc0(sizeof(SyncRecord) * Max(1, n));
	page->nrecords = n;
	for (i = 0; i < n; i++)
	{
		SyncRecord *rec = &page->records[i];
		int64		ms,
					id;

		record_from_json(conn, m, req, what, sjson_array_get(results, i), rec);
		note_merges(conn, req, what, sjson_array_get(results, i), rec, page, &cap);
		ms = rec->stamp ? stamp_ms(rec->stamp) : -1;
		id = atoll(rec->remote_id);
		if (ms > *last_ms || (ms == *last_ms && id > *last_id))
		{
			*last_ms = ms;
			*last_id = id;
		}
	}
}

/* The n-th ID of a listing; the response is refused if it is not an ID. */
static char *
listed_id(SyncConnection *conn, const HttpRequest *req, const char *what, SJson *arr, int i)
{
	const char *id = sjson_get_string(sjson_array_get(arr, i), "id");

	if (!hs_valid_remote_id(id))
		hs_bad_response(conn, what, req,
						psprintf("entry %d's id %s is not a HubSpot ID", i + 1, provider_quote_value(id)));
	return pstrdup(id);
}

/*
 * A v4 batch association request (op: "read", "archive",
 * "associate/default") between the mirror's object and the object "to";
 * pulls read with it, pushes change associations.
 */
static HttpRequest *
assoc_request(SyncConnection *conn, SyncMirror *m, const char *to, const char *op, SJson *body)
{
	char	   *text = sjson_serialize(body);
	HttpRequest *req = http_request_new("POST", hs_url(conn, "/crm/v4/associations/%s/%s/batch/%s",
													   http_url_encode(m->remote_object),
													   http_url_encode(to), op));

	http_add_header(req, "Accept", "application/json");
	http_set_body(req, text, strlen(text), "application/json");
	return req;
}

/* Search pages carry no associations: read them (v4 batch read) for the page. */
static void
read_associations(SyncConnection *conn, SyncMirror *m, SyncPage *page)
{
	int			k;

	for (k = assoc_index(m, 0); k >= 0; k = assoc_index(m, k + 1))
	{
		SyncField  *f = &m->fields[k];
		int			nreq = (page->nrecords + HS_BATCH_MAX - 1) / HS_BATCH_MAX;
		HttpRequest **reqs;
		int			r,
					i;

		if (page->nrecords == 0)
			continue;
		reqs = palloc(sizeof(HttpRequest *) * nreq);
		for (r = 0; r < nreq; r++)
		{
			SJson	   *body = sjson_new_object();
			SJson	   *inputs = sjson_add_array(body, "inputs");

			for (i = r * HS_BATCH_MAX; i < Min(page->nrecords, (r + 1) * HS_BATCH_MAX); i++)
				sjson_add_string(sjson_append_object(inputs), "id", page->records[i].remote_id);
			reqs[r] = assoc_request(conn, m, f->reference_to, "read", body);
		}
		check_daily(conn);
		conn_send(conn, reqs, nreq);
		for (r = 0; r < nreq; r++)
		{
			SJson	   *j = provider_response_json(reqs[r]);
			SJson	   *results = sjson_get(j, "results");

			note_limits(conn, reqs[r]);
			if (reqs[r]->outcome != HTTP_DONE || (reqs[r]->status != 200 && reqs[r]->status != 207))
				hs_fail(conn, psprintf("reading %s associations", f->reference_to), reqs[r]);
			for (i = 0; i < sjson_array_length(results); i++)
			{
				SJson	   *res = sjson_array_get(results, i);
				const char *from = sjson_get_string(sjson_get(res, "from"), "id");
				int			x;

				for (x = r * HS_BATCH_MAX; from && x < Min(page->nrecords, (r + 1) * HS_BATCH_MAX); x++)
					if (strcmp(page->records[x].remote_id, from) == 0)
						page->records[x].values[k] = pick_v4_association(sjson_get(res, "to"));
			}
		}
	}
}

/* The list endpoint's URL for one page. */
static char *
list_url(SyncConnection *conn, SyncMirror *m, const char *after, bool archived, bool ids_only)
{
	StringInfoData u;
	int			k;

	initStringInfo(&u);
	appendStringInfoString(&u, hs_url(conn, "/crm/v3/objects/%s?limit=%d", http_url_encode(m->remote_object),
									  HS_LIST_LIMIT));
	appendStringInfo(&u, "&properties=%s", ids_only ? "hs_object_id" : http_url_encode(property_list(m)));
	if (!ids_only)
		for (k = assoc_index(m, 0); k >= 0; k = assoc_index(m, k + 1))
			appendStringInfo(&u, "&associations=%s", http_url_encode(m->fields[k].reference_to));
	if (archived)
		appendStringInfoString(&u, "&archived=true");
	if (after)
		appendStringInfo(&u, "&after=%s", http_url_encode(after));
	return u.data;
}

static SJson *
list_page(SyncConnection *conn, SyncMirror *m, const char *after, bool archived, bool ids_only,
		  const char **next, HttpRequest **reqp)
{
	HttpRequest *req = hs_send(conn, "GET", list_url(conn, m, after, archived, ids_only), NULL, false);
	SJson	   *j = provider_response_json(req);

	if (req->outcome != HTTP_DONE || req->status != 200 || sjson_type(j) != SJSON_OBJECT)
	{
		if (req->outcome == HTTP_DONE && req->status == 400 && hs_error_text(req, NULL) &&
			strstr(hs_error_text(req, NULL), "object type"))
			unknown_object(conn, m->remote_object, req);
		hs_fail(conn, psprintf("listing %s%s", archived ? "archived " : "", m->remote_object), req);
	}
	*next = sjson_get_string(sjson_get(sjson_get(j, "paging"), "next"), "after");
	*reqp = req;
	if (sjson_type(sjson_get(j, "results")) != SJSON_ARRAY)
		hs_bad_response(conn, psprintf("listing %s%s", archived ? "archived " : "", m->remote_object),
						req, "no \"results\" array");
	if (*next && **next == '\0')
		hs_bad_response(conn, psprintf("listing %s%s", archived ? "archived " : "", m->remote_object),
						req, "an empty paging.next.after");
	return sjson_get(j, "results");
}

/* Every live ID, for reconciliation (hard deletes leave no other trace). */
static void
all_ids(SyncConnection *conn, SyncMirror *m, SyncPage *page)
{
	const char *after = NULL;
	int			cap = 1024;

	page->deleted_ids = palloc(sizeof(char *) * cap);
	page->ndeleted_ids = 0;
	page->reconcile = true;
	do
	{
		HttpRequest *req;
		SJson	   *res = list_page(conn, m, after, false, true, &after, &req);
		int			i;

		for (i = 0; i < sjson_array_length(res); i++)
		{
			if (page->ndeleted_ids == cap)
			{
				cap *= 2;
				page->deleted_ids = repalloc(page->deleted_ids, sizeof(char *) * cap);
			}
			page->deleted_ids[page->ndeleted_ids++] =
				listed_id(conn, req, psprintf("listing %s IDs", m->remote_object), res, i);
		}
		after = after ? pstrdup(after) : NULL;
		CHECK_FOR_INTERRUPTS();
	} while (after);
}

static void
add_filter(SJson *filters, const char *prop, const char *op, const char *value)
{
	SJson	   *f = sjson_append_object(filters);

	sjson_add_string(f, "propertyName", prop);
	sjson_add_string(f, "operator", op);
	sjson_add_string(f, "value", value);
}

/*
 * One search page of records changed at or after the window start
 * (since - overlap), or after the keyset position (key_ms, key_id).
 */
static SJson *
search_page(SyncConnection *conn, SyncMirror *m, int64 from_ms, int64 key_ms, int64 key_id,
			int limit, bool descending, int64 *total, bool *more, HttpRequest **reqp)
{
	SJson	   *body = sjson_new_object();
	SJson	   *groups = sjson_add_array(body, "filterGroups");
	SJson	   *sort;
	const char *stamp = mirror_stamp(m);
	HttpRequest *req;
	SJson	   *j;

	if (key_ms >= 0)
	{
		/* (stamp, id) > (key_ms, key_id): equal stamps are not lost */
		add_filter(sjson_add_array(sjson_append_object(groups), "filters"), stamp, "GT",
				   psprintf(INT64_FORMAT, key_ms));
		{
			SJson	   *g = sjson_add_array(sjson_append_object(groups), "filters");

			add_filter(g, stamp, "EQ", psprintf(INT64_FORMAT, key_ms));
			add_filter(g, "hs_object_id", "GT", psprintf(INT64_FORMAT, key_id));
		}
	}
	else if (from_ms >= 0)
		add_filter(sjson_add_array(sjson_append_object(groups), "filters"), stamp, "GTE",
				   psprintf(INT64_FORMAT, from_ms));
	sort = sjson_append_object(sjson_add_array(body, "sorts"));
	sjson_add_string(sort, "propertyName", stamp);
	sjson_add_string(sort, "direction", descending ? "DESCENDING" : "ASCENDING");
	property_array(body, m);
	sjson_add_int(body, "limit", limit);

	req = hs_send(conn, "POST", hs_url(conn, "/crm/v3/objects/%s/search", http_url_encode(m->remote_object)),
				  body, true);
	j = provider_response_json(req);
	if (req->outcome != HTTP_DONE || req->status != 200)
		hs_fail(conn, psprintf("searching %s", m->remote_object), req);
	if (sjson_type(sjson_get(j, "results")) != SJSON_ARRAY)
		hs_bad_response(conn, psprintf("searching %s", m->remote_object), req, "no \"results\" array");
	if (reqp)
		*reqp = req;
	if (total)
		*total = sjson_int(sjson_get(j, "total"), -1);
	if (more)
		*more = sjson_get(sjson_get(j, "paging"), "next") != NULL;
	return sjson_get(j, "results");
}

static int64
cursor_int(SJson *cursor, const char *key, int64 dflt)
{
	return sjson_has_key(cursor, key) ? sjson_int(sjson_get(cursor, key), dflt) : dflt;
}

/* One hs_pull_page call: the cursor it resumes from and the one it writes. */
typedef struct HsPull
{
	SyncConnection *conn;
	SyncMirror *m;
	SyncPage   *page;
	SJson	   *cursor;			/* as stored (NULL: the very first page) */
	SJson	   *cur;			/* the next cursor, being written */
	int64		now_s;
	int64		since;			/* since_ms, -1 if none yet */
	int64		archived_at;
	int64		reconciled_at;
	int64		lag_ms;			/* search index lag (search_lag), ms */
	int64		now_ms;			/* our clock, unix ms */
	int64		since_at;		/* our clock (unix ms) when since last moved */
	bool		settled;		/* every record stamped <= since was read */
} HsPull;

/*
 * since_ms and what is known of it, in every cursor written: since_at and
 * settled (see pull_search_page).
 */
static void
put_since(HsPull *s)
{
	if (s->since < 0)
		return;
	sjson_add_int(s->cur, "since_ms", s->since);
	sjson_add_int(s->cur, "since_at", s->since_at);
	if (s->settled)
		sjson_add_bool(s->cur, "settled", true);
}

/*
 * A backfill page: the next page of the plain listing.  The first page also
 * asks a one-record search for the newest stamp (the increments start
 * there) and the total.  After the last page the incremental mode starts,
 * with an archived listing at once: records archived during the backfill.
 */
static void
pull_backfill_page(HsPull *s)
{
	SyncConnection *conn = s->conn;
	SyncMirror *m = s->m;
	SyncPage   *page = s->page;
	const char *after = sjson_get_string(s->cursor, "after");
	const char *next;
	SJson	   *res;
	HttpRequest *req;
	int64		last_ms = -1,
				last_id = -1;

	if (s->cursor == NULL || !sjson_has_key(s->cursor, "mode"))
	{
		/* the newest stamp now: increments start there; and the total */
		int64		total = -1;
		SJson	   *top = search_page(conn, m, -1, -1, -1, 1, true, &total, NULL, NULL);
		SJson	   *props = sjson_get(sjson_array_get(top, 0), "properties");

		s->since = stamp_ms(sjson_get_string(props, mirror_stamp(m)));
		s->since_at = timestamptz_to_ms(GetCurrentTimestamp());	/* (its answer in) */
		s->settled = false;
		page->total = total;
	}
	res = list_page(conn, m, after, false, false, &next, &req);
	records_to_page(conn, m, req, psprintf("listing %s", m->remote_object), res, page, &last_ms, &last_id);
	put_since(s);
	if (next)
	{
		sjson_add_string(s->cur, "mode", "backfill");
		sjson_add_string(s->cur, "after", next);
		page->more = true;
	}
	else
	{
		/* archived listing right away: records archived during the backfill */
		sjson_add_string(s->cur, "mode", "incremental");
		sjson_add_int(s->cur, "archived_at", 0);
		sjson_add_int(s->cur, "reconciled_at", s->now_s);
		page->backfill_done = true;
	}
}

/*
 * A search run is over, having seen stamps up to run_ms; it started at
 * run_at (our clock).  Newer stamps move since on (and unsettle it).  Else,
 * if the run started 2 x search_lag after since last moved, the mirror is
 * settled: every record stamped <= since was written before since_at (the
 * record stamped since had been read by then), so the index held all of
 * them search_lag later, and this run, which read the overlap, saw them.
 * The second search_lag is a margin for HubSpot's servers' clocks (a
 * record stamped a little before since may have been written a little
 * after it).  A settled mirror's searches start after since: while nothing
 * changes they match nothing, instead of the last burst's search_lag.
 */
static void
end_search_run(HsPull *s, int64 run_ms, int64 run_at)
{
	if (run_ms > s->since)
	{
		/* now, the run's answers all in: every record it saw was written by then */
		s->since = run_ms;
		s->since_at = timestamptz_to_ms(GetCurrentTimestamp());
		s->settled = false;
	}
	else if (s->since >= 0 && run_at - s->since_at >= 2 * s->lag_ms)
		s->settled = true;
}

/*
 * The search phase: the next page of records changed since the window
 * start (since, less the search index lag; just after since once settled),
 * paged by keyset.  Returns true when the run goes on (the cursor of its
 * next page written); when it is over, since moves to the newest stamp it
 * saw.
 */
static bool
pull_search_page(HsPull *s)
{
	SyncConnection *conn = s->conn;
	SyncMirror *m = s->m;
	SyncPage   *page = s->page;
	int64		key_ms = cursor_int(s->cursor, "key_ms", -1);
	int64		key_id = cursor_int(s->cursor, "key_id", -1);
	int64		run_ms = cursor_int(s->cursor, "run_ms", s->since);
	int64		run_at = key_ms >= 0 ? cursor_int(s->cursor, "run_at", s->now_ms) : s->now_ms;
	int64		from = s->since < 0 ? -1 : s->settled ? s->since + 1 : s->since - s->lag_ms;
	int64		last_ms = -1,
				last_id = -1;
	bool		more = false;
	SJson	   *res;
	HttpRequest *req;

	res = search_page(conn, m, from, key_ms, key_id, HS_SEARCH_LIMIT, false, NULL, &more, &req);
	records_to_page(conn, m, req, psprintf("searching %s", m->remote_object), res, page,
					&last_ms, &last_id);
	read_associations(conn, m, page);
	if (last_ms > run_ms)
		run_ms = last_ms;
	if (more && page->nrecords > 0)
	{
		/* keyset paging: never an offset, so never the 10,000 cap */
		put_since(s);
		sjson_add_int(s->cur, "key_ms", last_ms);
		sjson_add_int(s->cur, "key_id", last_id);
		sjson_add_int(s->cur, "run_ms", run_ms);
		sjson_add_int(s->cur, "run_at", run_at);
		sjson_add_string(s->cur, "phase", "search");
		sjson_add_int(s->cur, "archived_at", s->archived_at);
		sjson_add_int(s->cur, "reconciled_at", s->reconciled_at);
		page->more = true;
		return true;
	}
	end_search_run(s, run_ms, run_at);
	return false;
}

/*
 * The archived phase (soft deletes): the next page of the archived listing,
 * as deleted IDs.  Returns true when more pages follow (the cursor of the
 * next one written); when it is over, archived_at is now.
 */
static bool
pull_archived_page(HsPull *s)
{
	SyncPage   *page = s->page;
	const char *after = sjson_get_string(s->cursor, "archived_after");
	const char *next;
	HttpRequest *req;
	SJson	   *res = list_page(s->conn, s->m, after, true, true, &next, &req);
	int			i;

	page->ndeleted_ids = sjson_array_length(res);
	page->deleted_ids = palloc(sizeof(char *) * Max(1, page->ndeleted_ids));
	for (i = 0; i < page->ndeleted_ids; i++)
		page->deleted_ids[i] = listed_id(s->conn, req, psprintf("listing archived %s", s->m->remote_object),
										 res, i);
	put_since(s);
	sjson_add_int(s->cur, "reconciled_at", s->reconciled_at);
	if (next)
	{
		sjson_add_string(s->cur, "phase", "archived");
		sjson_add_string(s->cur, "archived_after", next);
		sjson_add_int(s->cur, "archived_at", s->archived_at);
		page->more = true;
		return true;
	}
	s->archived_at = s->now_s;
	return false;
}

/*
 * A phase is over: the cursor names the next one.  After a search run, the
 * delete checks that are due (archived listing, then reconciliation) follow
 * as further pages; otherwise the next search waits for the next round.
 */
static void
pull_next_phase(HsPull *s, const char *phase, bool run_done)
{
	double		archived_every = opt_interval(s->conn->options, "archived_interval", HS_DEFAULT_ARCHIVED_S);
	double		reconcile_every = opt_interval(s->conn->options, "reconcile_interval", HS_DEFAULT_RECONCILE_S);

	put_since(s);
	sjson_add_int(s->cur, "archived_at", s->archived_at);
	sjson_add_int(s->cur, "reconciled_at", s->reconciled_at);
	if (run_done && s->now_s - s->archived_at >= archived_every)
	{
		sjson_add_string(s->cur, "phase", "archived");
		s->page->more = true;
	}
	else if ((run_done || phase == NULL || strcmp(phase, "archived") == 0) &&
			 s->now_s - s->reconciled_at >= reconcile_every)
	{
		sjson_add_string(s->cur, "phase", "reconcile");
		s->page->more = true;
	}
	else
		sjson_add_string(s->cur, "phase", "search");
}

/*
 * Cursor (ours, stored by the engine):
 *   {"mode": "backfill", "after": list token, "since_ms": newest stamp when the backfill began,
 *    "since_at"}
 *   {"mode": "incremental", "since_ms": newest stamp fully applied (absent: none yet),
 *    "since_at": our clock (unix ms) when since_ms last moved,
 *    "settled": true once every record stamped <= since_ms was read (searches then start after it),
 *    "key_ms", "key_id": keyset position while a search run is under way,
 *    "run_ms": newest stamp seen by the run, "run_at": when the run started (our clock, unix ms),
 *    "phase": "search" | "archived" | "reconcile", "archived_after": list token,
 *    "archived_at", "reconciled_at": when those last completed (unix seconds, our clock)}
 */
static void
hs_pull_page(SyncConnection *conn, SyncMirror *m, SJson *cursor, SyncPage *page)
{
	const char *mode = sjson_get_string(cursor, "mode");
	const char *phase;
	bool		run_done = false;
	HsPull		s;

	s.conn = conn;
	s.m = m;
	s.page = page;
	s.cursor = cursor;
	s.cur = sjson_new_object();
	s.now_ms = timestamptz_to_ms(GetCurrentTimestamp());
	s.now_s = s.now_ms / 1000;
	s.since = cursor_int(cursor, "since_ms", -1);
	s.archived_at = cursor_int(cursor, "archived_at", 0);
	s.reconciled_at = cursor_int(cursor, "reconciled_at", s.now_s);
	s.lag_ms = (int64) (opt_interval(conn->options, "search_lag", HS_DEFAULT_SEARCH_LAG_S) * 1000);

	/*
	 * A cursor without since_at (written before it existed) counts as moved
	 * now: not settled.  Our clock set back must not delay settling for as
	 * long: since_at is never later than now.
	 */
	s.since_at = Min(cursor_int(cursor, "since_at", s.now_ms), s.now_ms);
	s.settled = sjson_has_key(cursor, "since_at") && sjson_bool(sjson_get(cursor, "settled"), false);

	conn_ensure_auth(conn);
	page->cursor = s.cur;
	if (mode == NULL || strcmp(mode, "backfill") == 0)
	{
		pull_backfill_page(&s);
		return;
	}

	sjson_add_string(s.cur, "mode", "incremental");
	phase = sjson_get_string(cursor, "phase");
	if (phase == NULL || strcmp(phase, "search") == 0)
	{
		if (pull_search_page(&s))
			return;
		run_done = true;
	}
	else if (strcmp(phase, "archived") == 0)
	{
		if (pull_archived_page(&s))
			return;
	}
	else
	{
		/* reconcile: the full list of live IDs; the rest were hard-deleted */
		all_ids(conn, m, page);
		s.reconciled_at = s.now_s;
	}
	pull_next_phase(&s, phase, run_done);
}

/* ---------------------------------------------------------------------
 * push
 * --------------------------------------------------------------------- */

static int
hs_batch_max(SyncConnection *conn, SyncMirror *m, char op)
{
	return HS_BATCH_MAX;
}

typedef enum HsKind
{
	HS_CREATE,
	HS_UPSERT,
	HS_UPDATE,
	HS_ARCHIVE
} HsKind;

/* A group of items that go in one request (and may be bisected). */
typedef struct HsChunk
{
	HsKind		kind;
	int			n;
	int		   *idx;			/* into items */
} HsChunk;

typedef struct HsPush
{
	SyncConnection *conn;
	SyncMirror *m;
	SyncPushItem *items;
	const char *idem;			/* idempotency_field */
	int			idem_k;			/* its field index if mapped, else -1 */
	char	  **upsert_key;		/* per item, for HS_UPSERT */
	const char *stamp;
} HsPush;

static bool
has_properties(HsPush *p, SyncPushItem *it)
{
	int			k;

	for (k = 0; k < p->m->nfields; k++)
		if (it->send[k] && !is_assoc_field(&p->m->fields[k]) && p->m->fields[k].role == FIELD_DATA)
			return true;
	return false;
}

static char *
json_string_value(const char *json)
{
	char	   *err;
	SJson	   *v;

	if (json == NULL)
		return NULL;
	v = sjson_parse(json, strlen(json), &err);
	return sjson_scalar_text(v);
}

static HttpRequest *
chunk_request(HsPush *p, HsChunk *c)
{
	static const char *const ops[] = {"create", "upsert", "update", "archive"};
	SJson	   *body = sjson_new_object();
	SJson	   *inputs = sjson_add_array(body, "inputs");
	HttpRequest *req;
	char	   *text;
	int			i,
				k;

	for (i = 0; i < c->n; i++)
	{
		SyncPushItem *it = &p->items[c->idx[i]];
		SJson	   *in = sjson_append_object(inputs);
		SJson	   *props;

		if (c->kind == HS_ARCHIVE)
		{
			sjson_add_string(in, "id", it->remote_id);
			continue;
		}
		if (c->kind == HS_UPDATE)
			sjson_add_string(in, "id", it->remote_id);
		else if (c->kind == HS_UPSERT)
		{
			sjson_add_string(in, "id", p->upsert_key[c->idx[i]]);
			sjson_add_string(in, "idProperty", p->idem);
		}
		props = sjson_add_object(in, "properties");
		for (k = 0; k < p->m->nfields; k++)
		{
			SyncField  *f = &p->m->fields[k];

			if (!it->send[k] || f->role != FIELD_DATA || is_assoc_field(f))
				continue;
			if (c->kind == HS_UPSERT && strcmp(f->remote_name, p->idem) == 0)
				continue;		/* it is the input's id */
			sjson_add_string(props, f->remote_name, value_to_wire(f, it->values[k]));
		}
		if (c->kind == HS_CREATE)
		{
			/* associations travel with a plain create: atomic, and no extra call */
			SJson	   *assocs = NULL;

			for (k = assoc_index(p->m, 0); k >= 0; k = assoc_index(p->m, k + 1))
			{
				const HsAssoc *a = assoc_for(p->m->remote_object, p->m->fields[k].remote_name);
				char	   *to = it->send[k] ? json_string_value(it->values[k]) : NULL;
				SJson	   *as,
						   *ty;

				if (a == NULL || to == NULL)
					continue;
				if (assocs == NULL)
					assocs = sjson_add_array(in, "associations");
				as = sjson_append_object(assocs);
				sjson_add_string(sjson_add_object(as, "to"), "id", to);
				ty = sjson_append_object(sjson_add_array(as, "types"));
				sjson_add_string(ty, "associationCategory", "HUBSPOT_DEFINED");
				sjson_add_int(ty, "associationTypeId", a->type_id);
			}
		}
		sjson_add_string(in, "objectWriteTraceId", psprintf(INT64_FORMAT, it->outbox_id));
	}
	text = sjson_serialize(body);
	req = http_request_new("POST", hs_url(p->conn, "/crm/v3/objects/%s/batch/%s",
										  http_url_encode(p->m->remote_object), ops[c->kind]));
	http_add_header(req, "Accept", "application/json");
	http_set_body(req, text, strlen(text), "application/json");
	return req;
}

/* The item of this chunk with this trace id (= outbox id), or -1. */
static int
find_trace(HsPush *p, HsChunk *c, const char *trace)
{
	int64		id;
	int			i;

	if (trace == NULL)
		return -1;
	id = atoll(trace);
	for (i = 0; i < c->n; i++)
		if (p->items[c->idx[i]].outbox_id == id)
			return c->idx[i];
	return -1;
}

static int
find_remote_id(HsPush *p, HsChunk *c, const char *id)
{
	int			i;

	for (i = 0; id && i < c->n; i++)
	{
		SyncPushItem *it = &p->items[c->idx[i]];

		if (it->remote_id && strcmp(it->remote_id, id) == 0)
			return c->idx[i];
	}
	return -1;
}

static char *
joined(SJson *arr)
{
	StringInfoData s;
	int			i;

	initStringInfo(&s);
	for (i = 0; i < sjson_array_length(arr); i++)
	{
		char	   *t = sjson_scalar_text(sjson_array_get(arr, i));

		appendStringInfo(&s, "%s%s", i ? "," : "", t ? t : "");
	}
	return s.len ? s.data : NULL;
}

static void
reject(SyncPushItem *it, const char *code, const char *msg, const char *fields)
{
	it->result = PUSH_REJECTED;
	it->error_code = pstrdup(code ? code : "REJECTED");
	it->error_message = pstrdup(msg ? msg : "rejected without a message");
	it->error_fields = fields ? pstrdup(fields) : NULL;
}

/* Property names a whole-batch validation error names (errors[].context.propertyName). */
static char *
error_properties(SJson *j)
{
	StringInfoData s;
	SJson	   *errs = sjson_get(j, "errors");
	int			i,
				k;

	initStringInfo(&s);
	for (i = 0; i < sjson_array_length(errs); i++)
	{
		SJson	   *names = sjson_get(sjson_get(sjson_array_get(errs, i), "context"), "propertyName");

		for (k = 0; k < sjson_array_length(names); k++)
			if (sjson_string(sjson_array_get(names, k)))
				appendStringInfo(&s, "%s%s", s.len ? "," : "", sjson_string(sjson_array_get(names, k)));
	}
	return s.len ? s.data : NULL;
}

/*
 * Is every problem in this 400 about a property as such (it does not exist,
 * it is read-only) rather than a value?  Then every input sending one of
 * those properties fails, and bisecting would only cost requests.
 */
static bool
schema_errors_only(SJson *j)
{
	SJson	   *errs = sjson_get(j, "errors");
	int			i;

	if (sjson_array_length(errs) == 0)
		return false;
	for (i = 0; i < sjson_array_length(errs); i++)
	{
		const char *code = sjson_get_string(sjson_array_get(errs, i), "code");

		if (code == NULL || (strcmp(code, "PROPERTY_DOESNT_EXIST") != 0 && strcmp(code, "READ_ONLY_VALUE") != 0))
			return false;
	}
	return true;
}

static bool
item_sends(HsPush *p, SyncPushItem *it, const char *names)
{
	int			k;

	for (k = 0; k < p->m->nfields; k++)
	{
		const char *n = p->m->fields[k].remote_name;
		const char *hit;

		if (!it->send[k])
			continue;
		for (hit = strstr(names, n); hit; hit = strstr(hit + 1, n))
			if ((hit == names || hit[-1] == ',') && (hit[strlen(n)] == ',' || hit[strlen(n)] == '\0'))
				return true;
	}
	return false;
}

/*
 * An archive batch's 2xx answer.  204 No Content is HubSpot's answer; a 2xx
 * with a body that is not a JSON object (an HTML page from a proxy) or that
 * is an error ({status, message, category}) proves nothing: every input is
 * retried.
 */
static void
archive_results(HsPush *p, HsChunk *c, HttpRequest *req, SJson *j)
{
	bool		done = req->status == 204 ||
		(sjson_type(j) == SJSON_OBJECT && !sjson_has_key(j, "category") &&
		 !sjson_has_key(j, "message"));
	int			i;

	for (i = 0; i < c->n; i++)
	{
		SyncPushItem *it = &p->items[c->idx[i]];

		it->result = done ? PUSH_OK : PUSH_RETRY;
		if (!done)
		{
			it->error_code = "BAD_RESPONSE";
			it->error_message = psprintf("HubSpot answered HTTP %ld to an archive with an unreadable body",
										 req->status);
		}
	}
}

/*
 * The inputs a 2xx answer reports written (results[], found by trace ID,
 * or for an update by record ID) are done; a create takes its new record's
 * ID and stamp, unless that is no HubSpot ID: then it is parked, never
 * created again (the record may exist remotely).
 */
static void
apply_input_results(HsPush *p, HsChunk *c, SJson *results)
{
	int			i;

	for (i = 0; i < sjson_array_length(results); i++)
	{
		SJson	   *r = sjson_array_get(results, i);
		int			x = find_trace(p, c, sjson_get_string(r, "objectWriteTraceId"));
		SyncPushItem *it;
		const char *st;

		if (x < 0 && c->kind == HS_UPDATE)
			x = find_remote_id(p, c, sjson_get_string(r, "id"));
		if (x < 0)
			continue;
		it = &p->items[x];
		it->result = PUSH_OK;
		if (it->op == 'I' && sjson_get_string(r, "id") && !hs_valid_remote_id(sjson_get_string(r, "id")))
		{
			/* it may exist remotely: parked, never created again */
			it->result = PUSH_REJECTED;
			it->error_code = "INVALID_REMOTE_ID";
			it->error_message = psprintf("HubSpot reported success but returned %s, which is not a HubSpot ID; the record may exist remotely",
										 provider_quote_value(sjson_get_string(r, "id")));
		}
		else if (it->op == 'I' && sjson_get_string(r, "id"))
		{
			it->new_remote_id = pstrdup(sjson_get_string(r, "id"));
			st = sjson_get_string(sjson_get(r, "properties"), p->stamp);
			if (st == NULL)
				st = sjson_get_string(r, "updatedAt");
			it->new_stamp = stamp_ms(st) >= 0 ? ms_iso(stamp_ms(st)) : NULL;
		}
	}
}

/*
 * The per-input errors of a 2xx (207 Multi-Status) answer: each rejects
 * the inputs it names by trace ID (or, naming none, by record ID), with
 * HubSpot's category, message and property names.
 */
static void
apply_input_errors(HsPush *p, HsChunk *c, SJson *errors)
{
	int			i;

	for (i = 0; i < sjson_array_length(errors); i++)
	{
		SJson	   *e = sjson_array_get(errors, i);
		SJson	   *ctx = sjson_get(e, "context");
		SJson	   *traces = sjson_get(ctx, "objectWriteTraceId");
		SJson	   *ids = sjson_get(ctx, "ids");
		const char *ecat = sjson_get_string(e, "category");
		const char *sub = sjson_get_string(e, "subCategory");
		char	   *code = ecat ? (sub ? psprintf("%s.%s", ecat, sub) : pstrdup(ecat)) : "UNKNOWN";
		char	   *fields = joined(sjson_get(ctx, "propertyName"));
		int			t;

		for (t = 0; t < sjson_array_length(traces); t++)
		{
			int			x = find_trace(p, c, sjson_scalar_text(sjson_array_get(traces, t)));

			if (x >= 0)
				reject(&p->items[x], code, sjson_get_string(e, "message"), fields);
		}
		if (sjson_array_length(traces) == 0)
			for (t = 0; t < sjson_array_length(ids); t++)
			{
				int			x = find_remote_id(p, c, sjson_scalar_text(sjson_array_get(ids, t)));

				if (x >= 0)
					reject(&p->items[x], code, sjson_get_string(e, "message"), fields);
			}
	}
}

/* Inputs a 2xx answer says nothing about: retried. */
static void
retry_unanswered(HsPush *p, HsChunk *c, HttpRequest *req)
{
	int			i;

	for (i = 0; i < c->n; i++)
	{
		SyncPushItem *it = &p->items[c->idx[i]];

		if (it->result == PUSH_PENDING)
		{
			it->result = PUSH_RETRY;
			it->error_code = "NO_RESULT";
			it->error_message = psprintf("HubSpot answered HTTP %ld without a result for this input", req->status);
		}
	}
}

/*
 * A whole-batch validation error (400) or conflict (409) fails every input
 * for the sake of a few.  A single input is rejected.  When every error is
 * about a property as such, the inputs that send the named properties are
 * rejected and the rest go again; otherwise both halves go again, until the
 * bad inputs stand alone.  Returns the chunks to send again.
 */
static List *
batch_rejected(HsPush *p, HsChunk *c, HttpRequest *req, SJson *j, const char *cat, const char *msg)
{
	int			i;

	if (c->n == 1)
	{
		reject(&p->items[c->idx[0]], cat ? cat : "CONFLICT", msg, error_properties(j));
		return NIL;
	}
	if (req->status == 400 && schema_errors_only(j))
	{
		/* reject the inputs that send the named properties, resend the rest */
		char	   *names = error_properties(j);
		HsChunk    *rest = palloc0(sizeof(HsChunk));

		rest->kind = c->kind;
		rest->idx = palloc(sizeof(int) * c->n);
		for (i = 0; i < c->n; i++)
		{
			SyncPushItem *it = &p->items[c->idx[i]];

			if (names && item_sends(p, it, names))
				reject(it, cat, msg, names);
			else
				rest->idx[rest->n++] = c->idx[i];
		}
		if (rest->n < c->n)
			return rest->n > 0 ? list_make1(rest) : NIL;
	}
	/* bisect: the halves go again, until the bad inputs stand alone */
	{
		HsChunk    *a = palloc0(sizeof(HsChunk));
		HsChunk    *b = palloc0(sizeof(HsChunk));

		a->kind = b->kind = c->kind;
		a->n = c->n / 2;
		a->idx = c->idx;
		b->n = c->n - a->n;
		b->idx = c->idx + a->n;
		return list_make2(a, b);
	}
}

/*
 * The whole request failed: every input is retried (transient failures, an
 * expired token; after the pause HubSpot or the daily budget asks for) or
 * rejected, with HubSpot's words or the transport's.
 */
static void
request_failed(HsPush *p, HsChunk *c, HttpRequest *req, const char *cat, char *msg)
{
	int			i;

	for (i = 0; i < c->n; i++)
	{
		SyncPushItem *it = &p->items[c->idx[i]];
		bool		daily = cat && strcmp(cat, "DAILY") == 0;

		if (conn_transient(req) || (req->outcome == HTTP_DONE && req->status == 401))
		{
			it->result = PUSH_RETRY;
			it->retry_after_s = daily ? 600 :
				(req->outcome == HTTP_DONE && req->status == 429) ? (int) ((conn_throttle_ms(p->conn, req) + 999) / 1000) :
				(req->outcome == HTTP_DONE && req->status == 401) ? 60 : 0;
		}
		else
			it->result = PUSH_REJECTED;
		it->error_code = cat ? pstrdup(cat) : (req->outcome == HTTP_DONE ? psprintf("HTTP_%ld", req->status) : "TRANSPORT");
		it->error_message = req->outcome == HTTP_DONE ?
			(msg ? msg : psprintf("unreadable response (HTTP %ld)", req->status)) :
			pstrdup(http_outcome_text(req));
	}
}

/*
 * Results of one request.  Returns the chunks to send again (bisected
 * halves, or the inputs left after rejecting the bad ones); NIL if done.
 */
static List *
chunk_results(HsPush *p, HsChunk *c, HttpRequest *req)
{
	SJson	   *j = provider_response_json(req);
	char	   *cat = NULL;
	char	   *msg;

	note_limits(p->conn, req);
	if (req->outcome == HTTP_DONE && (req->status == 200 || req->status == 201 || req->status == 207 ||
									  req->status == 204))
	{
		if (c->kind == HS_ARCHIVE)
			archive_results(p, c, req, j);
		else
		{
			apply_input_results(p, c, sjson_get(j, "results"));
			apply_input_errors(p, c, sjson_get(j, "errors"));
			retry_unanswered(p, c, req);
		}
		return NIL;
	}

	msg = hs_error_text(req, &cat);
	if (req->outcome == HTTP_DONE &&
		((req->status == 400 && cat && strcmp(cat, "VALIDATION_ERROR") == 0) || req->status == 409))
		return batch_rejected(p, c, req, j, cat, msg);

	request_failed(p, c, req, cat, msg);
	return NIL;
}

/* Send chunks (at most batch-max each), bisecting whole-batch rejections. */
static void
send_chunks(HsPush *p, List *chunks)
{
	while (chunks != NIL)
	{
		int			n = list_length(chunks);
		HttpRequest **reqs = palloc(sizeof(HttpRequest *) * n);
		List	   *again = NIL;
		ListCell   *lc;
		int			r = 0;

		if (daily_spent(p->conn))
		{
			foreach(lc, chunks)
			{
				HsChunk    *c = lfirst(lc);
				int			i;

				for (i = 0; i < c->n; i++)
				{
					SyncPushItem *it = &p->items[c->idx[i]];

					it->result = PUSH_RETRY;
					it->retry_after_s = 600;
					it->error_code = "DAILY_BUDGET";
					it->error_message = "the connection's daily HubSpot request budget is spent";
				}
			}
			return;
		}
		foreach(lc, chunks)
			reqs[r++] = chunk_request(p, lfirst(lc));
		conn_send(p->conn, reqs, n);
		r = 0;
		foreach(lc, chunks)
			again = list_concat(again, chunk_results(p, lfirst(lc), reqs[r++]));
		chunks = again;
	}
}

static List *
make_chunks(List *chunks, HsKind kind, int *idx, int n)
{
	int			start;

	for (start = 0; start < n; start += HS_BATCH_MAX)
	{
		HsChunk    *c = palloc0(sizeof(HsChunk));

		c->kind = kind;
		c->n = Min(HS_BATCH_MAX, n - start);
		c->idx = idx + start;
		chunks = lappend(chunks, c);
	}
	return chunks;
}

/* Fail an item whose record was written but whose association was not. */
static void
assoc_failed(SyncPushItem *it, const char *msg)
{
	it->result = PUSH_REJECTED;
	it->error_code = "ASSOCIATION_FAILED";
	it->error_message = pstrdup(msg);
	/* no write-back: a retry re-sends it (upserts and updates are idempotent) */
}

/* Send one v4 batch association request (assoc_request) and count it. */
static HttpRequest *
assoc_send(HsPush *p, const char *to, const char *op, SJson *body)
{
	HttpRequest *req = assoc_request(p->conn, p->m, to, op, body);

	conn_send(p->conn, &req, 1);
	note_limits(p->conn, req);
	return req;
}

/* Why an association request failed: HubSpot's message, or the transport's. */
static const char *
assoc_error_text(const HttpRequest *req)
{
	return req->outcome == HTTP_DONE && hs_error_text(req, NULL) ?
		hs_error_text(req, NULL) : http_outcome_text(req);
}

/* The record an item's associations belong to: the one just created, or the row's. */
static const char *
assoc_record_id(const SyncPushItem *it)
{
	return it->new_remote_id ? it->new_remote_id : it->remote_id;
}

/*
 * Step 1 for a batch of items (indexes sel[0..cnt-1]): read what their
 * records are associated with now.  When that fails, every item of the
 * batch fails and false is returned.
 */
static bool
read_current_associations(HsPush *p, const char *to, const int *sel, int cnt, SJson **results)
{
	SJson	   *body = sjson_new_object();
	SJson	   *inputs = sjson_add_array(body, "inputs");
	HttpRequest *req;
	int			i;

	for (i = 0; i < cnt; i++)
		sjson_add_string(sjson_append_object(inputs), "id", assoc_record_id(&p->items[sel[i]]));
	req = assoc_send(p, to, "read", body);
	if (req->outcome != HTTP_DONE || (req->status != 200 && req->status != 207))
	{
		for (i = 0; i < cnt; i++)
			assoc_failed(&p->items[sel[i]],
						 psprintf("reading %s associations failed: %s", to, assoc_error_text(req)));
		return false;
	}
	*results = sjson_get(provider_response_json(req), "results");
	return true;
}

/*
 * Step 2's plan for one item: its record's current associations (results
 * of step 1) to other records than the one the column wants go into the
 * archive request's inputs (ainputs, counted in *narch); the wanted one, if
 * any, into the link request's (linputs, *nlink).
 */
static void
plan_association_change(SyncPushItem *it, int k, SJson *results,
						SJson *ainputs, int *narch, SJson *linputs, int *nlink)
{
	const char *rid = assoc_record_id(it);
	char	   *want = json_string_value(it->values[k]);
	SJson	   *old = NULL;
	int			r,
				t;

	for (r = 0; r < sjson_array_length(results); r++)
	{
		SJson	   *res = sjson_array_get(results, r);

		if (sjson_get_string(sjson_get(res, "from"), "id") &&
			strcmp(sjson_get_string(sjson_get(res, "from"), "id"), rid) == 0)
		{
			SJson	   *tos = sjson_get(res, "to");

			for (t = 0; t < sjson_array_length(tos); t++)
			{
				char	   *id = sjson_scalar_text(sjson_get(sjson_array_get(tos, t), "toObjectId"));

				if (id == NULL || (want && strcmp(id, want) == 0))
					continue;
				if (old == NULL)
				{
					SJson	   *in = sjson_append_object(ainputs);

					sjson_add_string(sjson_add_object(in, "from"), "id", rid);
					old = sjson_add_array(in, "to");
					(*narch)++;
				}
				sjson_add_string(sjson_append_object(old), "id", id);
			}
		}
	}
	if (want)
	{
		SJson	   *in = sjson_append_object(linputs);

		sjson_add_string(sjson_add_object(in, "from"), "id", rid);
		sjson_add_string(sjson_add_object(in, "to"), "id", want);
		(*nlink)++;
	}
}

/*
 * Step 2b: associate the wanted records (HubSpot's default type).  When the
 * request fails, every item of the batch that wants one fails; per-input
 * errors fail the items whose record or wanted record they name.
 */
static void
link_associations(HsPush *p, int k, const char *to, SJson *link, const int *sel, int cnt)
{
	HttpRequest *req = assoc_send(p, to, "associate/default", link);
	SJson	   *errs;
	int			i;

	if (req->outcome != HTTP_DONE || (req->status != 200 && req->status != 201 && req->status != 207))
	{
		for (i = 0; i < cnt; i++)
			if (p->items[sel[i]].values[k] != NULL)
				assoc_failed(&p->items[sel[i]],
							 psprintf("associating %s failed: %s", to, assoc_error_text(req)));
		return;
	}
	errs = sjson_get(provider_response_json(req), "errors");
	for (i = 0; i < sjson_array_length(errs); i++)
	{
		SJson	   *e = sjson_array_get(errs, i);
		SJson	   *ids = sjson_get(sjson_get(e, "context"), "ids");
		int			x,
					t;

		for (x = 0; x < cnt; x++)
		{
			SyncPushItem *it = &p->items[sel[x]];
			char	   *want = json_string_value(it->values[k]);
			const char *rid = assoc_record_id(it);

			for (t = 0; t < sjson_array_length(ids); t++)
			{
				char	   *id = sjson_scalar_text(sjson_array_get(ids, t));

				if (id && ((want && strcmp(id, want) == 0) || strcmp(id, rid) == 0))
					assoc_failed(it, sjson_get_string(e, "message") ?
								 sjson_get_string(e, "message") : "association refused");
			}
		}
	}
}

/*
 * Association field k for one batch of at most HS_BATCH_MAX items (indexes
 * sel[0..cnt-1]): read the current associations, remove those to other
 * records than the wanted one (2a: on failure every item fails), then link
 * the wanted one (2b).
 */
static void
push_association_batch(HsPush *p, int k, const int *sel, int cnt)
{
	const char *to = p->m->fields[k].reference_to;
	SJson	   *arch = sjson_new_object();
	SJson	   *ainputs = sjson_add_array(arch, "inputs");
	SJson	   *link = sjson_new_object();
	SJson	   *linputs = sjson_add_array(link, "inputs");
	SJson	   *results;
	int			narch = 0,
				nlink = 0,
				i;

	if (!read_current_associations(p, to, sel, cnt, &results))
		return;
	for (i = 0; i < cnt; i++)
		plan_association_change(&p->items[sel[i]], k, results, ainputs, &narch, linputs, &nlink);
	if (narch > 0)
	{
		HttpRequest *req = assoc_send(p, to, "archive", arch);

		if (req->outcome != HTTP_DONE || req->status >= 300)
			for (i = 0; i < cnt; i++)
				assoc_failed(&p->items[sel[i]],
							 psprintf("removing %s associations failed: %s", to, assoc_error_text(req)));
	}
	if (nlink > 0)
		link_associations(p, k, to, link, sel, cnt);
}

/*
 * Association fields that were sent with an update or an upsert: remove the
 * record's other associations to that object (the column holds one), then
 * associate the new one (HubSpot's default type).  Plain creates carried
 * theirs inline.
 */
static void
push_associations(HsPush *p, int *idx, int n)
{
	int			k;

	for (k = assoc_index(p->m, 0); k >= 0; k = assoc_index(p->m, k + 1))
	{
		int		   *sel = palloc(sizeof(int) * Max(1, n));
		int			ns = 0,
					start,
					i;

		/* the items written whose row sent this field */
		for (i = 0; i < n; i++)
		{
			SyncPushItem *it = &p->items[idx[i]];

			if (it->result == PUSH_OK && it->send[k])
				sel[ns++] = idx[i];
		}
		for (start = 0; start < ns; start += HS_BATCH_MAX)
			push_association_batch(p, k, sel + start, Min(HS_BATCH_MAX, ns - start));
	}
}

static void
hs_push(SyncConnection *conn, SyncMirror *m, SyncPushItem *items, int n)
{
	HsPush		p = {0};
	char		op = items[0].op;
	int		   *create = palloc(sizeof(int) * n);
	int		   *upsert = palloc(sizeof(int) * n);
	int		   *update = palloc(sizeof(int) * n);
	int		   *after = palloc(sizeof(int) * n);
	int			ncreate = 0,
				nupsert = 0,
				nupdate = 0,
				nafter = 0,
				i,
				k;
	List	   *chunks = NIL;

	conn_ensure_auth(conn);
	p.conn = conn;
	p.m = m;
	p.items = items;
	p.stamp = mirror_stamp(m);
	p.idem = sjson_get_string(m->options, "idempotency_field");
	p.idem_k = -1;
	p.upsert_key = palloc0(sizeof(char *) * n);
	for (k = 0; p.idem && k < m->nfields; k++)
		if (strcmp(m->fields[k].remote_name, p.idem) == 0)
			p.idem_k = k;

	/*
	 * Updates and archives name their record by the remote ID from the
	 * user's table: one that is not a HubSpot ID is rejected on its own.
	 */
	for (i = 0; i < n; i++)
		if (items[i].op != 'I' && !hs_valid_remote_id(items[i].remote_id))
		{
			items[i].result = PUSH_REJECTED;
			items[i].error_code = "INVALID_REMOTE_ID";
			items[i].error_message = psprintf("the remote-id column holds %s, which is not a HubSpot ID (digits only); fix the column's value, then sync.retry()",
											  provider_quote_value(items[i].remote_id));
		}
	if (op == 'D')
	{
		int			nd = 0;

		for (i = 0; i < n; i++)
			if (items[i].result == PUSH_PENDING)
				update[nd++] = i;
		send_chunks(&p, make_chunks(NIL, HS_ARCHIVE, update, nd));
		return;
	}
	for (i = 0; i < n; i++)
	{
		SyncPushItem *it = &items[i];

		if (it->result != PUSH_PENDING)
			continue;

		if (op == 'U')
		{
			if (has_properties(&p, it))
				update[nupdate++] = i;
			else
				it->result = PUSH_OK;	/* nothing but associations changed */
			after[nafter++] = i;
			continue;
		}
		/*
		 * Creates: with an idempotency field, an upsert by the row's own
		 * value of it (e.g. email) or, when the field is not mapped, by the
		 * engine's key; a row without a value is a plain create.
		 */
		if (p.idem && p.idem_k >= 0 && it->values[p.idem_k] != NULL)
			p.upsert_key[i] = json_string_value(it->values[p.idem_k]);
		else if (p.idem && p.idem_k < 0 && it->idempotency_key)
			p.upsert_key[i] = it->idempotency_key;
		if (p.upsert_key[i])
		{
			upsert[nupsert++] = i;
			after[nafter++] = i;
		}
		else
			create[ncreate++] = i;
	}
	chunks = make_chunks(chunks, HS_CREATE, create, ncreate);
	chunks = make_chunks(chunks, HS_UPSERT, upsert, nupsert);
	chunks = make_chunks(chunks, HS_UPDATE, update, nupdate);
	send_chunks(&p, chunks);
	if (assoc_index(m, 0) >= 0 && nafter > 0)
		push_associations(&p, after, nafter);
}

/* ---------------------------------------------------------------------
 * fetch: batch read, 100 IDs a request
 * --------------------------------------------------------------------- */

static void
hs_fetch(SyncConnection *conn, SyncMirror *m, char **ids, int n, SyncPage *page)
{
	char	   *what = psprintf("re-reading %s records", m->remote_object);
	int			start,
				i,
				mcap = 0;

	conn_ensure_auth(conn);
	page->records = palloc0(sizeof(SyncRecord) * Max(1, n));
	page->nrecords = 0;
	page->deleted_ids = palloc(sizeof(char *) * Max(1, n));
	page->ndeleted_ids = 0;
	page->total = -1;
	for (start = 0; start < n; start += HS_BATCH_MAX)
	{
		int			cnt = Min(HS_BATCH_MAX, n - start);
		SJson	   *body = sjson_new_object();
		SJson	   *inputs = sjson_add_array(body, "inputs");
		HttpRequest *req;
		SJson	   *j,
				   *results,
				   *errors;
		bool	   *found = palloc0(sizeof(bool) * cnt);

		for (i = 0; i < cnt; i++)
		{
			if (!hs_valid_remote_id(ids[start + i]))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("connection \"%s\": %s is not a HubSpot ID", conn->name,
								provider_quote_value(ids[start + i]))));
			sjson_add_string(sjson_append_object(inputs), "id", ids[start + i]);
		}
		property_array(body, m);
		req = hs_send(conn, "POST", hs_url(conn, "/crm/v3/objects/%s/batch/read",
										   http_url_encode(m->remote_object)), body, false);
		if (req->outcome != HTTP_DONE || (req->status != 200 && req->status != 207))
			hs_fail(conn, what, req);
		j = provider_response_json(req);
		results = sjson_get(j, "results");
		errors = sjson_get(j, "errors");
		if (sjson_type(results) != SJSON_ARRAY)
			hs_bad_response(conn, what, req, "no \"results\" array");
		for (i = 0; i < sjson_array_length(results); i++)
		{
			SyncRecord *rec = &page->records[page->nrecords];
			int			x,
						k,
						nm = page->nmerged;
			bool		merged = false;

			record_from_json(conn, m, req, what, sjson_array_get(results, i), rec);
			note_merges(conn, req, what, sjson_array_get(results, i), rec, page, &mcap);
			for (x = 0; x < cnt; x++)
				if (!found[x] && strcmp(ids[start + x], rec->remote_id) == 0)
					break;
			if (x < cnt)
			{
				found[x] = true;
				page->nrecords++;
				continue;
			}

			/*
			 * An ID merged away answers with the record it was merged into:
			 * the merge is followed (merge.c), the old ID leaves like a
			 * delete, the record is applied once.
			 */
			for (k = nm; k < page->nmerged; k++)
				for (x = 0; x < cnt; x++)
					if (!found[x] && strcmp(ids[start + x], page->merged_ids[k]) == 0)
					{
						found[x] = true;
						merged = true;
						page->deleted_ids[page->ndeleted_ids++] = pstrdup(ids[start + x]);
					}
			if (!merged)
				hs_bad_response(conn, what, req,
								psprintf("record %s was not asked for (or came twice)", rec->remote_id));
			for (k = 0; k < page->nrecords; k++)
				if (strcmp(page->records[k].remote_id, rec->remote_id) == 0)
					break;
			if (k == page->nrecords)
				page->nrecords++;
		}
		/* the rest must be reported missing (OBJECT_NOT_FOUND), nothing else */
		for (i = 0; i < sjson_array_length(errors); i++)
		{
			const char *cat = sjson_get_string(sjson_array_get(errors, i), "category");

			if (cat == NULL || strcmp(cat, "OBJECT_NOT_FOUND") != 0)
				conn_error_from_response(conn, what, req,
										 sjson_get_string(sjson_array_get(errors, i), "message") ?
										 psprintf("%s (%s)", sjson_get_string(sjson_array_get(errors, i), "message"),
												  cat ? cat : "no category") :
										 "an error without a message");
		}
		for (i = 0; i < cnt; i++)
			if (!found[i])
				page->deleted_ids[page->ndeleted_ids++] = pstrdup(ids[start + i]);
		CHECK_FOR_INTERRUPTS();
	}
	read_associations(conn, m, page);
}

const SyncProvider hubspot_provider = {
	.name = "hubspot",
	.check_options = hs_check_options,
	.is_secret = hs_is_secret,
	.authenticate = hs_authenticate,
	.sign = provider_sign_bearer,
	.test = hs_test,
	.describe = hs_describe,
	.check_mirror = hs_check_mirror,
	.pull_page = hs_pull_page,
	.batch_max = hs_batch_max,
	.push = hs_push,
	.valid_remote_id = hs_valid_remote_id,
	.fetch = hs_fetch,
	.throttle_ms = hs_throttle_ms,
};
