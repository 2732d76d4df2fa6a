/*
 * http.h — the extension's HTTP client: libcurl's multi interface behind a
 * small API that knows nothing about providers.
 *
 * One long-lived HttpClient per process (keep-alive connections are reused
 * across batches).  http_run() performs a set of requests concurrently, at
 * most max_in_flight at a time, and returns when all are done.  While it
 * waits it also watches the process latch and calls CHECK_FOR_INTERRUPTS(),
 * so SIGTERM, SIGHUP (via the caller's latch handling) and query cancel are
 * served mid-request; an ERROR thrown from there leaves no curl handle,
 * header list, socket or wait set behind (http_run releases them in its
 * PG_CATCH before re-throwing; a FATAL exit releases them at proc_exit).
 *
 * Signals, for callers (background workers in particular):
 *  - SIGTERM with the standard die() handler (or one that calls die()):
 *    nothing to do; CHECK_FOR_INTERRUPTS() inside http_run exits the process
 *    mid-request.
 *  - A handler that only sets a flag (got_sigterm = true; SetLatch(MyLatch)):
 *    use http_run_ext() with a should_stop callback that reads the flag; the
 *    run then ends within milliseconds with the in-flight requests
 *    HTTP_CANCELLED and the rest HTTP_PENDING, and the caller exits cleanly.
 *    Treat both as "outcome unknown / not sent", never as remote failures.
 *  - SIGHUP (SignalHandlerForConfigReload) and other wake-ups: http_run does
 *    not reload the configuration; it re-sets the latch before returning if
 *    it was set during the run, so the caller's loop sees ConfigReloadPending
 *    and its own flags at its next WaitLatch.
 *  - Query cancel / statement_timeout: an ERROR from CHECK_FOR_INTERRUPTS(),
 *    as for any long-running C function; catch it where a round ends.
 *  - Never call http_run while holding a transaction you could avoid, a
 *    snapshot, or a lock: requests can take up to sync.http_timeout.
 *
 * Transport policy: https only, except plain http to loopback hosts
 * (127.0.0.0/8, ::1, localhost) for tests; TLS verification always on
 * (peer and host); an optional CA file per request; no redirects followed;
 * connect and total timeouts; the response body is capped at
 * sync.http_max_response_bytes while it is read; `User-Agent: sync/<version>`.
 * Request/response logging happens at DEBUG2 with secrets redacted
 * (Authorization header values and bodies marked secret are never logged).
 */
#ifndef SYNC_HTTP_H
#define SYNC_HTTP_H

#include "postgres.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

typedef enum HttpOutcome
{
	HTTP_PENDING = 0,
	HTTP_DONE,					/* got a complete response (any status) */
	HTTP_TIMEOUT,				/* connect or total timeout */
	HTTP_CONNECT_FAILED,		/* DNS, refused, unreachable */
	HTTP_TLS_FAILED,			/* certificate did not verify, handshake */
	HTTP_TRANSPORT_FAILED,		/* reset mid-response, protocol error, ... */
	HTTP_TOO_LARGE,				/* body exceeded the cap */
	HTTP_REFUSED,				/* policy: non-https URL to a non-loopback host,
								 * or a malformed URL; nothing was sent */
	HTTP_CANCELLED				/* in flight when http_run_ext's should_stop
								 * said stop: it may or may not have reached
								 * the server (requests never started stay
								 * HTTP_PENDING: certainly not sent) */
} HttpOutcome;

typedef struct HttpHeader
{
	char	   *name;
	char	   *value;
} HttpHeader;

typedef struct HttpRequest
{
	/* filled by the caller (palloc'd in the caller's context) */
	const char *method;			/* "GET", "POST", "PATCH", "PUT", "DELETE" */
	const char *url;
	List	   *headers;		/* of HttpHeader *; Content-Type etc. */
	const char *body;			/* may be NULL */
	size_t		body_len;
	bool		body_is_secret; /* never log the request body */
	const char *ca_file;		/* NULL: system CAs */
	int			timeout_ms;		/* total; 0 = sync.http_timeout */
	void	   *user_data;		/* for the caller */
	struct SharedBudget *budget;	/* in-flight budget shared with other
									 * processes (budget.h); NULL: none */
	int			budget_wait_ms; /* longest wait for a slot of it; 0: no
								 * bound but the run's start deadline */

	/* filled by http_run */
	HttpOutcome outcome;
	long		status;			/* HTTP status when outcome == HTTP_DONE */
	StringInfoData response;	/* body (NUL-terminated) */
	List	   *response_headers;	/* of HttpHeader *, names lower-cased */
	char	   *error;			/* human-readable transport error, or NULL */
	double		elapsed_ms;
	int			new_connections;	/* connections opened for it (0: reused a
									 * keep-alive connection) */
} HttpRequest;

/* Build a request in CurrentMemoryContext. */
extern HttpRequest *http_request_new(const char *method, const char *url);
extern void http_add_header(HttpRequest *req, const char *name, const char *value);
extern void http_set_body(HttpRequest *req, const char *body, size_t len, const char *content_type);

