/*
 * http.c — libcurl's multi interface behind the small API of http.h.
 *
 * Process-wide state
 *   One CURLM per process, created on first use and freed at process exit
 *   (on_proc_exit).  Its connection cache keeps keep-alive connections (and
 *   its DNS cache the lookups) from one http_run to the next; a CURLSH shares
 *   TLS sessions between easy handles, so a new connection to a known host
 *   resumes its TLS session.  Easy handles are per request.
 *
 * Driving transfers
 *   curl's socket API: CURLMOPT_SOCKETFUNCTION keeps a table of the sockets
 *   curl wants watched and CURLMOPT_TIMERFUNCTION the deadline it wants to be
 *   called back at.  http_run waits in a WaitEventSet holding the process
 *   latch, postmaster death (WL_EXIT_ON_PM_DEATH) and every socket of the
 *   table, for at most the time until curl's deadline (and never more than a
 *   second).  After every wake-up it calls CHECK_FOR_INTERRUPTS(), so query
 *   cancel, statement_timeout and die() (SIGTERM with the standard handler)
 *   are served mid-request, within milliseconds.  The wait set is rebuilt
 *   only when curl adds or removes a socket; a change of direction on a
 *   known socket is a ModifyWaitEvent.
 *
 * Errors and cleanup
 *   Nothing in here ever throws from inside a libcurl callback (a longjmp
 *   through libcurl would leave it inconsistent): the callbacks allocate
 *   with MCXT_ALLOC_NO_OOM and report failure to curl by return value; the
 *   ERROR is raised afterwards, outside curl.  Everything malloc'd for a run
 *   (easy handles, curl_slist header lists, the wait set's epoll fd) hangs off
 *   the run and is released by release_run(), which runs on normal exit, in
 *   the PG_CATCH of http_run (an interrupt or out-of-memory ERROR), and, as a
 *   last resort, at the start of the next run and at process exit.  A run
 *   interrupted by FATAL (die()) goes straight to proc_exit, where the exit
 *   callback releases it.
 *
 * Asynchronous runs (http_async_start / http_async_finish, for pipelined
 *   pushes): the same transfers, but the run is listed (async_runs, in
 *   TopMemoryContext) and the call returns once what can be sent at once is
 *   sent; nothing drives them until the next http_async_* call, which drives
 *   every listed run: transfers start oldest run first while the runs' shared
 *   in-flight count (async_inflight) is under the limit, so a later run's
 *   requests take an earlier run's slots as they free.  A synchronous run
 *   first completes the asynchronous ones (one in-flight limit for all), and
 *   an ERROR anywhere in here, or the caller's http_async_cancel_all(), or
 *   process exit releases every listed run.
 *
 * Transport policy (see http.h): https, or plain http to loopback only
 *   (checked with curl's own URL parser before any handle exists, and the
 *   handle then limited to that one scheme); TLS verification always on; no
 *   redirects; connect and total timeouts; response body capped while read
 *   (decoded bytes, so a gzip bomb stops at the cap too).
 *
 * Logging: one DEBUG2 line per request (method, redacted URL, outcome,
 *   size, time, new connections).  With log level DEBUG5, curl's verbose
 *   trace is logged too, with credentials redacted and bodies left out.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <curl/curl.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "budget.h"
#include "http.h"
#include "sync.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "libcurl >= 7.85.0 is required (CURLOPT_PROTOCOLS_STR)"
#endif

int			sync_http_timeout_ms = 30000;
int			sync_http_connect_timeout_ms = 10000;
int			sync_http_max_in_flight = 8;
int			sync_http_max_response_bytes = 64 * 1024 * 1024;

/* response headers of one response (the last block) are capped at this */
#define MAX_HEADER_BYTES	(1024 * 1024)
/* longest single wait: a safety net, curl's timer normally decides */
#define MAX_WAIT_MS			1000
/* how soon a run held back by a shared budget (budget.h) looks again */
#define BUDGET_RETRY_MS		5

/* ---------------------------------------------------------------------
 * process-wide state
 * --------------------------------------------------------------------- */

/* a socket curl wants watched */
typedef struct SockWatch
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT (NONE: not
								 * watched) */
	int			pos;			/* position in the current wait set, or -1 */
	bool		modified;		/* what changed since the wait set was built */
} SockWatch;

static CURLM *multi = NULL;
static CURLSH *share = NULL;

static SockWatch *socks = NULL;	/* in TopMemoryContext */
static int	nsocks = 0;
static int	maxsocks = 0;
static bool socks_added_or_removed = false;
static bool socks_modified = false;

static bool timer_armed = false;
static TimestampTz timer_deadline = 0;

struct Run;
static struct Run *current_run = NULL;

/* ---------------------------------------------------------------------
 * per-run state
 * --------------------------------------------------------------------- */

typedef struct Transfer
{
	struct Run *run;			/* the run it belongs to */
	HttpRequest *req;
	CURL	   *easy;			/* malloc'd by curl; NULL once cleaned up */
	struct curl_slist *headers; /* malloc'd by curl */
	bool		active;			/* added to the multi handle */
	struct SharedBudget *budget;	/* taken for it, to give back */
	bool		too_large;		/* body over the cap: write_cb refused it */
	bool		headers_too_large;
	bool		oom;			/* a callback could not allocate */
	bool		https;
	int			timeout_ms;
	MemoryContext cxt;			/* the run's context */
	/* raw header block of the last response, in the run's context */
	char	   *hdr;
	size_t		hdr_len;
	size_t		hdr_cap;
	char		errbuf[CURL_ERROR_SIZE];
} Transfer;

typedef struct Run
{
	MemoryContext cxt;			/* holds this struct and the transfers */
	MemoryContext caller;		/* where outcomes and errors go */
	bool		async;			/* started by http_async_start */
	TimestampTz start_by;		/* async: start nothing after this (0: none) */
	struct Run *next_run;		/* the next run of its list (async_runs, oldest
								 * first, or background_runs) */
	Transfer   *t;
	int			n;
	int			next;			/* the next transfer to start */
	int			inflight;		/* transfers started and not finished */
	int			max_in_flight;
	bool		blocked;		/* the next waits for a shared budget */
	TimestampTz blocked_since;	/* ... since then (0: not waiting) */
	bool		verbose;		/* curl's trace in the log (DEBUG5) */
	WaitEventSet *wes;			/* malloc'd epoll fd inside; NULL when none */
	int			wes_size;
} Run;

static void release_run(Run *run);

/*
 * Asynchronous runs (http_async_start), oldest first.  They share one
 * in-flight budget: async_inflight counts the transfers of all of them.
 * async_waiter only holds the wait set used while they are driven.
 */
