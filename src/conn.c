/*
 * conn.c — connections at run time (see conn.h).
 *
 * A connection's options and secrets are read from the catalog as the
 * extension owner (secrets given as files from their files, see secret.c)
 * and kept in a per-process cache with the credentials the provider
 * obtained, so a worker authenticates once, not once per batch.  The cache
 * entry is rebuilt when the catalog rows change (their xmin) or a secret
 * file changes.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "budget.h"
#include "conn.h"
#include "engine_int.h"
#include "secret.h"

int			sync_request_attempts = 5;

typedef struct ConnEntry
{
	char		name[NAMEDATALEN];	/* hash key */
	SyncConnection *conn;
	TransactionId conn_xmin;
	TransactionId secret_xmin;
	List	   *secret_files;	/* paths of X_file secrets (in conn->cxt) */
	char	   *secret_stamp;	/* their identity when read (in conn->cxt) */
} ConnEntry;

static HTAB *conn_cache = NULL;

/* Deep-merge src into dst (objects merge, everything else replaces). */
static void
merge_into(SJson *dst, const SJson *src)
{
	const char **keys;
	int			n = sjson_object_keys(src, &keys);
	int			i;

	for (i = 0; i < n; i++)
	{
		SJson	   *sv = sjson_get(src, keys[i]);
		SJson	   *dv = sjson_get(dst, keys[i]);

		if (sjson_type(sv) == SJSON_OBJECT && sjson_type(dv) == SJSON_OBJECT)
			merge_into(dv, sv);
		else
			sjson_add_copy(dst, keys[i], sv);
	}
}

const char *
opt_string(SJson *options, const char *path)
{
	char	   *copy = pstrdup(path);
	char	   *part;
	char	   *save = NULL;
	SJson	   *cur = options;

	for (part = strtok_r(copy, ".", &save); part; part = strtok_r(NULL, ".", &save))
		cur = sjson_get(cur, part);
	pfree(copy);
	return sjson_string(cur);
}