/*
 * Perform the requests concurrently (at most max_in_flight at once, <= 0 means
 * sync.http_max_in_flight).  Every request ends with an outcome; transport
 * failures are outcomes, not ERRORs.  ERRORs are raised only for interrupts
 * (query cancel, termination) and internal failures (out of memory).
 */
extern void http_run(HttpRequest **reqs, int nreqs, int max_in_flight);

/*
 * http_run with a caller-supplied stop check, for processes whose signal
 * handlers set their own flags instead of using die()/the standard interrupt
 * machinery.  The handler must also SetLatch(MyLatch): http_run wakes on the
 * latch, calls CHECK_FOR_INTERRUPTS() and then should_stop(arg); when that
 * returns true, the transfers in flight are aborted (outcome HTTP_CANCELLED),
 * the ones not started stay HTTP_PENDING, and http_run_ext returns normally.
 * should_stop is also called at least once a second.  It must not throw.
 *
 * Both http_run variants reset the latch while they wait; if it was set
 * during the run they set it again before returning, so a wake-up (SIGHUP,
 * a commit notification) is never lost to the caller's own WaitLatch.
 */
typedef bool (*HttpStopCheck) (void *arg);
extern void http_run_ext(HttpRequest **reqs, int nreqs, int max_in_flight,
						 HttpStopCheck should_stop, void *arg);

/*
 * Asynchronous runs, for pipelines (a push that claims and records one
 * batch while the requests of another are on the network).
 * http_async_start() starts the requests (as many as the in-flight limit
 * allows), hands curl what can be sent at once, and returns a handle;
 * http_async_finish() drives until that run's requests are all done (their
 * outcomes as with http_run) and releases it.  Several runs may be
 * started: they share one in-flight budget (each run's limit counts the
 * transfers of all of them), and their requests start in order, oldest run
 * first, as slots free up, so no more than max_in_flight requests are in
 * flight at any moment.  Between the calls nothing drives the transfers
 * (responses wait in the socket buffers): the caller is free to run
 * transactions.  A synchronous http_run meanwhile first completes every
 * asynchronous run (so the limit holds across both).  After an ERROR, call
 * http_async_cancel_all() before the requests' memory goes (their
 * responses are written into it): a caller's PG_CATCH.  The handle is
 * freed by http_async_finish or http_async_cancel_all.  start_by (0: none):
 * a request still queued then is not started at all (it stays HTTP_PENDING,
 * certainly not sent), e.g. when the lease of what it carries could end.
 */
typedef struct Run HttpAsync;
extern HttpAsync *http_async_start(HttpRequest **reqs, int nreqs, int max_in_flight,
								   TimestampTz start_by);
extern void http_async_finish(HttpAsync *run);
extern void http_async_cancel_all(void);

/*
 * Background requests, for long polls that outlive the worker's other work
 * (a Change Data Capture /meta/connect, held by the server until events
 * come).  http_background_start() starts one request at once, outside
 * every in-flight budget, and returns a handle; the request and its
 * response live in the caller's current memory context, which must outlive
 * the handle.  Nothing needs to wait for it: whichever http_run or
 * asynchronous run drives curl meanwhile also reads its answer (the
 * transfers share one multi handle), and between runs the answer waits in
 * the socket buffer.  http_background_wait() drives the background
 * requests: with timeout_ms 0 once, without waiting; else until one of
 * them is done, should_stop(arg) says stop (checked at the latch, as in
 * http_run_ext, and at least once a second), or the timeout passes.  It
 * returns whether any background request is done.  http_background_done()
 * says whether this one is (its outcome set as with http_run), without
 * driving anything.  http_background_release() frees the handle; a
 * request still in flight is aborted (HTTP_CANCELLED).  Unlike the
 * asynchronous runs, background requests survive an ERROR: they belong to
 * no run, and http_async_cancel_all() leaves them.
 */
extern HttpAsync *http_background_start(HttpRequest *req);
extern bool http_background_wait(long timeout_ms, HttpStopCheck should_stop, void *arg);
extern bool http_background_done(HttpAsync *run);
extern void http_background_release(HttpAsync *run);

/* Convenience: one request, synchronously. */
extern void http_run_one(HttpRequest *req);

/* Value of a response header (case-insensitive), or NULL. */
extern const char *http_response_header(const HttpRequest *req, const char *name);

/* "timed out after 30000 ms", "could not connect to host: Connection refused", ... */
extern const char *http_outcome_text(const HttpRequest *req);

/* "done", "timeout", "connect_failed", "tls_failed", ... (stable names) */
extern const char *http_outcome_name(HttpOutcome outcome);

/* The URL with userinfo and secret-looking query values redacted, for logs. */
extern char *http_redact_url(const char *url);

/* Percent-encode for a URL query or path component (RFC 3986 unreserved kept). */
extern char *http_url_encode(const char *s);

/* NULL if the transport policy allows the URL (https; http to loopback), else why not. */
extern char *http_url_refusal(const char *url);

/* GUCs (defined in http.c, registered by http_define_gucs from _PG_init) */
extern int	sync_http_timeout_ms;
extern int	sync_http_connect_timeout_ms;
extern int	sync_http_max_in_flight;
extern int	sync_http_max_response_bytes;
extern void http_define_gucs(void);

#endif							/* SYNC_HTTP_H */