static Run *async_runs = NULL;
static int	async_inflight = 0;
static Run	async_waiter;

/* Background runs (http_background_start): one request each, no budget. */
static Run *background_runs = NULL;
static Run	background_waiter;

static void forget_run(Run **list, Run *run);

/* ---------------------------------------------------------------------
 * libcurl callbacks: none of them may throw
 * --------------------------------------------------------------------- */

static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < nsocks; i++)
		if (socks[i].fd == fd)
			break;

	if (what == CURL_POLL_REMOVE)
	{
		if (i < nsocks)
		{
			socks[i] = socks[--nsocks];
			socks_added_or_removed = true;
		}
		return 0;
	}

	if (i == nsocks)
	{
		if (nsocks == maxsocks)
		{
			int			newmax = maxsocks ? maxsocks * 2 : 64;
			SockWatch  *n;

			n = MemoryContextAllocExtended(TopMemoryContext, sizeof(SockWatch) * newmax,
										   MCXT_ALLOC_NO_OOM);
			if (n == NULL)
				return -1;		/* curl fails the transfer */
			if (socks)
			{
				memcpy(n, socks, sizeof(SockWatch) * nsocks);
				pfree(socks);
			}
			socks = n;
			maxsocks = newmax;
		}
		nsocks++;
		socks[i].fd = fd;
		socks[i].what = what;
		socks[i].pos = -1;
		socks[i].modified = false;
		socks_added_or_removed = true;
	}
	else if (socks[i].what != what)
	{
		socks[i].what = what;
		socks[i].modified = true;
		socks_modified = true;
	}
	return 0;
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		timer_armed = false;
	else
	{
		timer_armed = true;
		timer_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	}
	return 0;
}

/*
 * Grow a buffer without throwing: returns false when out of memory.  The new
 * buffer is allocated in the old one's context (or cxt when there is none).
 */
static bool
grow_noerror(char **buf, size_t *cap, size_t need, MemoryContext cxt)
{
	size_t		newcap;
	char	   *n;

	if (need <= *cap)
		return true;
	newcap = Max(*cap * 2, (size_t) 1024);
	while (newcap < need)
		newcap *= 2;
	if (newcap > MaxAllocSize)
		newcap = MaxAllocSize;
	if (newcap < need)
		return false;
	if (*buf)
		cxt = GetMemoryChunkContext(*buf);
	n = MemoryContextAllocExtended(cxt, newcap, MCXT_ALLOC_NO_OOM);
	if (n == NULL)
		return false;
	if (*buf)
	{
		memcpy(n, *buf, *cap);
		pfree(*buf);
	}
	*buf = n;
	*cap = newcap;
	return true;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	Transfer   *t = (Transfer *) userp;
	StringInfo	s = &t->req->response;
	size_t		n = size * nmemb;
	size_t		cap;

	if ((size_t) s->len + n > (size_t) sync_http_max_response_bytes)
	{
		t->too_large = true;
		return 0;				/* != n: curl aborts with CURLE_WRITE_ERROR */
	}
	cap = (size_t) s->maxlen;
	/* s->data exists (http_run made sure): it grows in its own context */
	if (!grow_noerror(&s->data, &cap, (size_t) s->len + n + 1, t->cxt))
	{
		t->oom = true;
		return 0;
	}
	s->maxlen = (int) cap;
	memcpy(s->data + s->len, data, n);
	s->len += (int) n;
	s->data[s->len] = '\0';
	return n;
}

/*
 * Raw response header lines, parsed after the transfer.  Every status line
 * ("HTTP/1.1 100 Continue", a redirect, the final one) starts a new block:
 * only the last block is kept.
 */
static size_t
header_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	Transfer   *t = (Transfer *) userp;
	size_t		n = size * nmemb;

	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
		t->hdr_len = 0;
	if (t->hdr_len + n > MAX_HEADER_BYTES)
	{
		t->headers_too_large = true;
		return 0;
	}
	if (!grow_noerror(&t->hdr, &t->hdr_cap, t->hdr_len + n + 1, t->cxt))
	{
		t->oom = true;
		return 0;
	}
	memcpy(t->hdr + t->hdr_len, data, n);
	t->hdr_len += n;
	t->hdr[t->hdr_len] = '\0';
	return n;
}

/*
 * CURLOPT_VERBOSE trace at DEBUG5: informational text and headers, with
 * credentials redacted; bodies (which may hold secrets) are never logged.
 */