/* The extension owner: it owns the catalog, and only it reads the secrets. */
static Oid
catalog_owner(void)
{
	Oid			extoid = get_extension_oid("sync", false);
	HeapTuple	tup = SearchSysCache1(EXTENSIONOID, ObjectIdGetDatum(extoid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for extension %u", extoid);
	owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Read options, secrets and their xmins; false if the connection is unknown.
 * As the extension owner, in a security-restricted operation with a pinned
 * search_path: a role allowed to use a connection (sync.mirror, sync.pull,
 * sync.test_connection granted to it) need not, and should not, be able to
 * read sync.connection_secret.
 */
static bool
load_catalog(const char *name, char **provider, char **options, char **secrets,
			 TransactionId *cxmin, TransactionId *sxmin)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	int			rc;
	bool		found = false;
	Oid			save_user;
	int			save_sec;
	int			nestlevel;

	args[0] = CStringGetTextDatum(name);
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(catalog_owner(),
						   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed: %s", SPI_result_code_string(rc));
	rc = SPI_execute_with_args(
							   "SELECT c.provider, c.options::pg_catalog.text, s.secrets::pg_catalog.text, "
							   "       c.xmin::pg_catalog.text::pg_catalog.int8, s.xmin::pg_catalog.text::pg_catalog.int8 "
							   "FROM sync.connection c LEFT JOIN sync.connection_secret s "
							   "  ON s.connection OPERATOR(pg_catalog.=) c.name "
							   "WHERE c.name OPERATOR(pg_catalog.=) $1",
							   1, types, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "sync: reading connection failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		HeapTuple	t = SPI_tuptable->vals[0];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext spi = MemoryContextSwitchTo(CurTransactionContext);

		*provider = SPI_getvalue(t, d, 1);
		*options = SPI_getvalue(t, d, 2);
		*secrets = SPI_getvalue(t, d, 3);
		*cxmin = (TransactionId) DatumGetInt64(SPI_getbinval(t, d, 4, &isnull));
		*sxmin = isnull ? InvalidTransactionId :
			(TransactionId) DatumGetInt64(SPI_getbinval(t, d, 5, &isnull));
		MemoryContextSwitchTo(spi);
		found = true;
	}
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
	SetUserIdAndSecContext(save_user, save_sec);
	return found;
}

static SJson *
parse_or_error(const char *text, const char *what, const char *name)
{
	char	   *err;
	SJson	   *j = sjson_parse(text, strlen(text), &err);

	if (j == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("%s of connection \"%s\" are not valid JSON: %s", what, name, err)));
	return j;
}

/*
 * A new connection in its own context cxt: options merged with secrets,
 * secrets given as files read (their identity taken first, so a file
 * replaced while it is read is read again next time).
 */
static SyncConnection *
build_conn(MemoryContext cxt, const char *name, const char *provider,
		   const char *options, const char *secrets, List **files, char **stamp)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	SyncConnection *conn;
	const char *ca;
	SJson	   *mi;

	conn = palloc0(sizeof(SyncConnection));
	conn->cxt = cxt;
	conn->name = pstrdup(name);
	conn->provider = provider_lookup(provider, false);
	conn->options = parse_or_error(options, "options", name);
	if (secrets != NULL)
		merge_into(conn->options, parse_or_error(secrets, "secrets", name));
	*files = secret_file_paths(conn->provider, conn->options);
	if (*files != NIL)
	{
		*stamp = secret_stamp(*files);
		conn->options = secret_resolve_files(conn->provider, conn->options, name, NULL);
	}
	ca = opt_string(conn->options, "ca_file");
	conn->ca_file = ca ? pstrdup(ca) : NULL;
	mi = sjson_get(conn->options, "max_in_flight");
	conn->max_in_flight = (int) sjson_int(mi, 0);
	/* generic rate option; providers translate their own in authenticate */
	conn_rate_init(&conn->limit, sjson_double(sjson_get(conn->options, "requests_per_second"), 0), 0);
	conn_rate_share(conn, &conn->limit, "");
	MemoryContextSwitchTo(old);
	return conn;
}

SyncConnection *
conn_get(const char *name)
{
	ConnEntry  *entry;
	bool		found;
	char	   *provider = NULL,
			   *options = NULL,
			   *secrets = NULL;
	TransactionId cxmin,
				sxmin;
	SyncConnection *conn;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt;
	List	   *files = NIL;
	char	   *stamp = NULL;

	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("connection \"%s\" does not exist", name)));
	if (conn_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(ConnEntry);
		conn_cache = hash_create("sync connections", 8, &ctl, HASH_ELEM | HASH_STRINGS);
	}

	if (!load_catalog(name, &provider, &options, &secrets, &cxmin, &sxmin))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("connection \"%s\" does not exist", name),
				 errhint("Create it with sync.create_connection().")));

	entry = hash_search(conn_cache, name, HASH_ENTER, &found);

	/*
	 * Reuse the entry unless the catalog rows changed, or a secret file was
	 * replaced, rewritten or removed since it was read (a stat per file).
	 */
	if (found && entry->conn != NULL &&
		entry->conn_xmin == cxmin && entry->secret_xmin == sxmin)
	{
		char	   *now;
		bool		same;

		if (entry->secret_files == NIL)
			return entry->conn;
		now = secret_stamp(entry->secret_files);
		same = strcmp(now, entry->secret_stamp) == 0;
		pfree(now);
		if (same)
			return entry->conn;
	}

	/* (re)build the entry; the old one, if any, goes away with its context */
	if (found && entry->conn != NULL)
		MemoryContextDelete(entry->conn->cxt);
	entry->conn = NULL;
	entry->secret_files = NIL;
	entry->secret_stamp = NULL;

	cxt = AllocSetContextCreate(TopMemoryContext, "sync connection",
								ALLOCSET_SMALL_SIZES);
	PG_TRY();
	{
		conn = build_conn(cxt, name, provider, options, secrets, &files, &stamp);
		/* options written around sync.create_connection() are checked too */
		conn->provider->check_options(conn->options);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	entry->conn = conn;
	entry->conn_xmin = cxmin;
	entry->secret_xmin = sxmin;
	entry->secret_files = files;
	entry->secret_stamp = stamp;
	return conn;
}

void
conn_invalidate_token(SyncConnection *conn)
{
	if (conn->access_token)
		pfree(conn->access_token);
	conn->access_token = NULL;
}

void
conn_ensure_auth(SyncConnection *conn)
{
	if (conn->access_token == NULL ||
		(conn->token_expires != 0 && GetCurrentTimestamp() >= conn->token_expires))
	{
		MemoryContext old = MemoryContextSwitchTo(conn->cxt);

		conn_invalidate_token(conn);
		conn->provider->authenticate(conn);
		MemoryContextSwitchTo(old);
	}
}

void
conn_sleep_ms(long ms)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), end);

		CHECK_FOR_INTERRUPTS();
		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(left, 1000), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * The one backoff formula of the project: base * 2^(attempt-1), capped.
 * (The exponent is bounded so that the double never overflows.)
 */
