/*
 * http.c — libcurl's multi interface behind the small API of http.h.
 *
 * One multi handle per process, created on first use and kept (its
 * connection cache gives keep-alive reuse across batches).  http_run()
 * drives transfers with curl's socket API and waits in a WaitEventSet that
 * holds curl's sockets *and* the process latch, so interrupts (query
 * cancel, SIGTERM via die(), postmaster death) are served mid-request.
 *
 * Everything curl allocates with malloc for a run (easy handles, header
 * lists, the wait set's epoll fd) is registered on a memory context whose
 * reset callback releases it, so an ERROR thrown from anywhere inside a run
 * leaks nothing.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "http.h"
#include "sync.h"

int			sync_http_timeout_ms = 30000;
int			sync_http_connect_timeout_ms = 10000;
int			sync_http_max_in_flight = 8;
int			sync_http_max_response_bytes = 64 * 1024 * 1024;

#define MAX_SOCKETS 1024

/* sockets curl wants watched (kept as long as the multi handle) */
typedef struct SockWatch
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} SockWatch;

static CURLM *multi = NULL;
static SockWatch socks[MAX_SOCKETS];
static int	nsocks = 0;
static long curl_timeout_ms = -1;

/* one transfer of a run */
typedef struct Transfer
{
	HttpRequest *req;
	CURL	   *easy;
	struct curl_slist *headers;
	char		errbuf[CURL_ERROR_SIZE];
	bool		too_large;
	bool		active;			/* added to the multi handle */
	MemoryContext cxt;			/* where the response goes */
} Transfer;

typedef struct Run
{
	MemoryContextCallback cb;
	Transfer   *t;
	int			n;
	WaitEventSet *wes;
} Run;

static void
http_at_exit(int code, Datum arg)
{
	if (multi)
		curl_multi_cleanup(multi);
	multi = NULL;
}

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
			socks[i] = socks[--nsocks];
		return 0;
	}
	if (i == nsocks)
	{
		if (nsocks == MAX_SOCKETS)
			return -1;
		nsocks++;
	}
	socks[i].fd = fd;
	socks[i].what = what;
	return 0;
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	curl_timeout_ms = timeout_ms;
	return 0;
}

static CURLM *
get_multi(void)
{
	if (multi == NULL)
	{
		multi = curl_multi_init();
		if (multi == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("could not create a libcurl multi handle")));
		curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
		curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
		curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 64L);
		on_proc_exit(http_at_exit, (Datum) 0);
	}
	return multi;
}

/* Releases what curl malloc'd for a run: normal end and ERROR alike. */
static void
run_release(void *arg)
{
	Run		   *run = (Run *) arg;
	int			i;

	for (i = 0; i < run->n; i++)
	{
		Transfer   *t = &run->t[i];

		if (t->easy)
		{
			if (t->active && multi)
				curl_multi_remove_handle(multi, t->easy);
			curl_easy_cleanup(t->easy);
			t->easy = NULL;
		}
		if (t->headers)
			curl_slist_free_all(t->headers);
		t->headers = NULL;
	}
	if (run->wes)
		FreeWaitEventSet(run->wes);
	run->wes = NULL;
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
http_outcome_text(const HttpRequest *req)
{
	switch (req->outcome)
	{
		case HTTP_DONE:
			return psprintf("HTTP %ld", req->status);
		case HTTP_PENDING:
			return "not sent";
		default:
			return req->error ? req->error : "failed";
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
			appendStringInfoChar(&buf, *p);
		else
		{
			appendStringInfoChar(&buf, '%');
			appendStringInfoChar(&buf, hex[*p >> 4]);
			appendStringInfoChar(&buf, hex[*p & 15]);
		}
	}
	return buf.data;
}

/* The URL without secrets in its query string, for logs. */
static char *
redacted_url(const char *url)
{
	const char *q = strchr(url, '?');

	return q ? psprintf("%.*s?[query]", (int) (q - url), url) : pstrdup(url);
}

/* https, or plain http to a loopback host only. */
static bool
url_allowed(const char *url, char **why)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL,
			   *host = NULL;
	bool		ok = false;

	if (u == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		*why = psprintf("malformed URL \"%s\"", redacted_url(url));
	else if (pg_strcasecmp(scheme, "https") == 0)
		ok = true;
	else if (pg_strcasecmp(scheme, "http") == 0 &&
			 (strncmp(host, "127.", 4) == 0 || strcmp(host, "[::1]") == 0 ||
			  strcmp(host, "::1") == 0 || pg_strcasecmp(host, "localhost") == 0))
		ok = true;
	else
		*why = psprintf("refusing %s: only https is allowed (plain http only to loopback hosts)",
						redacted_url(url));
	if (scheme)
		curl_free(scheme);
	if (host)
		curl_free(host);
	curl_url_cleanup(u);
	return ok;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	Transfer   *t = (Transfer *) userp;
	size_t		n = size * nmemb;

	if ((size_t) t->req->response.len + n > (size_t) sync_http_max_response_bytes)
	{
		t->too_large = true;
		return 0;				/* aborts the transfer */
	}
	{
		MemoryContext old = MemoryContextSwitchTo(t->cxt);

		appendBinaryStringInfo(&t->req->response, data, (int) n);
		MemoryContextSwitchTo(old);
	}
	return n;
}

static size_t
header_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	Transfer   *t = (Transfer *) userp;
	size_t		n = size * nmemb;
	MemoryContext old;
	char	   *colon;
	char	   *line;
	int			len = (int) n,
				i;

	while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n'))
		len--;
	old = MemoryContextSwitchTo(t->cxt);
	line = pnstrdup(data, len);
	if (strncmp(line, "HTTP/", 5) == 0)
		t->req->response_headers = NIL;	/* a new header block (after 100 Continue) */
	else if ((colon = strchr(line, ':')) != NULL)
	{
		HttpHeader *h = palloc(sizeof(HttpHeader));

		*colon = '\0';
		for (i = 0; line[i]; i++)
			line[i] = pg_tolower((unsigned char) line[i]);
		h->name = line;
		h->value = colon + 1;
		while (*h->value == ' ' || *h->value == '\t')
			h->value++;
		t->req->response_headers = lappend(t->req->response_headers, h);
	}
	MemoryContextSwitchTo(old);
	return n;
}