static int
debug_cb(CURL *easy, curl_infotype type, char *data, size_t size, void *userp)
{
	const char *dir;
	MemoryContext old = CurrentMemoryContext;

	switch (type)
	{
		case CURLINFO_TEXT:
			dir = "*";
			break;
		case CURLINFO_HEADER_IN:
			dir = "<";
			break;
		case CURLINFO_HEADER_OUT:
			dir = ">";
			break;
		default:
			return 0;
	}

	/* logging must not throw through libcurl: swallow any error */
	PG_TRY();
	{
		const char *p = data;
		const char *end = data + size;

		while (p < end)
		{
			const char *eol = memchr(p, '\n', end - p);
			int			len = (int) ((eol ? eol : end) - p);
			const char *colon;

			if (len > 0 && p[len - 1] == '\r')
				len--;
			colon = memchr(p, ':', len);
			if (len > 0 && type == CURLINFO_HEADER_OUT && p == data)
			{
				/* the request line: "GET /path?query HTTP/1.1" */
				elog(DEBUG5, "sync http %s %s", dir, http_redact_url(pnstrdup(p, len)));
			}
			else if (len > 0 && colon && type != CURLINFO_TEXT &&
				((colon - p == 13 && pg_strncasecmp(p, "authorization", 13) == 0) ||
				 (colon - p == 19 && pg_strncasecmp(p, "proxy-authorization", 19) == 0) ||
				 (colon - p == 6 && pg_strncasecmp(p, "cookie", 6) == 0) ||
				 (colon - p == 10 && pg_strncasecmp(p, "set-cookie", 10) == 0) ||
				 pg_strncasecmp(p, "x-api-key", 9) == 0))
				elog(DEBUG5, "sync http %s %.*s: [redacted]", dir, (int) (colon - p), p);
			else if (len > 0 && type == CURLINFO_TEXT && memchr(p, '?', len))
			{
				/* curl's own words may quote a URL with its query string */
				elog(DEBUG5, "sync http %s %s", dir, http_redact_url(pnstrdup(p, len)));
			}
			else if (len > 0)
				elog(DEBUG5, "sync http %s %.*s", dir, len, p);
			p = eol ? eol + 1 : end;
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		FlushErrorState();
	}
	PG_END_TRY();
	return 0;
}

/* ---------------------------------------------------------------------
 * process-wide handles
 * --------------------------------------------------------------------- */

static void
http_at_exit(int code, Datum arg)
{
	if (current_run)
		release_run(current_run);
	http_async_cancel_all();
	while (background_runs)
		forget_run(&background_runs, background_runs);
	if (multi)
		curl_multi_cleanup(multi);
	multi = NULL;
	if (share)
		curl_share_cleanup(share);
	share = NULL;
}

static void
ensure_multi(void)
{
	if (multi != NULL)
		return;
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	share = curl_share_init();
	if (share)
		curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	on_proc_exit(http_at_exit, (Datum) 0);
}

/* ---------------------------------------------------------------------
 * requests
 * --------------------------------------------------------------------- */

HttpRequest *
http_request_new(const char *method, const char *url)
{
	HttpRequest *req = palloc0(sizeof(HttpRequest));

	req->method = pstrdup(method);
	req->url = pstrdup(url);
	initStringInfo(&req->response);
	return req;
}

void
http_add_header(HttpRequest *req, const char *name, const char *value)
{
	HttpHeader *h = palloc(sizeof(HttpHeader));

	h->name = pstrdup(name);
	h->value = pstrdup(value);
	req->headers = lappend(req->headers, h);
}

void
http_set_body(HttpRequest *req, const char *body, size_t len, const char *content_type)
{
	req->body = body;
	req->body_len = len;
	if (content_type)
		http_add_header(req, "Content-Type", content_type);
}

const char *
http_response_header(const HttpRequest *req, const char *name)
{
	ListCell   *lc;

	foreach(lc, req->response_headers)
	{
		HttpHeader *h = (HttpHeader *) lfirst(lc);

		if (pg_strcasecmp(h->name, name) == 0)
			return h->value;
	}
	return NULL;
}

const char *
http_outcome_name(HttpOutcome outcome)
{
	switch (outcome)
	{
		case HTTP_PENDING:
			return "pending";
		case HTTP_DONE:
			return "done";
		case HTTP_TIMEOUT:
			return "timeout";
		case HTTP_CONNECT_FAILED:
			return "connect_failed";
		case HTTP_TLS_FAILED:
			return "tls_failed";
		case HTTP_TRANSPORT_FAILED:
			return "transport_failed";
		case HTTP_TOO_LARGE:
			return "too_large";
		case HTTP_REFUSED:
			return "refused";
		case HTTP_CANCELLED:
			return "cancelled";
	}
	return "unknown";
}

const char *
http_outcome_text(const HttpRequest *req)
{
	switch (req->outcome)
	{
		case HTTP_DONE:
			return psprintf("HTTP %ld", req->status);
		case HTTP_PENDING:
			return "not sent";
		default:
			return req->error ? req->error : http_outcome_name(req->outcome);
	}
}

char *
http_url_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	StringInfoData buf;
	const unsigned char *p;

	initStringInfo(&buf);
	for (p = (const unsigned char *) s; *p; p++)
	{
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~')
			appendStringInfoChar(&buf, (char) *p);
		else
		{
			appendStringInfoChar(&buf, '%');
			appendStringInfoChar(&buf, hex[*p >> 4]);
			appendStringInfoChar(&buf, hex[*p & 15]);
		}
	}
	return buf.data;
}

/*
 * A query parameter whose value must not be logged: credentials, and
 * query texts (Salesforce's q= carries SOQL, whose filters hold users'
 * data).
 */
static bool
secret_param(const char *name, int len)
{
	static const char *const words[] = {
		"token", "secret", "password", "passwd", "signature", "sig", "key",
		"assertion", "code", "auth", "credential", "session"
	};
	static const char *const names[] = {"q", "query", "soql", "search"};
	char	   *lower = pnstrdup(name, len);
	bool		found = false;
	int			i;

	for (i = 0; lower[i]; i++)
		lower[i] = pg_tolower((unsigned char) lower[i]);
	for (i = 0; i < lengthof(names) && !found; i++)
		found = strcmp(lower, names[i]) == 0;
	for (i = 0; i < lengthof(words) && !found; i++)
		found = strstr(lower, words[i]) != NULL;
	pfree(lower);
	return found;
}

char *
http_redact_url(const char *url)
{
	StringInfoData buf;
	const char *p = url;
	const char *scheme_end = strstr(url, "://");
	const char *q;

	initStringInfo(&buf);

	/* userinfo: scheme://user:password@host -> scheme://[redacted]@host */
	if (scheme_end)
	{
		const char *auth = scheme_end + 3;
		size_t		authlen = strcspn(auth, "/?#");
		const char *at = NULL;
		const char *c;

		for (c = auth; c < auth + authlen; c++)
			if (*c == '@')
				at = c;
		if (at)
		{
			appendBinaryStringInfo(&buf, url, (int) (auth - url));
			appendStringInfoString(&buf, "[redacted]");
			p = at;
		}
	}

	q = strchr(p, '?');
	if (q == NULL)
	{
		appendBinaryStringInfo(&buf, p, (int) strcspn(p, "#"));
		return buf.data;
	}
	appendBinaryStringInfo(&buf, p, (int) (q - p) + 1);
	p = q + 1;
	while (*p && *p != '#')
	{
		size_t		plen = strcspn(p, "&#");
		const char *eq = memchr(p, '=', plen);

		if (eq && secret_param(p, (int) (eq - p)))
		{
			appendBinaryStringInfo(&buf, p, (int) (eq - p) + 1);
			appendStringInfoString(&buf, "[redacted]");
		}
		else
			appendBinaryStringInfo(&buf, p, (int) plen);
		p += plen;
		if (*p == '&')
		{
			appendStringInfoChar(&buf, '&');
			p++;
		}
	}
	return buf.data;
}