long
backoff_base_ms(int attempt, long base_ms, long cap_ms)
{
	double		ms = base_ms * pow(2.0, Min(Max(0, attempt - 1), 62));

	if (ms > cap_ms)
		ms = cap_ms;
	return (long) ms;
}

long
backoff_ms(int attempt, long base_ms, long cap_ms)
{
	double		jitter = 0.75 + 0.5 * pg_prng_double(&pg_global_prng_state);

	return (long) (backoff_base_ms(attempt, base_ms, cap_ms) * jitter);
}

/* (Re)configures a bucket; it stays shared if it was (budget.h). */
void
conn_rate_init(SyncRateLimit *limit, double per_second, double burst)
{
	SharedBudget *shared = limit->shared;

	memset(limit, 0, sizeof(SyncRateLimit));
	limit->rate = limit->rate_max = Max(0.0, per_second);
	limit->capacity = Max(1.0, burst > 0 ? burst : per_second);
	limit->shared = shared;
}

/*
 * The bucket's running state is the one every process of the database
 * shares for this connection and bucket name ("" for the connection's own).
 */
void
conn_rate_share(SyncConnection *conn, SyncRateLimit *limit, const char *bucket)
{
	limit->shared = budget_lookup(conn->name, bucket);
}

/*
 * Until when this process may wait for the rate limiter (0 = no limit).  A
 * push holds a lease on its outbox entries: sleeping past it would let
 * another claimer send the same entries.  Set around a push.
 */
static TimestampTz send_deadline = 0;

void
conn_set_deadline(TimestampTz deadline)
{
	send_deadline = deadline;
}

/*
 * Wait until the token bucket (and any 429 block) lets one request go.
 * Returns false, without waiting, if that would take past the deadline.
 */
static bool
rate_wait(SyncRateLimit *lim)
{
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		wait_ms = 0;
		bool		taken = false;

		budget_bucket_enter(lim->shared, lim);
		if (lim->blocked_until > now)
			wait_ms = TimestampDifferenceMilliseconds(now, lim->blocked_until);
		else if (lim->rate > 0)
		{
			double		elapsed = (lim->at == 0) ? lim->capacity / lim->rate :
				(now - lim->at) / 1000000.0;

			lim->tokens = Min(lim->capacity, lim->tokens + elapsed * lim->rate);
			lim->at = now;
			if (lim->tokens >= 1.0)
			{
				lim->tokens -= 1.0;
				taken = true;
			}
			else
				wait_ms = (long) ceil((1.0 - lim->tokens) * 1000.0 / lim->rate);
		}
		else
			taken = true;
		budget_bucket_leave(lim->shared, lim, true);
		if (taken)
			return true;
		if (send_deadline != 0 &&
			TimestampTzPlusMilliseconds(now, wait_ms) > send_deadline)
			return false;
		conn_sleep_ms(Max(wait_ms, 1));
	}
}

/* More tokens now, without waiting: up to want of them; how many were taken. */
static int
rate_take_now(SyncRateLimit *lim, int want)
{
	int			n = 0;

	budget_bucket_enter(lim->shared, lim);
	while (n < want && (lim->rate <= 0 || lim->tokens >= 1.0))
	{
		if (lim->rate > 0)
			lim->tokens -= 1.0;
		n++;
	}
	budget_bucket_leave(lim->shared, lim, true);
	return n;
}

long
conn_blocked_ms(SyncConnection *conn)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until;

	budget_bucket_enter(conn->limit.shared, &conn->limit);
	until = conn->limit.blocked_until;
	budget_bucket_leave(conn->limit.shared, &conn->limit, false);
	return until > now ? TimestampDifferenceMilliseconds(now, until) : 0;
}

bool
conn_transient(const HttpRequest *req)
{
	/* HTTP_PENDING: never sent (held back by the rate limiter, cancelled) */
	if (req->outcome == HTTP_TIMEOUT || req->outcome == HTTP_CONNECT_FAILED ||
		req->outcome == HTTP_TRANSPORT_FAILED || req->outcome == HTTP_PENDING)
		return true;
	if (req->outcome != HTTP_DONE)
		return false;
	return req->status == 429 || req->status == 408 || req->status >= 500;
}

int
conn_retry_after(const HttpRequest *req)
{
	const char *ra = http_response_header(req, "retry-after");
	long		s;

	if (ra == NULL)
		return 0;
	errno = 0;
	s = strtol(ra, NULL, 10);	/* (a hostile header must not overflow) */
	return (errno == 0 && s > 0 && s < 3600) ? (int) s : 0;
}

