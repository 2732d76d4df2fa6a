/*
 * conn.h — connections at run time: loading options and secrets, the
 * per-process cache, authentication, rate limiting and request retries.
 */
#ifndef SYNC_CONN_H
#define SYNC_CONN_H

#include "provider.h"

/* The connection, loaded (or reused from the cache) and authenticated. */
extern SyncConnection *conn_get(const char *name);

/* Authenticate now unless the cached credentials are still good. */
extern void conn_ensure_auth(SyncConnection *conn);

/* Forget the cached credentials (e.g. after a 401). */
extern void conn_invalidate_token(SyncConnection *conn);

/*
 * Send requests for a connection: waits for the rate limiter, lets the
 * provider sign each request, runs them concurrently (max_in_flight), and
 * on 401 re-authenticates once and re-sends those requests.  Transport
 * failures and other statuses are left to the caller.
 */
extern void conn_send(SyncConnection *conn, HttpRequest **reqs, int nreqs);

/*
 * conn_send in two halves, for pipelined pushes: start the requests (those
 * the rate limiter lets go before the deadline; the rest stay HTTP_PENDING,
 * not sent) and return while they are on the network; finish waits for
 * them and does what conn_send does after (429s, one re-authentication
 * after a 401).  See http_async_start for the in-flight limit and errors.
 */
typedef struct ConnSend
{
	HttpRequest **reqs;
	int			nreqs;
	int			nstarted;
	HttpAsync  *run;
} ConnSend;
extern ConnSend *conn_send_start(SyncConnection *conn, HttpRequest **reqs, int nreqs);
extern void conn_send_finish(SyncConnection *conn, ConnSend *cs);

/*
 * Providers whose push can be pipelined (push.c): begin builds and starts
 * the requests of a group of items (as provider->push would) and returns
 * while they are on the network; end waits for them and fills in the
 * items' results.  NULL for a provider that does not opt in.
 */
typedef struct SyncPushPipe
{
	void	   *(*begin) (SyncConnection *conn, SyncMirror *m, SyncPushItem *items, int n);
	void		(*end) (SyncConnection *conn, void *call);
} SyncPushPipe;
extern const SyncPushPipe *conn_push_pipe(SyncConnection *conn);
extern const SyncPushPipe salesforce_push_pipe;

/* The same through another token bucket (an endpoint limited separately). */
extern void conn_send_limited(SyncConnection *conn, SyncRateLimit *limit,
							  HttpRequest **reqs, int nreqs);

/*
 * One request, retried on transient failures (429, 5xx, timeouts, dropped
 * connections) with exponential backoff and jitter, honouring Retry-After,
 * up to `attempts` times.  For reads (describe, pull); pushes are retried
 * through the outbox instead.
 */
extern void conn_send_retrying(SyncConnection *conn, HttpRequest *req, int attempts);
extern void conn_send_retrying_limited(SyncConnection *conn, SyncRateLimit *limit,
									   HttpRequest *req, int attempts);

/* A token bucket of per_second requests a second, burst at most (>= 1). */
extern void conn_rate_init(SyncRateLimit *limit, double per_second, double burst);
extern void conn_rate_share(SyncConnection *conn, SyncRateLimit *limit, const char *bucket);
extern int	conn_in_flight(SyncConnection *conn);

/* After a 429: Retry-After, else the provider's throttle_ms, else 1 s (ms). */
extern long conn_throttle_ms(SyncConnection *conn, const HttpRequest *req);

/* Is this response a transient failure worth retrying later? */
extern bool conn_transient(const HttpRequest *req);

/* Seconds the remote asked us to wait (Retry-After), or 0. */
extern int	conn_retry_after(const HttpRequest *req);

/*
 * Never wait for the rate limiter past this time (0 = no limit): requests
 * that would have to wait longer are left unsent (HTTP_PENDING, transient).
 */
extern void conn_set_deadline(TimestampTz deadline);

/* How long the connection's requests are held after a 429 (ms, 0 = not). */
extern long conn_blocked_ms(SyncConnection *conn);

/* Sleep on the latch, serving interrupts. */
extern void conn_sleep_ms(long ms);

/* Record the remote's reported API usage (shown in sync.status). */
extern void conn_note_usage(SyncConnection *conn, const char *usage);

/*
 * Exponential backoff, the one formula: base * 2^(attempt-1), capped
 * (backoff_base_ms); backoff_ms adds +-25% jitter, for requests that many
 * clients may retry at once.
 */
extern long backoff_base_ms(int attempt, long base_ms, long cap_ms);
extern long backoff_ms(int attempt, long base_ms, long cap_ms);

/* Options helpers for providers (NULL-safe). */
extern const char *opt_string(SJson *options, const char *path);

/* ereport helper: the remote said no. */
extern void conn_error_from_response(SyncConnection *conn, const char *what,
									 const HttpRequest *req, const char *remote_msg) pg_attribute_noreturn();

/* GUC */
extern int	sync_request_attempts;

#endif							/* SYNC_CONN_H */