/* host as curl's URL parser reports it: a loopback address or localhost? */
static bool
loopback_host(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	char		buf[INET6_ADDRSTRLEN + 2];
	size_t		len = strlen(host);

	if (pg_strcasecmp(host, "localhost") == 0)
		return true;			/* curl resolves it to loopback itself */
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (len > 2 && len < sizeof(buf) && host[0] == '[' && host[len - 1] == ']')
	{
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		if (inet_pton(AF_INET6, buf, &a6) == 1)
			return IN6_IS_ADDR_LOOPBACK(&a6) ||
				(IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	}
	return false;
}

/*
 * The transport policy: https anywhere, plain http to loopback hosts only.
 * Parsed with curl's own URL parser, so what is checked is what curl will
 * connect to.  Returns NULL when allowed (and sets *https), else the reason.
 */
static char *
url_refusal(const char *url, bool *https)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL,
			   *host = NULL;
	char	   *why = NULL;
	CURLUcode	rc;

	if (u == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	rc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (rc == CURLUE_OK)
		rc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	if (rc == CURLUE_OK)
		rc = curl_url_get(u, CURLUPART_HOST, &host, 0);

	if (rc != CURLUE_OK)
		why = psprintf("malformed URL \"%s\": %s", http_redact_url(url), curl_url_strerror(rc));
	else if (pg_strcasecmp(scheme, "https") == 0)
		*https = true;
	else if (pg_strcasecmp(scheme, "http") == 0 && loopback_host(host))
		*https = false;
	else if (pg_strcasecmp(scheme, "http") == 0)
		why = psprintf("refused to send a request to \"%s\": plain http is allowed only to loopback hosts (127.0.0.0/8, ::1, localhost); use https",
					   http_redact_url(url));
	else
		why = psprintf("refused to send a request to \"%s\": unsupported scheme \"%s\" (only https, and http to loopback hosts)",
					   http_redact_url(url), scheme);
	if (scheme)
		curl_free(scheme);
	if (host)
		curl_free(host);
	curl_url_cleanup(u);
	return why;
}

/* The transport policy for callers that check a URL before any request. */
char *
http_url_refusal(const char *url)
{
	bool		https;

	return url_refusal(url, &https);
}

static void
check_setopt(CURLcode rc, const char *what)
{
	if (rc == CURLE_OUT_OF_MEMORY)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not set libcurl option %s: %s", what, curl_easy_strerror(rc))));
}

#define SETOPT(e, opt, val) check_setopt(curl_easy_setopt((e), (opt), (val)), #opt)

static void
append_header(Transfer *t, const char *line)
{
	struct curl_slist *nl = curl_slist_append(t->headers, line);

	if (nl == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	t->headers = nl;
}

/*
 * Create and configure the easy handle of a transfer.  Anything malloc'd is
 * stored in the Transfer at once, so an ERROR here leaks nothing.
 */
static void
setup_easy(Transfer *t, bool verbose)
{
	HttpRequest *req = t->req;
	CURL	   *e;
	ListCell   *lc;
	const char *m = req->method;

	if (m[0] == '\0' || strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(m))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid HTTP method \"%s\"", m)));

	t->easy = e = curl_easy_init();
	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));

	foreach(lc, req->headers)
	{
		HttpHeader *h = (HttpHeader *) lfirst(lc);

		if (strpbrk(h->name, "\r\n:") || strpbrk(h->value, "\r\n"))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid HTTP header \"%s\": names and values must not contain line breaks",
							h->name)));
		append_header(t, psprintf("%s: %s", h->name, h->value));
	}
	/* no 100-continue round trip before bodies */
	append_header(t, "Expect:");

	t->errbuf[0] = '\0';
	SETOPT(e, CURLOPT_ERRORBUFFER, t->errbuf);
	SETOPT(e, CURLOPT_URL, req->url);
	SETOPT(e, CURLOPT_PRIVATE, t);
	SETOPT(e, CURLOPT_NOSIGNAL, 1L);
	/* the URL was checked: allow only its scheme, and never redirects */
	SETOPT(e, CURLOPT_PROTOCOLS_STR, t->https ? "https" : "http");
	SETOPT(e, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	SETOPT(e, CURLOPT_FOLLOWLOCATION, 0L);
	if (!t->https)
		SETOPT(e, CURLOPT_PROXY, "");	/* loopback: never through a proxy */
	SETOPT(e, CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (req->ca_file)
		SETOPT(e, CURLOPT_CAINFO, req->ca_file);
	if (share)
		SETOPT(e, CURLOPT_SHARE, share);
	SETOPT(e, CURLOPT_TIMEOUT_MS, (long) t->timeout_ms);
	SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(sync_http_connect_timeout_ms, t->timeout_ms));
	SETOPT(e, CURLOPT_USERAGENT, "sync/" SYNC_VERSION);
	SETOPT(e, CURLOPT_ACCEPT_ENCODING, "");
	SETOPT(e, CURLOPT_HTTPHEADER, t->headers);
	SETOPT(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) sync_http_max_response_bytes);
	SETOPT(e, CURLOPT_WRITEFUNCTION, write_cb);
	SETOPT(e, CURLOPT_WRITEDATA, t);
	SETOPT(e, CURLOPT_HEADERFUNCTION, header_cb);
	SETOPT(e, CURLOPT_HEADERDATA, t);
	if (verbose)
	{
		SETOPT(e, CURLOPT_DEBUGFUNCTION, debug_cb);
		SETOPT(e, CURLOPT_VERBOSE, 1L);
	}

	if (strcmp(m, "GET") == 0 && req->body == NULL)
		SETOPT(e, CURLOPT_HTTPGET, 1L);
	else if (strcmp(m, "HEAD") == 0)
		SETOPT(e, CURLOPT_NOBODY, 1L);
	else
	{
		if (strcmp(m, "POST") != 0)
			SETOPT(e, CURLOPT_CUSTOMREQUEST, m);
		if (req->body != NULL)
		{
			SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
			SETOPT(e, CURLOPT_POSTFIELDS, req->body);
		}
		else if (strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0)
		{
			SETOPT(e, CURLOPT_POSTFIELDSIZE, 0L);
			SETOPT(e, CURLOPT_POSTFIELDS, "");
		}
	}
}

/* the raw header block -> response_headers (names lower-cased) */
static void
parse_headers(Transfer *t)
{
	HttpRequest *req = t->req;
	char	   *p;
	HttpHeader *last = NULL;

	req->response_headers = NIL;
	if (t->hdr == NULL)
		return;
	p = t->hdr;
	while (*p)
	{
		char	   *eol = strchr(p, '\n');
		char	   *line;
		char	   *colon;
		int			len = (int) (eol ? eol - p : strlen(p));

		while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n'))
			len--;
		line = pnstrdup(p, len);
		p = eol ? eol + 1 : p + strlen(p);

		if (len == 0 || strncmp(line, "HTTP/", 5) == 0)
			continue;
		if ((line[0] == ' ' || line[0] == '\t') && last)
		{
			/* obsolete line folding: continues the previous value */
			last->value = psprintf("%s %s", last->value, line + strspn(line, " \t"));
			continue;
		}
		colon = strchr(line, ':');
		if (colon == NULL)
			continue;
		{
			HttpHeader *h = palloc(sizeof(HttpHeader));
			char	   *v;
			int			i,
						vl;

			*colon = '\0';
			for (i = 0; line[i]; i++)
				line[i] = pg_tolower((unsigned char) line[i]);
			v = colon + 1 + strspn(colon + 1, " \t");
			vl = (int) strlen(v);
			while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
				v[--vl] = '\0';
			h->name = line;
			h->value = v;
			req->response_headers = lappend(req->response_headers, h);
			last = h;
		}
	}
}