/* How long to hold requests after this 429: Retry-After, else the provider's word, else 1 s. */
long
conn_throttle_ms(SyncConnection *conn, const HttpRequest *req)
{
	int			s = conn_retry_after(req);
	long		ms = 0;

	if (s > 0)
		return s * 1000L;
	if (conn->provider->throttle_ms)
		ms = conn->provider->throttle_ms(conn, req);
	return ms > 0 ? ms : 1000L;
}

/* After a 429, hold every request through this bucket for a while. */
static void
note_throttled(SyncConnection *conn, SyncRateLimit *lim, const HttpRequest *req)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													conn_throttle_ms(conn, req));

	budget_bucket_enter(lim->shared, lim);
	lim->blocked_until = Max(lim->blocked_until, until);
	/* adaptive: halve the rate after a 429; the configured rate is the cap */
	if (lim->rate > 0.5)
		lim->rate /= 2.0;
	budget_bucket_leave(lim->shared, lim, true);
}

void
conn_send(SyncConnection *conn, HttpRequest **reqs, int nreqs)
{
	conn_send_limited(conn, &conn->limit, reqs, nreqs);
}

static void note_answers(SyncConnection *conn, SyncRateLimit *lim, HttpRequest **reqs, int nreqs);

/* Requests a connection may have in flight: its option, else sync.http_max_in_flight. */
int
conn_in_flight(SyncConnection *conn)
{
	return conn->max_in_flight > 0 ? conn->max_in_flight : Max(1, sync_http_max_in_flight);
}

/*
 * What every request through the connection carries: its CA file, and the
 * connection's in-flight budget, shared with the database's other
 * processes (budget.h), at the connection's max_in_flight as it is now.
 */
static void
prepare_requests(SyncConnection *conn, HttpRequest **reqs, int nreqs)
{
	int			i;

	budget_set_max(conn->limit.shared, conn_in_flight(conn));
	for (i = 0; i < nreqs; i++)
	{
		if (conn->ca_file && reqs[i]->ca_file == NULL)
			reqs[i]->ca_file = conn->ca_file;
		reqs[i]->budget = conn->limit.shared;
		reqs[i]->budget_wait_ms = IsBackgroundWorker ? 0 : sync_lock_timeout_ms;
	}
}

static void reauthenticate_401(SyncConnection *conn, SyncRateLimit *lim, HttpRequest **reqs, int nreqs);

void
conn_send_limited(SyncConnection *conn, SyncRateLimit *lim, HttpRequest **reqs, int nreqs)
{
	int			i;
	int			start;

	conn_ensure_auth(conn);
	prepare_requests(conn, reqs, nreqs);

	/* waves: as many requests as the rate limiter lets go right now */
	for (start = 0; start < nreqs;)
	{
		int			n = 0;

		if (!rate_wait(lim))
			break;				/* the rest stay HTTP_PENDING: not sent */
		n = 1 + rate_take_now(lim, nreqs - start - 1);
		for (i = start; i < start + n; i++)
			conn->provider->sign(conn, reqs[i]);
		http_run(reqs + start, n, conn->max_in_flight);
		note_answers(conn, lim, reqs + start, n);
		start += n;
	}
	reauthenticate_401(conn, lim, reqs, nreqs);
}

/* The rate limiter learns from answers: a 429 holds and halves, others recover. */
static void
note_answers(SyncConnection *conn, SyncRateLimit *lim, HttpRequest **reqs, int nreqs)
{
	int			i;

	for (i = 0; i < nreqs; i++)
	{
		if (reqs[i]->outcome == HTTP_DONE && reqs[i]->status == 429)
			note_throttled(conn, lim, reqs[i]);
		else
		{
			budget_bucket_enter(lim->shared, lim);
			if (lim->rate < lim->rate_max)
				lim->rate = Min(lim->rate_max, lim->rate * 1.1);
			budget_bucket_leave(lim->shared, lim, true);
		}
	}
}

/* One re-authentication for requests refused with 401, which are sent again. */
static void
reauthenticate_401(SyncConnection *conn, SyncRateLimit *lim, HttpRequest **reqs, int nreqs)
{
	bool		retried_auth = false;
	int			i;

	for (i = 0; i < nreqs; i++)
	{
		if (reqs[i]->outcome != HTTP_DONE || reqs[i]->status != 401)
			continue;
		if (!retried_auth)
		{
			conn_invalidate_token(conn);
			conn_ensure_auth(conn);
			retried_auth = true;
		}
		resetStringInfo(&reqs[i]->response);
		reqs[i]->response_headers = NIL;
		reqs[i]->outcome = HTTP_PENDING;
		if (!rate_wait(lim))
			continue;
		conn->provider->sign(conn, reqs[i]);
		http_run(&reqs[i], 1, 1);
	}
}