static void
setup_easy(Transfer *t)
{
	HttpRequest *req = t->req;
	CURL	   *e = curl_easy_init();
	ListCell   *lc;
	long		timeout = req->timeout_ms > 0 ? req->timeout_ms : sync_http_timeout_ms;

	if (e == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("could not create a libcurl handle")));
	t->easy = e;
	foreach(lc, req->headers)
	{
		HttpHeader *h = (HttpHeader *) lfirst(lc);
		char	   *line = psprintf("%s: %s", h->name, h->value);
		struct curl_slist *nl = curl_slist_append(t->headers, line);

		if (nl == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		t->headers = nl;
	}
	/* no 100-continue round trip before bodies */
	t->headers = curl_slist_append(t->headers, "Expect:");

	curl_easy_setopt(e, CURLOPT_URL, req->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, t);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (req->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(sync_http_connect_timeout_ms, timeout));
	curl_easy_setopt(e, CURLOPT_USERAGENT, "sync/" SYNC_VERSION);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
	if (strcmp(req->method, "GET") == 0)
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	else
	{
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
		if (req->body != NULL)
		{
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
		}
		else if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PATCH") == 0 ||
				 strcmp(req->method, "PUT") == 0)
		{
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
		}
	}
}

static void
finish(Transfer *t, CURLcode code)
{
	HttpRequest *req = t->req;
	MemoryContext old = MemoryContextSwitchTo(t->cxt);
	double		total = 0;

	curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &total);
	req->elapsed_ms = total * 1000.0;
	if (code == CURLE_OK)
	{
		req->outcome = HTTP_DONE;
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &req->status);
	}
	else
	{
		const char *detail = t->errbuf[0] ? t->errbuf : curl_easy_strerror(code);

		switch (code)
		{
			case CURLE_OPERATION_TIMEDOUT:
				req->outcome = HTTP_TIMEOUT;
				break;
			case CURLE_COULDNT_CONNECT:
			case CURLE_COULDNT_RESOLVE_HOST:
			case CURLE_COULDNT_RESOLVE_PROXY:
				req->outcome = HTTP_CONNECT_FAILED;
				break;
			case CURLE_PEER_FAILED_VERIFICATION:
			case CURLE_SSL_CONNECT_ERROR:
			case CURLE_SSL_CERTPROBLEM:
			case CURLE_SSL_CIPHER:
			case CURLE_SSL_CACERT_BADFILE:
				req->outcome = HTTP_TLS_FAILED;
				break;
			case CURLE_WRITE_ERROR:
				req->outcome = t->too_large ? HTTP_TOO_LARGE : HTTP_TRANSPORT_FAILED;
				break;
			default:
				req->outcome = HTTP_TRANSPORT_FAILED;
				break;
		}
		if (req->outcome == HTTP_TOO_LARGE)
			req->error = psprintf("%s %s: response larger than sync.http_max_response_bytes (%d bytes)",
								  req->method, redacted_url(req->url), sync_http_max_response_bytes);
		else if (req->outcome == HTTP_TIMEOUT)
			req->error = psprintf("%s %s: timed out after %.0f ms (%s)",
								  req->method, redacted_url(req->url), req->elapsed_ms, detail);
		else
			req->error = psprintf("%s %s: %s", req->method, redacted_url(req->url), detail);
	}
	ereport(DEBUG2,
			(errmsg_internal("sync http: %s %s -> %s in %.1f ms", req->method, redacted_url(req->url),
							 http_outcome_text(req), req->elapsed_ms)));
	MemoryContextSwitchTo(old);
}