static double
info_ms(CURL *e, CURLINFO what)
{
	curl_off_t	us = 0;

	if (curl_easy_getinfo(e, what, &us) != CURLE_OK)
		return 0;
	return (double) us / 1000.0;
}

static HttpOutcome
map_curlcode(Transfer *t, CURLcode code)
{
	switch (code)
	{
		case CURLE_OK:
			return HTTP_DONE;
		case CURLE_OPERATION_TIMEDOUT:
			return HTTP_TIMEOUT;
		case CURLE_COULDNT_CONNECT:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
			return HTTP_CONNECT_FAILED;
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_SSL_ENGINE_NOTFOUND:
		case CURLE_SSL_ENGINE_SETFAILED:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_ENGINE_INITFAILED:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_SHUTDOWN_FAILED:
		case CURLE_SSL_CRL_BADFILE:
		case CURLE_SSL_ISSUER_ERROR:
		case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		case CURLE_SSL_INVALIDCERTSTATUS:
		case CURLE_SSL_CLIENTCERT:
		case CURLE_USE_SSL_FAILED:
			return HTTP_TLS_FAILED;
		case CURLE_FILESIZE_EXCEEDED:
			return HTTP_TOO_LARGE;
		case CURLE_WRITE_ERROR:
			if (t->too_large || t->headers_too_large)
				return HTTP_TOO_LARGE;
			return HTTP_TRANSPORT_FAILED;
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
			return HTTP_REFUSED;
		default:
			return HTTP_TRANSPORT_FAILED;
	}
}

/* where a timed-out transfer was, from curl's phase timings */
static char *
timeout_detail(Transfer *t)
{
	CURL	   *e = t->easy;
	double		dns = info_ms(e, CURLINFO_NAMELOOKUP_TIME_T);
	double		conn = info_ms(e, CURLINFO_CONNECT_TIME_T);
	double		tls = info_ms(e, CURLINFO_APPCONNECT_TIME_T);
	double		pre = info_ms(e, CURLINFO_PRETRANSFER_TIME_T);
	double		first = info_ms(e, CURLINFO_STARTTRANSFER_TIME_T);
	double		total = info_ms(e, CURLINFO_TOTAL_TIME_T);
	const char *phase;

	if (conn == 0)
		phase = "connecting";
	else if (t->https && tls == 0)
		phase = "in the TLS handshake";
	else if (first == 0)
		phase = "waiting for the response";
	else
		phase = "receiving the response";
	return psprintf("%s; DNS %.1f ms, TCP connect %.1f ms, TLS handshake %.1f ms, request sent at %.1f ms, first byte at %.1f ms, total %.1f ms",
					phase, dns, conn > 0 ? conn - dns : 0.0,
					tls > 0 ? tls - conn : 0.0, pre, first, total);
}

/* The shared in-flight slot a transfer took, given back once (budget.h). */
static void
give_budget(Transfer *t)
{
	if (t->budget)
		budget_give(t->budget);
	t->budget = NULL;
}

/* A transfer ended: outcome, status, headers, message, log line, cleanup. */
static void
finish_transfer(Transfer *t, CURLcode code, MemoryContext caller)
{
	HttpRequest *req = t->req;
	MemoryContext old;
	long		nconn = 0;
	const char *detail;

	if (t->oom || code == CURLE_OUT_OF_MEMORY)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("out of memory while receiving an HTTP response")));

	old = MemoryContextSwitchTo(caller);
	req->elapsed_ms = info_ms(t->easy, CURLINFO_TOTAL_TIME_T);
	curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &nconn);
	req->new_connections = (int) nconn;
	req->outcome = map_curlcode(t, code);
	detail = t->errbuf[0] ? t->errbuf : curl_easy_strerror(code);

	switch (req->outcome)
	{
		case HTTP_DONE:
			curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &req->status);
			parse_headers(t);
			break;
		case HTTP_TIMEOUT:
			req->error = psprintf("%s %s: timed out after %.0f ms (limit %d ms, connect limit %d ms; %s): %s",
								  req->method, http_redact_url(req->url), req->elapsed_ms,
								  t->timeout_ms, Min(sync_http_connect_timeout_ms, t->timeout_ms),
								  timeout_detail(t), detail);
			break;
		case HTTP_TOO_LARGE:
			if (t->headers_too_large)
				req->error = psprintf("%s %s: response headers larger than %d bytes",
									  req->method, http_redact_url(req->url), MAX_HEADER_BYTES);
			else
				req->error = psprintf("%s %s: response body larger than sync.http_max_response_bytes (%d bytes)",
									  req->method, http_redact_url(req->url), sync_http_max_response_bytes);
			break;
		case HTTP_CONNECT_FAILED:
			req->error = psprintf("%s %s: could not connect: %s",
								  req->method, http_redact_url(req->url), detail);
			break;
		case HTTP_TLS_FAILED:
			req->error = psprintf("%s %s: TLS failed: %s",
								  req->method, http_redact_url(req->url), detail);
			break;
		default:
			req->error = psprintf("%s %s: %s", req->method, http_redact_url(req->url), detail);
			break;
	}
	if (req->outcome != HTTP_DONE)
		req->status = 0;

	if (message_level_is_interesting(DEBUG2))
		ereport(DEBUG2,
				(errmsg_internal("sync http: %s %s -> %s, %d bytes in %.1f ms, %d new connection(s)",
								 req->method, http_redact_url(req->url), http_outcome_text(req),
								 req->response.len, req->elapsed_ms, req->new_connections)));
	MemoryContextSwitchTo(old);

	curl_multi_remove_handle(multi, t->easy);
	t->active = false;
	give_budget(t);
	curl_easy_cleanup(t->easy);
	t->easy = NULL;
	curl_slist_free_all(t->headers);
	t->headers = NULL;
}

/* Releases what curl malloc'd for a run: normal end, ERROR and exit alike. */
static void
release_run(Run *run)
{
	int			i;

	for (i = 0; i < run->n; i++)
	{
		Transfer   *t = &run->t[i];

		if (t->easy)
		{
			if (t->active && run->async)
				async_inflight--;
			if (t->active && multi)
				curl_multi_remove_handle(multi, t->easy);
			curl_easy_cleanup(t->easy);
			t->easy = NULL;
			t->active = false;
		}
		if (t->headers)
			curl_slist_free_all(t->headers);
		t->headers = NULL;
		give_budget(t);
	}
	if (run->wes)
		FreeWaitEventSet(run->wes);
	run->wes = NULL;
	if (current_run == run)
		current_run = NULL;
}