/*
 * conn_send, split in two for pipelines: the requests the rate limiter lets
 * go before the deadline are started (the rest stay HTTP_PENDING: not
 * sent), and the call returns while they are on the network.
 */
ConnSend *
conn_send_start(SyncConnection *conn, HttpRequest **reqs, int nreqs)
{
	ConnSend   *cs = palloc0(sizeof(ConnSend));

	cs->reqs = reqs;
	cs->nreqs = nreqs;
	conn_ensure_auth(conn);
	prepare_requests(conn, reqs, nreqs);
	/* one token a request, as conn_send takes them */
	for (cs->nstarted = 0; cs->nstarted < nreqs; cs->nstarted++)
	{
		if (!rate_wait(&conn->limit))
			break;
		conn->provider->sign(conn, reqs[cs->nstarted]);
	}
	/* queued behind other runs, they start only before the deadline too */
	cs->run = http_async_start(reqs, cs->nstarted, conn->max_in_flight, send_deadline);
	return cs;
}

/* Wait for the requests of conn_send_start; then as conn_send (429, 401). */
void
conn_send_finish(SyncConnection *conn, ConnSend *cs)
{
	http_async_finish(cs->run);
	cs->run = NULL;
	note_answers(conn, &conn->limit, cs->reqs, cs->nstarted);
	reauthenticate_401(conn, &conn->limit, cs->reqs, cs->nstarted);
}

void
conn_send_retrying(SyncConnection *conn, HttpRequest *req, int attempts)
{
	conn_send_retrying_limited(conn, &conn->limit, req, attempts);
}

void
conn_send_retrying_limited(SyncConnection *conn, SyncRateLimit *lim, HttpRequest *req, int attempts)
{
	int			attempt;

	if (attempts <= 0)
		attempts = sync_request_attempts;
	for (attempt = 1;; attempt++)
	{
		long		wait;

		conn_send_limited(conn, lim, &req, 1);
		if (!conn_transient(req) || attempt >= attempts)
			return;
		wait = conn_retry_after(req) * 1000L;
		if (wait == 0 && req->outcome == HTTP_DONE && req->status == 429)
			wait = conn_throttle_ms(conn, req);
		if (wait == 0)
			wait = backoff_ms(attempt, 500, 30000);
		ereport(DEBUG1,
				(errmsg("sync: connection \"%s\": %s %s: %s; retrying in %ld ms",
						conn->name, req->method, http_redact_url(req->url), http_outcome_text(req), wait)));
		conn_sleep_ms(wait);
		resetStringInfo(&req->response);
		req->response_headers = NIL;
		req->outcome = HTTP_PENDING;
	}
}

void
conn_note_usage(SyncConnection *conn, const char *usage)
{
	MemoryContext old;

	if (usage == NULL)
		return;
	if (conn->api_usage && strcmp(conn->api_usage, usage) == 0)
		return;
	old = MemoryContextSwitchTo(conn->cxt);
	if (conn->api_usage)
		pfree(conn->api_usage);
	conn->api_usage = pstrdup(usage);
	MemoryContextSwitchTo(old);
}

void
conn_error_from_response(SyncConnection *conn, const char *what,
						 const HttpRequest *req, const char *remote_msg)
{
	if (req->outcome != HTTP_DONE)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("connection \"%s\": %s failed: %s", conn->name, what, http_outcome_text(req)),
				 errhint(req->outcome == HTTP_TLS_FAILED ?
						 "Check the server certificate, or set the connection's \"ca_file\" option." :
						 "Check the connection's URL options and that the host is reachable.")));
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("connection \"%s\": %s failed with HTTP %ld: %s",
					conn->name, what, req->status,
					remote_msg ? remote_msg : "(no message from the remote)")));
}

/*
 * The pipelined push of the connection's provider, if it has one.  (Only
 * Salesforce's so far; HubSpot and NetSuite push one batch at a time.)
 */
const SyncPushPipe *
conn_push_pipe(SyncConnection *conn)
{
	if (conn->provider == &salesforce_provider)
		return &salesforce_push_pipe;
	return NULL;
}