static void
drain_messages(Run *run, int *inflight)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		Transfer   *t = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		finish(t, msg->data.result);
		curl_multi_remove_handle(multi, t->easy);
		t->active = false;
		curl_easy_cleanup(t->easy);
		t->easy = NULL;
		curl_slist_free_all(t->headers);
		t->headers = NULL;
		(*inflight)--;
	}
}

void
http_run(HttpRequest **reqs, int nreqs, int max_in_flight)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext runcxt;
	Run		   *run;
	int			next = 0,
				inflight = 0,
				running = 0,
				i;
	bool		latch_seen = false;

	if (nreqs <= 0)
		return;
	if (max_in_flight <= 0)
		max_in_flight = sync_http_max_in_flight;
	get_multi();

	runcxt = AllocSetContextCreate(caller, "sync http run", ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(runcxt);
	run = palloc0(sizeof(Run));
	run->n = nreqs;
	run->t = palloc0(sizeof(Transfer) * nreqs);
	run->cb.func = run_release;
	run->cb.arg = run;
	MemoryContextRegisterResetCallback(runcxt, &run->cb);
	for (i = 0; i < nreqs; i++)
	{
		run->t[i].req = reqs[i];
		run->t[i].cxt = caller;
		reqs[i]->outcome = HTTP_PENDING;
	}

	for (;;)
	{
		WaitEvent	events[16];
		int			nev,
					s;
		long		timeout;

		/* start transfers up to the in-flight limit */
		while (next < nreqs && inflight < max_in_flight)
		{
			Transfer   *t = &run->t[next++];
			char	   *why = NULL;

			if (!url_allowed(t->req->url, &why))
			{
				MemoryContext old = MemoryContextSwitchTo(caller);

				t->req->outcome = HTTP_REFUSED;
				t->req->error = pstrdup(why);
				MemoryContextSwitchTo(old);
				continue;
			}
			setup_easy(t);
			if (curl_multi_add_handle(multi, t->easy) != CURLM_OK)
				ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("curl_multi_add_handle failed")));
			t->active = true;
			inflight++;
			curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
			drain_messages(run, &inflight);
		}
		if (inflight == 0 && next >= nreqs)
			break;

		/* wait on curl's sockets and the latch */
		run->wes = CreateWaitEventSet(runcxt, nsocks + 2);
		AddWaitEventToSet(run->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		if (IsUnderPostmaster)
			AddWaitEventToSet(run->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (s = 0; s < nsocks; s++)
		{
			int			ev = 0;

			if (socks[s].what & CURL_POLL_IN)
				ev |= WL_SOCKET_READABLE;
			if (socks[s].what & CURL_POLL_OUT)
				ev |= WL_SOCKET_WRITEABLE;
			if (ev)
				AddWaitEventToSet(run->wes, ev, socks[s].fd, NULL, NULL);
		}
		timeout = curl_timeout_ms < 0 ? 1000 : Min(curl_timeout_ms, 1000);
		nev = (timeout == 0) ? 0 :
			WaitEventSetWait(run->wes, timeout, events, lengthof(events), PG_WAIT_EXTENSION);
		for (i = 0; i < nev; i++)
		{
			if (events[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				latch_seen = true;
				CHECK_FOR_INTERRUPTS();
				continue;
			}
			curl_multi_socket_action(multi, events[i].fd,
									 ((events[i].events & WL_SOCKET_READABLE) ? CURL_CSELECT_IN : 0) |
									 ((events[i].events & WL_SOCKET_WRITEABLE) ? CURL_CSELECT_OUT : 0),
									 &running);
		}
		FreeWaitEventSet(run->wes);
		run->wes = NULL;
		if (nev == 0)
			curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
		drain_messages(run, &inflight);
		CHECK_FOR_INTERRUPTS();
	}

	MemoryContextSwitchTo(caller);
	MemoryContextDelete(runcxt);	/* run_release: nothing left, normally */
	/* a wake-up that arrived during the run is kept for the caller */
	if (latch_seen)
		SetLatch(MyLatch);
}

void
http_run_one(HttpRequest *req)
{
	http_run(&req, 1, 1);
}

void
http_define_gucs(void)
{
	DefineCustomIntVariable("sync.http_timeout",
							"Total time allowed for one HTTP request.",
							NULL, &sync_http_timeout_ms, 30000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("sync.http_connect_timeout",
							"Time allowed to connect (TCP and TLS) for one HTTP request.",
							NULL, &sync_http_connect_timeout_ms, 10000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("sync.http_max_in_flight",
							"Concurrent HTTP requests per connection, unless its max_in_flight option says otherwise.",
							NULL, &sync_http_max_in_flight, 8, 1, 256,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("sync.http_max_response_bytes",
							"Largest HTTP response body accepted; larger ones are cut off while reading.",
							NULL, &sync_http_max_response_bytes, 64 * 1024 * 1024, 1024, INT_MAX,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
}