/* (Re)build or update the wait set for curl's current sockets. */
static void
prepare_wait_set(Run *run)
{
	int			i;

	if (run->wes && !socks_added_or_removed && socks_modified)
	{
		/* only directions changed: modify in place where possible */
		for (i = 0; i < nsocks && run->wes; i++)
		{
			SockWatch  *s = &socks[i];
			uint32		ev = 0;

			if (!s->modified)
				continue;
			s->modified = false;
			if (s->what & CURL_POLL_IN)
				ev |= WL_SOCKET_READABLE;
			if (s->what & CURL_POLL_OUT)
				ev |= WL_SOCKET_WRITEABLE;
			if (s->pos >= 0 && ev != 0)
				ModifyWaitEvent(run->wes, s->pos, ev, NULL);
			else
				socks_added_or_removed = true;	/* to or from "not watched" */
		}
		socks_modified = false;
	}
	if (run->wes && !socks_added_or_removed)
		return;

	if (run->wes)
		FreeWaitEventSet(run->wes);
	run->wes = NULL;
	run->wes = CreateWaitEventSet(run->cxt, nsocks + 2);
	AddWaitEventToSet(run->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	if (IsUnderPostmaster)
		AddWaitEventToSet(run->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < nsocks; i++)
	{
		SockWatch  *s = &socks[i];
		uint32		ev = 0;

		if (s->what & CURL_POLL_IN)
			ev |= WL_SOCKET_READABLE;
		if (s->what & CURL_POLL_OUT)
			ev |= WL_SOCKET_WRITEABLE;
		s->modified = false;
		s->pos = ev ? AddWaitEventToSet(run->wes, ev, s->fd, NULL, NULL) : -1;
	}
	socks_added_or_removed = false;
	socks_modified = false;
}

static void
socket_action(curl_socket_t fd, int flags)
{
	int			running;
	CURLMcode	rc;

	rc = curl_multi_socket_action(multi, fd, flags, &running);
	if (rc == CURLM_OUT_OF_MEMORY)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (rc != CURLM_OK && rc != CURLM_BAD_SOCKET)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("libcurl: %s", curl_multi_strerror(rc))));
}

/* curl's timer due? run it */
static void
run_timer_if_due(void)
{
	if (timer_armed && GetCurrentTimestamp() >= timer_deadline)
	{
		timer_armed = false;	/* curl re-arms it if it wants */
		socket_action(CURL_SOCKET_TIMEOUT, 0);
	}
}

/* finish the transfers curl reports done (of whichever run they belong to) */
static void
drain_messages(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		Transfer   *t = NULL;
		CURLcode	result;

		if (msg->msg != CURLMSG_DONE)
			continue;
		result = msg->data.result;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		if (t == NULL)
			continue;
		t->run->inflight--;
		if (t->run->async)
			async_inflight--;
		finish_transfer(t, result, t->run->caller);
	}
}

/* should_stop said stop: abort what is in flight */
static void
cancel_run(Run *run, MemoryContext caller)
{
	int			i;

	for (i = 0; i < run->n; i++)
	{
		Transfer   *t = &run->t[i];

		if (t->easy == NULL)
			continue;
		t->req->outcome = HTTP_CANCELLED;
		t->req->error = MemoryContextStrdup(caller,
											psprintf("%s %s: cancelled while in flight (it may or may not have reached the server)",
													 t->req->method, http_redact_url(t->req->url)));
	}
	release_run(run);
}

/*
 * A run of these requests, in its own memory context under the caller's:
 * one transfer per request, each request reset to pending with an empty
 * response (kept in the caller's context).
 */
static Run *
new_run(HttpRequest **reqs, int nreqs, int max_in_flight, MemoryContext caller,
		MemoryContext parent)
{
	MemoryContext runcxt;
	Run		   *run;
	int			i;

	runcxt = AllocSetContextCreate(parent, "sync http run", ALLOCSET_SMALL_SIZES);
	run = MemoryContextAllocZero(runcxt, sizeof(Run));
	run->cxt = runcxt;
	run->caller = caller;
	run->n = nreqs;
	run->max_in_flight = max_in_flight;
	run->verbose = message_level_is_interesting(DEBUG5);
	run->t = MemoryContextAllocZero(runcxt, sizeof(Transfer) * nreqs);
	for (i = 0; i < nreqs; i++)
	{
		HttpRequest *req = reqs[i];

		run->t[i].run = run;
		run->t[i].req = req;
		run->t[i].cxt = runcxt;
		req->outcome = HTTP_PENDING;
		req->status = 0;
		req->error = NULL;
		req->elapsed_ms = 0;
		req->new_connections = 0;
		req->response_headers = NIL;
		if (req->response.data == NULL)
			initStringInfo(&req->response);
		else
			resetStringInfo(&req->response);
	}
	return run;
}

/*
 * Start transfers, in the order of the requests, up to the in-flight limit.
 * A URL the transport policy refuses gets its answer (HTTP_REFUSED) at once
 * and never a handle.  Returns whether any transfer started; leaves the
 * run's context current.
 */
/* Too late to start the rest of the run: they stay HTTP_PENDING, never sent. */
static void
leave_unsent(Run *run, MemoryContext caller, const char *why)
{
	for (; run->next < run->n; run->next++)
		run->t[run->next].req->error = MemoryContextStrdup(caller, why);
}

static bool
start_transfers(Run *run, MemoryContext caller)
{
	bool		started = false;

	run->blocked = false;
	while (run->next < run->n &&
		   (run->async ? async_inflight : run->inflight) < run->max_in_flight)
	{
		Transfer   *t;
		HttpRequest *req;
		char	   *why;
		bool		counted = false;

		if (run->start_by != 0 && GetCurrentTimestamp() > run->start_by)
		{
			leave_unsent(run, caller, "not sent: its start deadline passed while it was queued");
			break;
		}
		t = &run->t[run->next];
		req = t->req;
		/* other processes' requests through the same connection count too */
		if (req->budget != NULL && !budget_take(req->budget, &counted))
		{
			TimestampTz now = GetCurrentTimestamp();

			if (run->blocked_since == 0)
				run->blocked_since = now;
			else if (req->budget_wait_ms > 0 &&
					 now - run->blocked_since > req->budget_wait_ms * (int64) 1000)
			{
				leave_unsent(run, caller,
							 psprintf("not sent: the connection's requests in flight were all taken by other processes for %d ms",
									  req->budget_wait_ms));
				break;
			}
			run->blocked = true;
			break;
		}
		run->blocked_since = 0;
		t->budget = counted ? req->budget : NULL;
		run->next++;

		MemoryContextSwitchTo(caller);
		why = url_refusal(req->url, &t->https);
		MemoryContextSwitchTo(run->cxt);
		if (why)
		{
			give_budget(t);
			req->outcome = HTTP_REFUSED;
			req->error = why;
			ereport(DEBUG2,
					(errmsg_internal("sync http: %s", why)));
			continue;
		}
		t->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : sync_http_timeout_ms;
		setup_easy(t, run->verbose);
		if (curl_multi_add_handle(multi, t->easy) != CURLM_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("curl_multi_add_handle failed")));
		t->active = true;
		run->inflight++;
		if (run->async)
			async_inflight++;
		started = true;
	}
	MemoryContextSwitchTo(run->cxt);
	return started;
}

/*
 * Wait for curl's sockets, its timer (MAX_WAIT_MS at most) or the latch,
 * and hand each socket that is ready to curl.  A latch set meanwhile is
 * reset, and remembered in *latch_seen for the caller.  Returns false,
 * without waiting, when curl's timer is due already.
 */
static bool
wait_for_curl(Run *run, long max_wait_ms, bool *latch_seen)
{
	WaitEvent	events[64];
	int			nev,
				i;
	long		timeout;

	prepare_wait_set(run);
	timeout = max_wait_ms;
	if (timer_armed)
	{
		long		secs;
		int			usecs;

		TimestampDifference(GetCurrentTimestamp(), timer_deadline, &secs, &usecs);
		timeout = Min(timeout, secs * 1000 + (usecs + 999) / 1000);
	}
	if (timeout <= 0 && timer_armed && max_wait_ms > 0)
		return false;
	timeout = Max(timeout, 0);

	nev = WaitEventSetWait(run->wes, timeout, events, lengthof(events),
						   PG_WAIT_EXTENSION);
	for (i = 0; i < nev; i++)
	{
		WaitEvent  *ev = &events[i];
		int			flags = 0;

		if (ev->events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			*latch_seen = true;
			continue;
		}
		if (ev->events & WL_SOCKET_READABLE)
			flags |= CURL_CSELECT_IN;
		if (ev->events & WL_SOCKET_WRITEABLE)
			flags |= CURL_CSELECT_OUT;
		if (flags)
			socket_action(ev->fd, flags);
	}
	return true;
}

/* ---------------------------------------------------------------------
 * asynchronous runs
 * --------------------------------------------------------------------- */

static bool
run_done(Run *run)
{
	return run->inflight == 0 && run->next >= run->n;
}

/* Takes a run out of its list, releases it and frees it. */
static void
forget_run(Run **list, Run *run)
{
	Run		  **p;

	for (p = list; *p; p = &(*p)->next_run)
		if (*p == run)
		{
			*p = run->next_run;
			break;
		}
	release_run(run);
	MemoryContextDelete(run->cxt);
}

/* Takes an asynchronous run out of the list and releases it. */
static void
async_forget(Run *run)
{
	forget_run(&async_runs, run);
	if (async_runs == NULL)
	{
		async_inflight = 0;
		if (async_waiter.wes)
			FreeWaitEventSet(async_waiter.wes);
		async_waiter.wes = NULL;
	}
}

/*
 * Drive every asynchronous run: start their queued transfers, oldest run
 * first, as the shared budget allows, and hand curl what is ready.  With a
 * target, until the target's transfers are all done; without, a few passes
 * that never wait (what is ready now is sent or read, then it returns).
 */
static void
async_drive(Run *target)
{
	bool		latch_seen = false;
	bool		blocked;
	int			passes = 0;
	MemoryContext old = CurrentMemoryContext;

	async_waiter.cxt = TopMemoryContext;
	for (;;)
	{
		Run		   *r;
		bool		more = false;

		CHECK_FOR_INTERRUPTS();
		for (r = async_runs; r; r = r->next_run)
			if (start_transfers(r, r->caller))
			{
				/* kick the new transfers off now */
				timer_armed = true;
				timer_deadline = 0;
			}
		MemoryContextSwitchTo(old);
		run_timer_if_due();
		drain_messages();
		if (target != NULL && run_done(target))
			break;
		blocked = false;
		for (r = async_runs; r; r = r->next_run)
		{
			if (r->next < r->n && async_inflight < r->max_in_flight && !r->blocked)
				more = true;
			blocked |= r->blocked;
		}
		if (more)
			continue;			/* slots freed: start more first */
		if (target == NULL && ++passes > 3)
			break;
		/* another process holds the shared budget: look again soon */
		if (!wait_for_curl(&async_waiter, target ? (blocked ? BUDGET_RETRY_MS : MAX_WAIT_MS) : 0,
						   &latch_seen))
			continue;
		run_timer_if_due();
		drain_messages();
	}
	MemoryContextSwitchTo(old);

	/*
	 * The wait set does not outlive the call: a synchronous run in between
	 * may change curl's sockets and reset the flags that say so.
	 */
	if (async_waiter.wes)
		FreeWaitEventSet(async_waiter.wes);
	async_waiter.wes = NULL;
	if (latch_seen)
		SetLatch(MyLatch);
}

/* Every asynchronous run to its end (they stay listed for http_async_finish). */
static void
async_complete_all(void)
{
	Run		   *r;

	PG_TRY();
	{
		for (r = async_runs; r; r = r->next_run)
			async_drive(r);
	}
	PG_CATCH();
	{
		http_async_cancel_all();
		PG_RE_THROW();
	}
	PG_END_TRY();
}

HttpAsync *
http_async_start(HttpRequest **reqs, int nreqs, int max_in_flight, TimestampTz start_by)
{
	MemoryContext caller = CurrentMemoryContext;
	Run		   *run,
			  **p;

	if (nreqs <= 0)
		return NULL;
	if (max_in_flight <= 0)
		max_in_flight = sync_http_max_in_flight;
	if (current_run)
		release_run(current_run);
	ensure_multi();
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) Max(max_in_flight, 16));

	/* its transfers outlive this call: the run's memory is not the caller's */
	run = new_run(reqs, nreqs, max_in_flight, caller, TopMemoryContext);
	run->async = true;
	run->start_by = start_by;
	for (p = &async_runs; *p; p = &(*p)->next_run)
		;
	*p = run;
	PG_TRY();
	{
		async_drive(NULL);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		http_async_cancel_all();
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	return run;
}

void
http_async_finish(HttpAsync *run)
{
	MemoryContext caller = CurrentMemoryContext;

	if (run == NULL)
		return;
	PG_TRY();
	{
		async_drive(run);
		async_forget(run);
		/* the freed slots go to the next runs' requests before returning */
		if (async_runs)
			async_drive(NULL);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		http_async_cancel_all();
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
}

void
http_async_cancel_all(void)
{
	while (async_runs)
		async_forget(async_runs);
}

/* ---------------------------------------------------------------------
 * background runs
 * --------------------------------------------------------------------- */

HttpAsync *
http_background_start(HttpRequest *req)
{
	MemoryContext caller = CurrentMemoryContext;
	Run		   *run;

	ensure_multi();
	run = new_run(&req, 1, 1, caller, TopMemoryContext);
	run->next_run = background_runs;
	background_runs = run;
	PG_TRY();
	{
		if (start_transfers(run, caller))
		{
			/* kick it off now (curl asked for 0 ms anyway) */
			timer_armed = true;
			timer_deadline = 0;
		}
		MemoryContextSwitchTo(caller);
		run_timer_if_due();
		drain_messages();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		forget_run(&background_runs, run);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	return run;
}

bool
http_background_done(HttpAsync *run)
{
	return run != NULL && run_done(run);
}

static bool
any_background_done(void)
{
	Run		   *r;

	for (r = background_runs; r; r = r->next_run)
		if (run_done(r))
			return true;
	return false;
}

bool
http_background_wait(long timeout_ms, HttpStopCheck should_stop, void *arg)
{
	MemoryContext caller = CurrentMemoryContext;
	TimestampTz until = GetCurrentTimestamp() + Max(timeout_ms, 0) * (int64) 1000;
	bool		latch_seen = false;
	bool		done;

	if (background_runs == NULL)
		return false;
	background_waiter.cxt = TopMemoryContext;
	PG_TRY();
	{
		for (;;)
		{
			long		left;

			CHECK_FOR_INTERRUPTS();
			run_timer_if_due();
			drain_messages();
			if (any_background_done())
				break;
			left = (long) ((until - GetCurrentTimestamp()) / 1000);
			if (timeout_ms > 0 && (left <= 0 || (should_stop && should_stop(arg))))
				break;
			if (!wait_for_curl(&background_waiter, Max(Min(left, MAX_WAIT_MS), 0), &latch_seen))
				continue;		/* curl's timer is due now */
			run_timer_if_due();
			drain_messages();
			if (timeout_ms <= 0)
				break;			/* one look, no wait */
		}
		done = any_background_done();
	}
	PG_FINALLY();
	{
		/* as async_drive: the wait set does not outlive the call */
		if (background_waiter.wes)
			FreeWaitEventSet(background_waiter.wes);
		background_waiter.wes = NULL;
		MemoryContextSwitchTo(caller);
	}
	PG_END_TRY();
	if (latch_seen)
		SetLatch(MyLatch);
	return done;
}

void
http_background_release(HttpAsync *run)
{
	if (run == NULL)
		return;
	if (!run_done(run))
		cancel_run(run, run->caller);
	forget_run(&background_runs, run);
}

void
http_run_ext(HttpRequest **reqs, int nreqs, int max_in_flight,
			 HttpStopCheck should_stop, void *arg)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext runcxt;
	Run		   *run;
	bool		latch_seen = false;

	if (nreqs <= 0)
		return;
	if (max_in_flight <= 0)
		max_in_flight = sync_http_max_in_flight;

	/* a run cut short in a way that skipped its cleanup: release it now */
	if (current_run)
		release_run(current_run);
	/* never more in flight than one run allows: asynchronous runs end first */
	if (async_runs)
		async_complete_all();

	ensure_multi();
	/* keep enough idle connections for the next batch at this concurrency */
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) Max(max_in_flight, 16));

	run = new_run(reqs, nreqs, max_in_flight, caller, caller);
	runcxt = run->cxt;
	current_run = run;

	PG_TRY();
	{
		for (;;)
		{
			CHECK_FOR_INTERRUPTS();
			if (should_stop && should_stop(arg))
			{
				cancel_run(run, caller);
				break;
			}

			if (start_transfers(run, caller))
			{
				/* kick the new transfers off now (curl asked for 0 ms anyway) */
				timer_armed = true;
				timer_deadline = 0;
			}

			run_timer_if_due();
			drain_messages();
			if (run->inflight == 0 && run->next >= run->n)
				break;
			if (run->inflight < run->max_in_flight && run->next < run->n && !run->blocked)
				continue;		/* slots freed: start more first */

			/* another process holds the shared budget: look again soon */
			if (!wait_for_curl(run, run->blocked ? BUDGET_RETRY_MS : MAX_WAIT_MS, &latch_seen))
				continue;		/* curl's timer is due now */
			/* interrupts first: CHECK_FOR_INTERRUPTS at the top of the loop */
			run_timer_if_due();
			drain_messages();
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		release_run(run);
		MemoryContextDelete(runcxt);
		PG_RE_THROW();
	}
	PG_END_TRY();

	MemoryContextSwitchTo(caller);
	release_run(run);			/* normally nothing left but the wait set */
	MemoryContextDelete(runcxt);
	/* a wake-up that arrived during the run is kept for the caller */
	if (latch_seen)
		SetLatch(MyLatch);
}

void
http_run(HttpRequest **reqs, int nreqs, int max_in_flight)
{
	http_run_ext(reqs, nreqs, max_in_flight, NULL, NULL);
}

void
http_run_one(HttpRequest *req)
{
	http_run_ext(&req, 1, 1, NULL, NULL);
}

/*
 * The GUCs are PGC_SUSET: postgresql.conf / ALTER SYSTEM / ALTER DATABASE
 * set them for the workers (reloaded on SIGHUP like PGC_SIGHUP ones), and a
 * superuser may also change them in a session (tests, a one-off sync.pull
 * of a huge page).  An ordinary user must not: sync.pull and sync.push run
 * in the caller's backend, and a larger response cap or longer timeouts
 * would let them hold more memory and connections than the administrator
 * allowed.
 */
void
http_define_gucs(void)
{
	DefineCustomIntVariable("sync.http_timeout",
							"Total time allowed for one HTTP request.",
							"Connecting, sending and receiving the whole response.",
							&sync_http_timeout_ms, 30000, 100, 3600000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("sync.http_connect_timeout",
							"Time allowed to connect (TCP and TLS handshake) for one HTTP request.",
							NULL, &sync_http_connect_timeout_ms, 10000, 100, 600000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("sync.http_max_in_flight",
							"Concurrent HTTP requests per connection, unless its max_in_flight option says otherwise.",
							NULL, &sync_http_max_in_flight, 8, 1, 256,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("sync.http_max_response_bytes",
							"Largest HTTP response body accepted; a larger one is cut off while it is read.",
							"The decoded (decompressed) size counts.",
							&sync_http_max_response_bytes, 64 * 1024 * 1024, 1024, (int) (MaxAllocSize - 1),
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
}
