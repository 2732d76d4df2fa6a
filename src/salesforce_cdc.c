/*
 * salesforce_cdc.c — Salesforce Change Data Capture over the Streaming API,
 * for mirrors with the option "realtime": true.
 *
 * Protocol: Bayeux (CometD) long polling over HTTP/1.1 at
 * <instance_url>/cometd/<version>, with the connection's bearer token and
 * the cookies the server sets (its load balancer routes a client by them):
 * /meta/handshake -> clientId; /meta/subscribe to /data/<Object>ChangeEvent
 * (custom objects: /data/<Name>__ChangeEvent) with the replay extension
 * (ext.replay = {channel: replayId}); then /meta/connect again and again,
 * each held by the server until events arrive or its timeout (110 s).
 * One client per mirror, so each client receives only its own channel (the
 * daily event delivery allocation counts events x subscribers).
 *
 * Where the poll runs.  In the database's worker, between and beside its
 * other work: each open stream keeps one /meta/connect in flight as a
 * background request (http.h), held by the server until events come.
 * When a round finds nothing due, cdc_stream_round() waits on those
 * connects and the worker's latch instead of sleeping; a wake-up (a commit
 * of captured writes: push first), SIGHUP or the next due work (another
 * mirror's pull, a retry) ends the wait, not the connects.  Their answers
 * are read by whatever drives libcurl next — the push's or pull's own
 * requests, or the next wait — and applied at the start of the next round
 * that gets here, due work or not, after which the stream connects again.
 * So a stream keeps its client however often the worker has other work:
 * no handshake, subscription or gap per commit or pull.  (An earlier
 * design ended the long poll for other work, which cost a new client each
 * time and, for a stream with no replay ID yet, a gap for the pull to
 * cover.)  Salesforce expires a client that does not connect again within
 * 40 s of an answer: a round's other work that takes longer makes the next
 * connect answer "403::Unknown client", and the stream subscribes again
 * from its stored replay ID.
 *
 * Applying.  Each batch of events (one connect's answer) is applied in one
 * transaction with the replay ID of its last event stored in the mirror's
 * cursor ("cdc_replay"): after a crash the stream resumes after the last
 * event applied, never before (nothing twice) nor after (nothing lost).
 * Events carry only the changed fields: an UPDATE is merged onto the row
 * as it is (read under a row lock in the same transaction), so the engine's
 * apply path (conflict policy, pending local changes, journal, errors)
 * sees complete records.  Records that cannot be merged — not in the table
 * yet, UNDELETE, GAP_* — are re-read by ID through the provider's fetch
 * (one call per 2,000 IDs) before the transaction; GAP_OVERFLOW, a replay
 * ID older than the retention window (400 on subscribe), and a first
 * subscription (replay -1: new events only) make the next round run an
 * incremental pull at once, which reads everything changed since the last
 * pull (its cursor is not advanced by the stream).
 *
 * Our own writes.  Every write sends Sforce-Call-Options:
 * client=sync-<system identifier><database OID>; Salesforce puts that into
 * the event's changeOrigin, and such events are skipped: the row already
 * holds what we sent (the pull would find nothing to change either, and
 * under "remote_wins" treats a record no newer than our last push as our
 * echo).  Fields a Salesforce trigger changed in the same transaction come
 * with the safety-net pull.
 *
 * Safety net.  While a mirror's stream is healthy, its pull runs every ten
 * minutes at most often (its pull_interval when that is longer).
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "conn.h"
#include "engine_int.h"
#include "provider.h"
#include "pause.h"
#include "salesforce_cdc.h"
#include "worker.h"

#define CDC_CONNECT_TIMEOUT_MS	130000	/* Salesforce holds a connect up to 110 s */
#define CDC_SAFETY_NET			"10 minutes"	/* the pull's interval while streaming */
#define CDC_FETCH_MAX			2000
/* One mirror's stream (kept across rounds in stream_cxt). */
typedef struct CdcStream
{
	int			mirror;
	char	   *connection;
	char	   *object;
	char	   *channel;
	char	   *client_id;		/* NULL: handshake (and subscribe) needed */
	char	   *abandoned;		/* a client whose connect we gave up */
	List	   *cookies;		/* of "name=value" */
	bool		healthy;		/* subscribed, last connect answered */
	bool		seen;			/* still a realtime mirror this round */
	HttpAsync  *poll;			/* its /meta/connect in flight, or NULL */
	HttpRequest *poll_req;		/* ... its request, in poll_cxt */
	MemoryContext poll_cxt;
	int			failures;
	TimestampTz retry_at;		/* nothing before this */
	int			msg_id;
} CdcStream;

static MemoryContext stream_cxt = NULL;
static void stream_reset(CdcStream *s);
static List *streams = NIL;
static bool pull_requested = false;	/* a pull is due now: no long poll first */

/* ---------------------------------------------------------------------
 * our client tag
 * --------------------------------------------------------------------- */

const char *
sf_cdc_call_options(void)
{
	static char buf[64];

	if (buf[0] == '\0')
		snprintf(buf, sizeof(buf), "client=sync-%016llx%08x",
				 (unsigned long long) GetSystemIdentifier(), (unsigned int) MyDatabaseId);
	return buf;
}

/* Does changeOrigin ("com/salesforce/api/rest/59.0;client=...") name us? */
static bool
own_origin(const char *origin)
{
	const char *tag = sf_cdc_call_options();
	size_t		len = strlen(tag);
	const char *p;

	if (origin == NULL)
		return false;
	for (p = strstr(origin, tag); p; p = strstr(p + 1, tag))
		if ((p == origin || p[-1] == ';' || p[-1] == ' ') &&
			(p[len] == '\0' || p[len] == ';' || p[len] == ','))
			return true;
	return false;
}

/* ---------------------------------------------------------------------
 * Bayeux over HTTP
 * --------------------------------------------------------------------- */

/* /data/ContactChangeEvent; custom objects: /data/Foo__ChangeEvent */
static char *
channel_for(const char *object)
{
	size_t		len = strlen(object);
	const char *p;

	for (p = object; *p; p++)
		if (!isalnum((unsigned char) *p) && *p != '_')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("Salesforce object name \"%s\" cannot name a change event channel", object)));
	if (len > 3 && strcmp(object + len - 3, "__c") == 0)
		return psprintf("/data/%.*s__ChangeEvent", (int) (len - 3), object);
	return psprintf("/data/%sChangeEvent", object);
}

static char *
cometd_url(SyncConnection *conn)
{
	const char *v = sjson_get_string(conn->options, "api_version");

	if (v == NULL)
		v = "v59.0";
	return psprintf("%s/cometd/%s", conn->api_base, v[0] == 'v' ? v + 1 : v);
}

static HttpRequest *
bayeux_request(CdcStream *s, SyncConnection *conn, SJson *msgs, int timeout_ms)
{
	HttpRequest *req;
	char	   *body = sjson_serialize(msgs);
	ListCell   *lc;

	conn_ensure_auth(conn);
	req = http_request_new("POST", cometd_url(conn));
	http_set_body(req, body, strlen(body), "application/json");
	http_add_header(req, "Accept", "application/json");
	if (s->cookies != NIL)
	{
		StringInfoData c;

		initStringInfo(&c);
		foreach(lc, s->cookies)
			appendStringInfo(&c, "%s%s", c.len ? "; " : "", (char *) lfirst(lc));
		http_add_header(req, "Cookie", c.data);
	}
	req->ca_file = conn->ca_file;
	req->timeout_ms = timeout_ms;
	conn->provider->sign(conn, req);
	return req;
}

/* Keep the cookies the server set (name=value, replacing the same name). */
static void
keep_cookies(CdcStream *s, const HttpRequest *req)
{
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(stream_cxt ? stream_cxt : CurrentMemoryContext);

	foreach(lc, req->response_headers)
	{
		HttpHeader *h = (HttpHeader *) lfirst(lc);
		char	   *v;
		char	   *eq;
		ListCell   *c;
		bool		replaced = false;

		if (strcmp(h->name, "set-cookie") != 0)
			continue;
		v = pnstrdup(h->value, strcspn(h->value, ";"));
		if ((eq = strchr(v, '=')) == NULL || eq == v || strpbrk(v, "\r\n") != NULL)
			continue;
		foreach(c, s->cookies)
		{
			char	   *have = (char *) lfirst(c);

			if (strncmp(have, v, eq - v + 1) == 0)
			{
				lfirst(c) = v;
				replaced = true;
				break;
			}
		}
		if (!replaced && list_length(s->cookies) < 16)
			s->cookies = lappend(s->cookies, v);
	}
	MemoryContextSwitchTo(old);
}

/* The reply to a meta message (channel) in a Bayeux answer, or NULL. */
static SJson *
meta_reply(SJson *arr, const char *channel)
{
	int			i;

	for (i = 0; i < sjson_array_length(arr); i++)
	{
		SJson	   *msg = sjson_array_get(arr, i);
		const char *ch = sjson_get_string(msg, "channel");

		if (ch && strcmp(ch, channel) == 0)
			return msg;
	}
	return NULL;
}

/* The answer's messages; ERROR for a failed exchange.  401: once more. */
static SJson *
bayeux_exchange(CdcStream *s, SyncConnection *conn, SJson *msgs, const char *what)
{
	HttpRequest *req = NULL;
	SJson	   *j;
	int			attempt;

	for (attempt = 0; attempt < 2; attempt++)
	{
		req = bayeux_request(s, conn, msgs, 0);
		http_run_one(req);
		keep_cookies(s, req);
		if (req->outcome == HTTP_DONE && req->status == 401 && attempt == 0)
		{
			conn_invalidate_token(conn);
			continue;
		}
		break;
	}
	if (req->outcome != HTTP_DONE || req->status != 200)
		conn_error_from_response(conn, what, req, provider_body_excerpt(req, 300));
	j = provider_response_json(req);
	if (sjson_type(j) != SJSON_ARRAY)
		provider_bad_response(conn, "Salesforce", what, req, "not a JSON array of Bayeux messages");
	return j;
}

static SJson *
new_message(CdcStream *s, SJson *arr, const char *channel)
{
	SJson	   *msg = sjson_append_object(arr);

	sjson_add_string(msg, "channel", channel);
	sjson_add_string(msg, "id", psprintf("%d", ++s->msg_id));
	if (s->client_id)
		sjson_add_string(msg, "clientId", s->client_id);
	return msg;
}

static void
handshake(CdcStream *s, SyncConnection *conn)
{
	SJson	   *arr = sjson_new_array();
	SJson	   *msg;
	SJson	   *types;
	SJson	   *reply;
	const char *cid;

	if (s->abandoned)
	{
		/* the client given up goes in the same request (its held connect ends) */
		SJson	   *bye = new_message(s, arr, "/meta/disconnect");

		sjson_add_string(bye, "clientId", s->abandoned);
		s->abandoned = NULL;
	}
	s->client_id = NULL;
	msg = new_message(s, arr, "/meta/handshake");
	sjson_add_string(msg, "version", "1.0");
	sjson_add_string(msg, "minimumVersion", "1.0");
	types = sjson_add_array(msg, "supportedConnectionTypes");
	sjson_append_string(types, "long-polling");
	sjson_add_bool(sjson_add_object(msg, "ext"), "replay", true);
	reply = meta_reply(bayeux_exchange(s, conn, arr, "opening the change event stream"),
					   "/meta/handshake");
	if (!sjson_bool(sjson_get(reply, "successful"), false) && sjson_get_string(reply, "error") &&
		strstr(sjson_get_string(reply, "error"), "Handshake denied"))
	{
		/* usually an expired token (ext.sfdc.failureReason 401): once more with a new one */
		conn_invalidate_token(conn);
		reply = meta_reply(bayeux_exchange(s, conn, arr, "opening the change event stream"),
						   "/meta/handshake");
	}
	cid = sjson_get_string(reply, "clientId");
	if (!sjson_bool(sjson_get(reply, "successful"), false) || cid == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("connection \"%s\": Salesforce refused the Streaming API handshake", conn->name),
				 errdetail("Salesforce said: %s",
						   sjson_get_string(reply, "error") ? sjson_get_string(reply, "error") : "(no error given)"),
				 errhint("The connection's user needs the \"API Enabled\" and \"Streaming API\" permissions.")));
	s->client_id = MemoryContextStrdup(stream_cxt ? stream_cxt : CurrentMemoryContext, cid);
}

/*
 * Subscribe with the replay ID (-1: new events only).  false: Salesforce no
 * longer has that replay ID (older than the retention window).
 */
static bool
subscribe(CdcStream *s, SyncConnection *conn, int64 replay)
{
	SJson	   *arr = sjson_new_array();
	SJson	   *msg = new_message(s, arr, "/meta/subscribe");
	SJson	   *reply;
	const char *err;

	sjson_add_string(msg, "subscription", s->channel);
	sjson_add_int(sjson_add_object(sjson_add_object(msg, "ext"), "replay"), s->channel, replay);
	reply = meta_reply(bayeux_exchange(s, conn, arr, psprintf("subscribing to %s", s->channel)),
					   "/meta/subscribe");
	if (sjson_bool(sjson_get(reply, "successful"), false))
		return true;
	err = sjson_get_string(reply, "error");
	if (err && strncmp(err, "400::", 5) == 0 && strstr(err, "replayId"))
		return false;
	if (err && strstr(err, "Unknown channel"))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("Change Data Capture is not enabled for %s in the Salesforce org of connection \"%s\"",
						s->object, conn->name),
				 errdetail("Salesforce answered the subscription to %s with \"%s\".", s->channel, err),
				 errhint("In Salesforce Setup, Integrations > Change Data Capture, move %s to Selected Entities "
						 "(or set the mirror option \"realtime\" to false); until then the mirror is kept up to date by polling.",
						 s->object)));
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("connection \"%s\": Salesforce refused the subscription to %s", conn->name, s->channel),
			 errdetail("Salesforce said: %s", err ? err : "(no error given)")));
	return false;				/* keep compiler quiet */
}

/* ---------------------------------------------------------------------
 * mirror_state
 * --------------------------------------------------------------------- */

static void
request_pull_now(int mirror)
{
	Oid			t[1] = {INT4OID};
	Datum		a[1] = {Int32GetDatum(mirror)};

	spi_exec("UPDATE sync.mirror_state SET next_pull_at = pg_catalog.now() "
			 "WHERE mirror OPERATOR(pg_catalog.=) $1", 1, t, a, NULL, SPI_OK_UPDATE);
}

static void
store_replay(int mirror, int64 replay)
{
	Oid			t[2] = {INT4OID, INT8OID};
	Datum		a[2] = {Int32GetDatum(mirror), Int64GetDatum(replay)};

	spi_exec("UPDATE sync.mirror_state SET cursor = pg_catalog.jsonb_set("
			 "  COALESCE(cursor, '{}'::pg_catalog.jsonb), '{cdc_replay}', pg_catalog.to_jsonb($2::pg_catalog.int8)) "
			 "WHERE mirror OPERATOR(pg_catalog.=) $1", 2, t, a, NULL, SPI_OK_UPDATE);
}

/* A stream's error, shown in sync.status. */
static void
note_stream_error(int mirror, const char *message)
{
	Oid			t[2] = {INT4OID, TEXTOID};
	Datum		a[2] = {Int32GetDatum(mirror), CStringGetTextDatum(message)};

	xact_begin(true);
	/* and polling takes over at once: the safety net's interval was the stream's */
	spi_exec("UPDATE sync.mirror_state SET last_error = $2, last_error_at = pg_catalog.now(), "
			 "  next_pull_at = LEAST(next_pull_at, pg_catalog.now()) "
			 "WHERE mirror OPERATOR(pg_catalog.=) $1", 2, t, a, NULL, SPI_OK_UPDATE);
	xact_end(true);
}

static void
stream_failed(CdcStream *s, MemoryContext work)
{
	ErrorData  *e;
	MemoryContext old = MemoryContextSwitchTo(work);
	char	   *msg;

	e = CopyErrorData();
	MemoryContextSwitchTo(old);
	FlushErrorState();
	AbortCurrentTransaction();
	msg = e->detail ? psprintf("%s (%s)", e->message, e->detail) : e->message;
	ereport(LOG,
			(errmsg("sync: mirror %d: change event stream: %s", s->mirror, e->message),
			 e->detail ? errdetail_internal("%s", e->detail) : 0,
			 e->hint ? errhint("%s", e->hint) : 0));
	stream_reset(s);
	s->failures++;
	s->retry_at = GetCurrentTimestamp() +
		backoff_ms(Min(s->failures, 10), 2000, 5 * 60 * 1000) * (int64) 1000;
	PG_TRY();
	{
		note_stream_error(s->mirror, msg);
	}
	PG_CATCH();
	{
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
}

/* ---------------------------------------------------------------------
 * events -> records
 * --------------------------------------------------------------------- */

typedef struct CdcEvent
{
	int64		replay;
	char		kind;			/* C U D E(undelete) G(gap) O(overflow) S(ours) */
	char	  **rids;
	int			nrids;
	SJson	   *payload;
	SJson	   *header;
} CdcEvent;

/* The merged state of one record in a batch. */
typedef struct CdcSlot
{
	char	   *rid;
	char		state;			/* 'n' nothing yet, 'r' record, 'd' deleted, 'f' fetched, 'x' set aside */
	SyncRecord rec;
} CdcSlot;

static int
field_index(SyncMirror *m, const char *name)
{
	int			k;

	for (k = 0; k < m->nfields; k++)
		if (strcmp(m->fields[k].remote_name, name) == 0)
			return k;
	return -1;
}

/*
 * A field named in changedFields or nulledFields, or a top-level payload
 * key, to the mirror's field and the event's value.  Compound fields
 * arrive nested: "Name.FirstName" is FirstName, "BillingAddress.City" is
 * BillingCity.
 */
static int
event_field(SyncMirror *m, SJson *payload, const char *name, SJson **value)
{
	const char *dot = strchr(name, '.');
	char	   *compound;
	const char *part;
	size_t		clen;

	if (dot == NULL)
	{
		*value = sjson_get(payload, name);
		return field_index(m, name);
	}
	compound = pnstrdup(name, dot - name);
	part = dot + 1;
	*value = sjson_get(sjson_get(payload, compound), part);
	clen = strlen(compound);
	if (clen >= 7 && strcmp(compound + clen - 7, "Address") == 0)
		return field_index(m, psprintf("%.*s%s", (int) (clen - 7), compound, part));
	return field_index(m, part);
}

static void
set_value(SyncMirror *m, SyncRecord *rec, int k, SJson *v)
{
	if (k < 0 || m->fields[k].role == FIELD_ID)
		return;
	if (sjson_type(v) == SJSON_NULL)
	{
		rec->values[k] = NULL;
		return;
	}
	if (sjson_type(v) == SJSON_OBJECT || sjson_type(v) == SJSON_ARRAY)
		return;					/* a compound; its parts are named one by one */
	if (sjson_repaired(v) && rec->invalid == NULL)
		rec->invalid = provider_broken_value(m->fields[k].remote_name);
	if (strcmp(m->fields[k].local_type, "text[]") == 0 && sjson_string(v))
		rec->values[k] = provider_list_array(sjson_string(v));
	else
		rec->values[k] = sjson_scalar_text(v);
	if (m->fields[k].role == FIELD_STAMP)
		rec->stamp = rec->values[k];
}

/* The event's stamp: the stamp field if it came, else commitTimestamp. */
static char *
event_stamp(SyncMirror *m, CdcEvent *ev)
{
	int			k;
	int64		ms;

	for (k = 0; k < m->nfields; k++)
		if (m->fields[k].role == FIELD_STAMP)
		{
			const char *s = sjson_get_string(ev->payload, m->fields[k].remote_name);

			if (s && provider_valid_stamp(s))
				return pstrdup(s);
		}
	ms = sjson_int(sjson_get(ev->header, "commitTimestamp"), 0);
	if (ms <= 0)
		return NULL;
	return pstrdup(timestamptz_to_str(time_t_to_timestamptz((pg_time_t) (ms / 1000)) +
									  (ms % 1000) * 1000));
}

static void
apply_event_fields(SyncMirror *m, CdcEvent *ev, SyncRecord *rec, bool all)
{
	SJson	   *changed = sjson_get(ev->header, "changedFields");
	SJson	   *nulled = sjson_get(ev->header, "nulledFields");
	char	   *stamp = event_stamp(m, ev);
	SJson	   *v;
	int			i;

	if (all || sjson_array_length(changed) == 0)
	{
		/* every field the event carries (a create: the rest is null) */
		const char **keys;
		int			n = sjson_object_keys(ev->payload, &keys);

		for (i = 0; i < n; i++)
		{
			SJson	   *val = sjson_get(ev->payload, keys[i]);

			if (strcmp(keys[i], "ChangeEventHeader") == 0)
				continue;
			if (sjson_type(val) == SJSON_OBJECT)
			{
				const char **parts;
				int			np = sjson_object_keys(val, &parts),
							p;

				for (p = 0; p < np; p++)
				{
					char	   *name = psprintf("%s.%s", keys[i], parts[p]);
					int			k = event_field(m, ev->payload, name, &v);

					set_value(m, rec, k, v);
				}
			}
			else if (val != NULL)
				set_value(m, rec, field_index(m, keys[i]), val);
		}
	}
	else
		for (i = 0; i < sjson_array_length(changed); i++)
		{
			const char *name = sjson_string(sjson_array_get(changed, i));
			int			k;

			if (name == NULL)
				continue;
			k = event_field(m, ev->payload, name, &v);
			set_value(m, rec, k, v);
		}
	for (i = 0; i < sjson_array_length(nulled); i++)
	{
		const char *name = sjson_string(sjson_array_get(nulled, i));
		int			k;

		if (name == NULL)
			continue;
		k = event_field(m, ev->payload, name, &v);
		set_value(m, rec, k, NULL);
	}
	if (stamp)
		rec->stamp = stamp;
}

static CdcEvent *
parse_events(SyncConnection *conn, CdcStream *s, const HttpRequest *req, SJson *arr, int *nev,
			 int64 *last_replay)
{
	CdcEvent   *evs = palloc0(sizeof(CdcEvent) * Max(1, sjson_array_length(arr)));
	char	   *what = psprintf("reading change events of %s", s->object);
	int			i,
				k;

	*nev = 0;
	for (i = 0; i < sjson_array_length(arr); i++)
	{
		SJson	   *msg = sjson_array_get(arr, i);
		const char *ch = sjson_get_string(msg, "channel");
		SJson	   *data = sjson_get(msg, "data");
		CdcEvent   *ev;
		const char *type;
		SJson	   *ids;

		if (ch == NULL || strcmp(ch, s->channel) != 0 || data == NULL)
			continue;
		ev = &evs[(*nev)++];
		ev->payload = sjson_get(data, "payload");
		ev->header = sjson_get(ev->payload, "ChangeEventHeader");
		if (sjson_type(sjson_get(sjson_get(data, "event"), "replayId")) != SJSON_INT)
			provider_bad_response(conn, "Salesforce", what, req, "an event without a numeric replayId");
		ev->replay = sjson_int(sjson_get(sjson_get(data, "event"), "replayId"), 0);
		*last_replay = ev->replay;
		type = sjson_get_string(ev->header, "changeType");
		ids = sjson_get(ev->header, "recordIds");
		if (type == NULL)
			provider_bad_response(conn, "Salesforce", what, req, "an event without ChangeEventHeader.changeType");
		ev->nrids = sjson_array_length(ids);
		ev->rids = palloc(sizeof(char *) * Max(1, ev->nrids));
		for (k = 0; k < ev->nrids; k++)
		{
			const char *id = sjson_string(sjson_array_get(ids, k));

			if (!salesforce_provider.valid_remote_id(id))
				provider_bad_response(conn, "Salesforce", what, req,
									  psprintf("event %lld names record %s, which is not a Salesforce ID",
											   (long long) ev->replay, provider_quote_value(id)));
			ev->rids[k] = pstrdup(id);
		}
		if (own_origin(sjson_get_string(ev->header, "changeOrigin")))
			ev->kind = 'S';
		else if (strcmp(type, "CREATE") == 0)
			ev->kind = 'C';
		else if (strcmp(type, "UPDATE") == 0)
			ev->kind = 'U';
		else if (strcmp(type, "DELETE") == 0)
			ev->kind = 'D';
		else if (strcmp(type, "UNDELETE") == 0)
			ev->kind = 'E';
		else if (strcmp(type, "GAP_OVERFLOW") == 0)
			ev->kind = 'O';
		else if (strncmp(type, "GAP_", 4) == 0)
			ev->kind = 'G';
		else
		{
			ereport(LOG,
					(errmsg("sync: mirror %d: change event %lld of unknown type \"%s\": an incremental pull follows",
							s->mirror, (long long) ev->replay, type)));
			ev->kind = 'O';
		}
	}
	return evs;
}

static CdcSlot *
slot_for(CdcSlot *slots, int *nslots, const char *rid)
{
	int			i;

	for (i = 0; i < *nslots; i++)
		if (strncmp(slots[i].rid, rid, 15) == 0)
			return &slots[i];
	slots[*nslots].rid = (char *) rid;
	slots[*nslots].state = 'n';
	return &slots[(*nslots)++];
}

/*
 * The rows holding these remote IDs, as text per mirror field: to merge
 * changed fields onto.  With lock, locked FOR NO KEY UPDATE (rows a user
 * holds are skipped: re-read later).  As the table's owner.
 */
static int
read_rows(SyncMirror *m, char **rids, int n, bool lock, char ***rid_out, char ****vals_out)
{
	StringInfoData q;
	Oid			t[1] = {TEXTARRAYOID};
	Datum		a[1];
	OwnerScope	os;
	int			k,
				r,
				nrows;

	initStringInfo(&q);
	appendStringInfo(&q, "SELECT t.%s::pg_catalog.text", quote_identifier(m->remote_id_column));
	for (k = 0; k < m->nfields; k++)
		appendStringInfo(&q, ", t.%s::pg_catalog.text", quote_identifier(m->columns[k]));
	appendStringInfo(&q, " FROM %s t WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])%s",
					 m->qualified_table, quote_identifier(m->remote_id_column),
					 lock ? " FOR NO KEY UPDATE OF t SKIP LOCKED" : "");
	a[0] = text_array(rids, n);
	owner_begin(m->owner, &os);
	spi_exec(q.data, 1, t, a, NULL, SPI_OK_SELECT);
	owner_end(&os);
	nrows = (int) SPI_processed;
	*rid_out = palloc(sizeof(char *) * Max(1, nrows));
	*vals_out = palloc(sizeof(char **) * Max(1, nrows));
	for (r = 0; r < nrows; r++)
	{
		(*rid_out)[r] = getv(r, 1);
		(*vals_out)[r] = palloc(sizeof(char *) * Max(1, m->nfields));
		for (k = 0; k < m->nfields; k++)
			(*vals_out)[r][k] = getv(r, k + 2);
	}
	return nrows;
}

/* Set aside for pull_retry (it re-reads them by ID at the next pull, due now). */
static void
set_aside_retry(SyncMirror *m, char **rids, int n)
{
	Oid			t[2] = {INT4OID, TEXTARRAYOID};
	Datum		a[2] = {Int32GetDatum(m->id), text_array(rids, n)};

	spi_exec("INSERT INTO sync.inbound_error AS e (mirror, remote_id, operation, error_code, error_message, state) "
			 "SELECT $1, u.rid, 'update', '55P03', "
			 "  'a change event could not be merged (the row was locked or missing); it is re-read', 'retry' "
			 "FROM pg_catalog.unnest($2::pg_catalog.text[]) AS u(rid) "
			 "ON CONFLICT (mirror, remote_id) DO UPDATE SET state = 'retry', failed_at = pg_catalog.now()",
			 2, t, a, NULL, SPI_OK_INSERT);
	request_pull_now(m->id);
}

/*
 * Each record an event names gets a slot: 'f' re-read (undeletes, gaps:
 * into fetch[]), 'b' an update whose base is the local row (into base[]),
 * 'c' created or deleted by the events themselves.
 */
static void
classify_events(CdcEvent *evs, int nev, CdcSlot *slots, int *nslots,
				char **fetch, int *nfetch, char **base, int *nbase)
{
	int			i,
				j;

	for (i = 0; i < nev; i++)
		for (j = 0; j < evs[i].nrids; j++)
		{
			CdcSlot    *sl = slot_for(slots, nslots, evs[i].rids[j]);

			if (evs[i].kind == 'E' || evs[i].kind == 'G')
			{
				if (sl->state != 'f')
					fetch[(*nfetch)++] = sl->rid;
				sl->state = 'f';
			}
			else if (evs[i].kind == 'U' && sl->state == 'n')
			{
				base[(*nbase)++] = sl->rid;
				sl->state = 'b';
			}
			else if ((evs[i].kind == 'C' || evs[i].kind == 'D') && sl->state == 'n')
				sl->state = 'c';
		}
}

/*
 * The slots of updates ('b'): the local rows, read locked in the batch's
 * transaction, as the records their events change ('r'); a row gone
 * meanwhile sets the record aside for a retry (retry[]; returns how many).
 */
static int
base_records(SyncMirror *m, CdcSlot *slots, int nslots, char **base, char **retry)
{
	char	  **rr = NULL;
	char	 ***vv = NULL;
	int			nr = 0,
				nbase = 0,
				nretry = 0,
				i,
				j;

	for (i = 0; i < nslots; i++)
		if (slots[i].state == 'b')
			base[nbase++] = slots[i].rid;
	if (nbase > 0)
		nr = read_rows(m, base, nbase, true, &rr, &vv);
	for (i = 0; i < nslots; i++)
	{
		if (slots[i].state != 'b')
			continue;
		slots[i].state = 'x';
		for (j = 0; j < nr; j++)
			if (strcmp(rr[j], slots[i].rid) == 0)
			{
				int			k;

				slots[i].rec.remote_id = slots[i].rid;
				slots[i].rec.values = palloc0(sizeof(char *) * Max(1, m->nfields));
				for (k = 0; k < m->nfields; k++)
				{
					slots[i].rec.values[k] = vv[j][k];
					if (m->fields[k].role == FIELD_STAMP)
						slots[i].rec.stamp = vv[j][k];
				}
				slots[i].state = 'r';
			}
		if (slots[i].state == 'x')
			retry[nretry++] = slots[i].rid;
	}
	return nretry;
}

/* The events in order, onto their records' slots. */
static void
events_onto_records(SyncMirror *m, CdcEvent *evs, int nev, CdcSlot *slots, int *nslots)
{
	int			i,
				j;

	for (i = 0; i < nev; i++)
		for (j = 0; j < evs[i].nrids; j++)
		{
			CdcSlot    *sl = slot_for(slots, nslots, evs[i].rids[j]);

			if (sl->state == 'f' || sl->state == 'x')
				continue;		/* re-read, or set aside */
			switch (evs[i].kind)
			{
				case 'C':
					memset(&sl->rec, 0, sizeof(SyncRecord));
					sl->rec.remote_id = sl->rid;
					sl->rec.values = palloc0(sizeof(char *) * Max(1, m->nfields));
					apply_event_fields(m, &evs[i], &sl->rec, true);
					sl->state = 'r';
					break;
				case 'U':
					if (sl->state == 'r')
						apply_event_fields(m, &evs[i], &sl->rec, false);
					break;
				case 'D':
					sl->state = 'd';
					break;
				default:
					break;		/* ours, or an overflow */
			}
		}
}

/*
 * One connect's events, applied in one transaction with the replay ID of
 * the last.  Re-reads (fetch) happen before it, outside any transaction.
 */
static void
apply_events(CdcStream *s, SyncConnection *conn, const HttpRequest *req, SJson *arr, MemoryContext work)
{
	CdcEvent   *evs;
	int			nev,
				i,
				j,
				nslots = 0,
				nfetch = 0,
				nbase = 0,
				total = 0;
	int64		last_replay = -1;
	SyncMirror *m;
	char	   *connection;
	CdcSlot    *slots;
	char	  **fetch,
			  **base;
	bool		overflow = false;
	SyncPage   *fpage = NULL;
	SyncPage   *page;
	int64		applied = 0,
				deleted = 0,
				failed = 0;
	char	  **retry;
	int			nretry = 0;
	int			nown = 0;

	evs = parse_events(conn, s, req, arr, &nev, &last_replay);
	if (nev == 0)
		return;
	for (i = 0; i < nev; i++)
		total += evs[i].nrids;
	slots = palloc0(sizeof(CdcSlot) * Max(1, total));
	fetch = palloc(sizeof(char *) * Max(1, total));
	base = palloc(sizeof(char *) * Max(1, total));
	retry = palloc(sizeof(char *) * Max(1, total));

	/* what must be re-read: undeletes, gaps, updates of records not here */
	classify_events(evs, nev, slots, &nslots, fetch, &nfetch, base, &nbase);
	for (i = 0; i < nev; i++)
		overflow |= evs[i].kind == 'O';

	xact_begin(true);
	m = mirror_load(s->mirror, work, &connection);
	if (nbase > 0)
	{
		char	  **rr;
		char	 ***vv;
		int			nr = read_rows(m, base, nbase, false, &rr, &vv);

		for (i = 0; i < nbase; i++)
		{
			bool		here = false;

			for (j = 0; j < nr && !here; j++)
				here = strcmp(rr[j], base[i]) == 0;
			if (!here)
			{
				fetch[nfetch++] = base[i];
				slot_for(slots, &nslots, base[i])->state = 'f';
			}
		}
	}
	xact_end(true);
	MemoryContextSwitchTo(work);

	if (nfetch > 0)
	{
		fpage = palloc0(sizeof(SyncPage));
		conn->provider->fetch(conn, m, fetch, nfetch, fpage);
	}

	/* the batch, in one transaction with its replay ID */
	xact_begin(true);
	m = mirror_load(s->mirror, work, &connection);
	page = palloc0(sizeof(SyncPage));
	page->total = -1;
	page->records = palloc0(sizeof(SyncRecord) * Max(1, nslots + (fpage ? fpage->nrecords : 0)));
	page->deleted_ids = palloc(sizeof(char *) * Max(1, nslots + (fpage ? fpage->ndeleted_ids : 0)));
	nretry = base_records(m, slots, nslots, base, retry);

	/* the events in order, onto their records */
	events_onto_records(m, evs, nev, slots, &nslots);
	for (i = 0; i < nslots; i++)
	{
		if (slots[i].state == 'r')
			page->records[page->nrecords++] = slots[i].rec;
		else if (slots[i].state == 'd')
			page->deleted_ids[page->ndeleted_ids++] = slots[i].rid;
	}
	if (fpage)
	{
		for (i = 0; i < fpage->nrecords; i++)
			page->records[page->nrecords++] = fpage->records[i];
		for (i = 0; i < fpage->ndeleted_ids; i++)
			page->deleted_ids[page->ndeleted_ids++] = fpage->deleted_ids[i];
	}
	if (page->nrecords > 0 || page->ndeleted_ids > 0)
		apply_records(m, page, work, &applied, &deleted, &failed);
	if (nretry > 0)
		set_aside_retry(m, retry, nretry);
	if (overflow)
		request_pull_now(m->id);
	pull_requested |= overflow || nretry > 0;
	store_replay(m->id, last_replay);
	xact_end(true);
	MemoryContextSwitchTo(work);
	for (i = 0; i < nev; i++)
		nown += evs[i].kind == 'S';
	elog(DEBUG1, "sync: mirror %d: %d change events to replay ID %lld (%d of our own writes, skipped): "
		 "%lld applied, %lld deleted, %lld failed, %d re-read%s",
		 s->mirror, nev, (long long) last_replay, nown, (long long) applied, (long long) deleted,
		 (long long) failed, nfetch, overflow ? ", overflow: pulling" : "");
}

/* ---------------------------------------------------------------------
 * the round
 * --------------------------------------------------------------------- */

/* What ends the wait on the streams' connects (not the connects). */
static bool
stop_waiting(void *arg)
{
	uint64		wakes = *(uint64 *) arg;

	return sync_worker_wakes() != wakes || ConfigReloadPending;
}

/*
 * Give up the stream's connect in flight, if any: the server still holds
 * it for that client, so the client is given up too (disconnected in the
 * request that opens the next one).
 */
static void
poll_drop(CdcStream *s)
{
	if (s->poll == NULL)
		return;
	if (!http_background_done(s->poll) && s->client_id != NULL)
		s->abandoned = s->client_id;
	http_background_release(s->poll);
	MemoryContextDelete(s->poll_cxt);
	s->poll = NULL;
	s->poll_req = NULL;
	s->poll_cxt = NULL;
}

static CdcStream *
stream_for(int mirror)
{
	ListCell   *lc;
	CdcStream  *s;

	foreach(lc, streams)
	{
		s = (CdcStream *) lfirst(lc);
		if (s->mirror == mirror)
			return s;
	}
	s = MemoryContextAllocZero(stream_cxt, sizeof(CdcStream));
	s->mirror = mirror;
	{
		MemoryContext old = MemoryContextSwitchTo(stream_cxt);

		streams = lappend(streams, s);
		MemoryContextSwitchTo(old);
	}
	return s;
}

/* A new client is needed (the cookies stay: the load balancer's affinity) */
static void
stream_reset(CdcStream *s)
{
	poll_drop(s);
	s->client_id = NULL;
	s->healthy = false;
}

/* Handshake and subscribe, from the stored replay ID (or -1 and a pull). */
static void
stream_open(CdcStream *s, SyncConnection *conn, int64 stored)
{
	int64		replay = stored >= 0 ? stored : -1;

	stream_reset(s);
	handshake(s, conn);
	if (!subscribe(s, conn, replay))
	{
		ereport(LOG,
				(errmsg("sync: mirror %d: Salesforce no longer has change events after replay ID %lld (older than its retention); "
						"subscribing to new events and pulling what changed meanwhile",
						s->mirror, (long long) replay)));
		stream_reset(s);
		handshake(s, conn);
		replay = -1;
		if (!subscribe(s, conn, -1))
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("connection \"%s\": Salesforce refused the subscription to %s with replay ID -1",
							conn->name, s->channel)));
	}
	if (replay == -1)
	{
		/* from now on: the window before it is the pull's */
		xact_begin(true);
		request_pull_now(s->mirror);
		xact_end(true);
		pull_requested = true;
	}
	s->healthy = true;
	s->failures = 0;
	ereport(DEBUG1,
			(errmsg("sync: mirror %d: subscribed to %s from replay ID %lld", s->mirror, s->channel,
					(long long) replay)));
}

/*
 * The realtime mirrors (past their backfill), their streams (new ones made,
 * gone ones freed) and stored replay IDs; the safety net's schedule moved
 * for the healthy ones.  Returns whether that moved any mirror's next pull.
 */
static bool
load_streams(int *np, int64 **storedp, CdcStream ***openp, MemoryContext work)
{
	int			n,
				i;
	int64	   *stored;
	bool	   *net;
	CdcStream **open;
	ListCell   *lc;
	bool		extended = false;

	/* the realtime mirrors (past their backfill), and their stored replay IDs */
	xact_begin(true);
	spi_exec("SELECT m.id, m.connection, m.remote_object, "
			 "  (s.cursor OPERATOR(pg_catalog.->>) 'cdc_replay')::pg_catalog.int8, "
	/* whether the safety net below would move its next pull */
			 "  (s.next_pull_at OPERATOR(pg_catalog.>) pg_catalog.now()) "
			 "  AND (s.next_pull_at OPERATOR(pg_catalog.<) (s.last_pull_at OPERATOR(pg_catalog.+) '" CDC_SAFETY_NET "'::pg_catalog.interval)) "
			 "FROM " DUE_CDC_STREAM_SQL " AND " PAUSE_MIRROR_ACTIVE_SQL " "
			 "ORDER BY m.id", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	n = (int) SPI_processed;
	MemoryContextSwitchTo(work);
	foreach(lc, streams)
		((CdcStream *) lfirst(lc))->seen = false;
	stored = palloc(sizeof(int64) * Max(1, n));
	open = palloc(sizeof(CdcStream *) * Max(1, n));
	net = palloc0(sizeof(bool) * Max(1, n));
	for (i = 0; i < n; i++)
	{
		CdcStream  *s = stream_for(atoi(getv(i, 1)));
		char	   *object = getv(i, 3);
		char	   *replay = getv(i, 4);

		if (s->object == NULL || strcmp(s->object, object) != 0 || strcmp(s->connection, getv(i, 2)) != 0)
		{
			stream_reset(s);
			s->abandoned = NULL;
			list_free_deep(s->cookies);
			s->cookies = NIL;
			s->object = MemoryContextStrdup(stream_cxt, object);
			s->connection = MemoryContextStrdup(stream_cxt, getv(i, 2));
			s->channel = NULL;
		}
		s->seen = true;
		stored[i] = replay ? strtoi64(replay, NULL, 10) : -1;
		net[i] = getv(i, 5) != NULL && strcmp(getv(i, 5), "t") == 0;
		open[i] = s;
	}
	{
		List	   *keep = NIL;
		MemoryContext old = MemoryContextSwitchTo(stream_cxt);

		foreach(lc, streams)
		{
			CdcStream  *s = (CdcStream *) lfirst(lc);

			if (s->seen)
				keep = lappend(keep, s);
			else
			{
				poll_drop(s);
				list_free_deep(s->cookies);
				pfree(s);
			}
		}
		list_free(streams);
		streams = keep;
		MemoryContextSwitchTo(old);
	}

	/*
	 * The safety net: while a stream is healthy its pull runs every ten
	 * minutes at most often; a pull due now (asked for) stays due.  One
	 * statement for the healthy streams whose next pull is sooner (after a
	 * pull), none in a round where there are none.
	 */
	{
		Datum	   *ids = palloc(sizeof(Datum) * Max(1, n));
		int			nhealthy = 0;

		for (i = 0; i < n; i++)
			if (open[i]->healthy && net[i])
				ids[nhealthy++] = Int32GetDatum(open[i]->mirror);
		if (nhealthy > 0)
		{
			Oid			t[1] = {INT4ARRAYOID};
			Datum		a[1] = {PointerGetDatum(construct_array(ids, nhealthy, INT4OID, sizeof(int32),
																true, TYPALIGN_INT))};

			spi_exec("UPDATE sync.mirror_state SET next_pull_at = last_pull_at OPERATOR(pg_catalog.+) "
					 "  '" CDC_SAFETY_NET "'::pg_catalog.interval "
					 "WHERE mirror OPERATOR(pg_catalog.=) ANY ($1) AND (next_pull_at OPERATOR(pg_catalog.>) pg_catalog.now()) "
					 "  AND (next_pull_at OPERATOR(pg_catalog.<) (last_pull_at OPERATOR(pg_catalog.+) '" CDC_SAFETY_NET "'::pg_catalog.interval))",
					 1, t, a, NULL, SPI_OK_UPDATE);
			extended = SPI_processed > 0;
		}
	}
	xact_end(true);
	MemoryContextSwitchTo(work);
	*np = n;
	*storedp = stored;
	*openp = open;
	return extended;
}

/* The answer to a stream's long poll: its events applied, its advice followed. */
static void
connect_done(CdcStream *s, SyncConnection *conn, HttpRequest *req, MemoryContext work)
{
	keep_cookies(s, req);
	if (req->outcome == HTTP_PENDING)
		return;				/* never sent: the client connects again next round */
	PG_TRY();
	{
		SJson	   *arr = provider_response_json(req);
		SJson	   *reply;
		const char *err;
		const char *reconnect;

		if (req->outcome == HTTP_DONE && req->status == 401)
		{
			conn_invalidate_token(conn);
			stream_reset(s);
		}
		else
		{
			if (req->outcome != HTTP_DONE || req->status != 200)
				conn_error_from_response(conn, psprintf("waiting for change events of %s", s->object),
										 req, provider_body_excerpt(req, 300));
			if (sjson_type(arr) != SJSON_ARRAY)
				provider_bad_response(conn, "Salesforce", psprintf("waiting for change events of %s", s->object),
									  req, "not a JSON array of Bayeux messages");
			/* events first: they are applied even if the connect reply says re-handshake */
			apply_events(s, conn, req, arr, work);
			MemoryContextSwitchTo(work);
			reply = meta_reply(arr, "/meta/connect");
			err = sjson_get_string(reply, "error");
			reconnect = sjson_get_string(sjson_get(reply, "advice"), "reconnect");
			if (reply != NULL && !sjson_bool(sjson_get(reply, "successful"), false))
			{
				if (err && strncmp(err, "400::", 5) == 0 && strstr(err, "replayId"))
					stream_reset(s);	/* resubscribes; subscribe tells */
				else if ((reconnect && strcmp(reconnect, "handshake") == 0) ||
						 (err && strstr(err, "Unknown client")))
					stream_reset(s);	/* expired client: the stored replay ID resumes */
				else
					ereport(ERROR,
							(errcode(ERRCODE_CONNECTION_FAILURE),
							 errmsg("connection \"%s\": Salesforce ended the change event stream of %s",
									conn->name, s->object),
							 errdetail("Salesforce said: %s", err ? err : "(no error given)")));
			}
			else if (reconnect && strcmp(reconnect, "none") == 0)
				stream_reset(s);
			else
			{
				int64		interval = sjson_int(sjson_get(sjson_get(reply, "advice"), "interval"), 0);

				s->healthy = true;
				s->failures = 0;
				if (interval > 0)
					s->retry_at = GetCurrentTimestamp() + Min(interval, 60000) * 1000;
			}
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(work);
		stream_failed(s, work);
		MemoryContextSwitchTo(work);
	}
	PG_END_TRY();
}

/*
 * Handshake and subscribe the streams that need it (and are due), their
 * connections loaded once per connection; a stream that fails or is not
 * due leaves open[] (NULL), its retry time in *soonest.  Returns the
 * streams' connections, by index.
 */
static SyncConnection **
open_streams(int n, CdcStream **open, int64 *stored, TimestampTz *soonest, MemoryContext work)
{
	SyncConnection **conns = palloc0(sizeof(SyncConnection *) * n);
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	for (i = 0; i < n; i++)
	{
		CdcStream  *s = open[i];

		if (s->retry_at > now)
		{
			*soonest = *soonest == 0 ? s->retry_at : Min(*soonest, s->retry_at);
			open[i] = NULL;
			continue;
		}
		PG_TRY();
		{
			int			j;

			/* once per connection in a round, not once per stream */
			for (j = 0; j < i; j++)
				if (conns[j] != NULL && strcmp(conns[j]->name, s->connection) == 0)
					break;
			if (j < i)
				conns[i] = conns[j];
			else
			{
				xact_begin(true);
				conns[i] = conn_get(s->connection);
				xact_end(true);
			}
			MemoryContextSwitchTo(work);
			if (s->channel == NULL)
				s->channel = MemoryContextStrdup(stream_cxt, channel_for(s->object));
			if (s->client_id == NULL)
				stream_open(s, conns[i], stored[i]);
			MemoryContextSwitchTo(work);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(work);
			stream_failed(s, work);
			MemoryContextSwitchTo(work);
			*soonest = *soonest == 0 ? s->retry_at : Min(*soonest, s->retry_at);
			open[i] = NULL;
		}
		PG_END_TRY();
	}
	return conns;
}

/* Milliseconds from now until t, at least 1. */
static long
ms_until(TimestampTz t)
{
	long		secs;
	int			usecs;

	TimestampDifference(GetCurrentTimestamp(), t, &secs, &usecs);
	return Max(1, secs * 1000 + usecs / 1000);
}

/* Start the stream's /meta/connect, as a background request (its memory its own). */
static void
poll_start(CdcStream *s, SyncConnection *conn, MemoryContext work)
{
	MemoryContext cxt = AllocSetContextCreate(stream_cxt, "sync change stream connect",
											  ALLOCSET_SMALL_SIZES);

	PG_TRY();
	{
		SJson	   *arr = sjson_new_array();
		SJson	   *msg = new_message(s, arr, "/meta/connect");

		sjson_add_string(msg, "connectionType", "long-polling");
		MemoryContextSwitchTo(cxt);
		s->poll_req = bayeux_request(s, conn, arr, CDC_CONNECT_TIMEOUT_MS);
		s->poll = http_background_start(s->poll_req);
		s->poll_cxt = cxt;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(work);
		s->poll = NULL;
		s->poll_req = NULL;
		MemoryContextDelete(cxt);
		stream_failed(s, work);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(work);
}

/* The stream's connect answered: its events applied, its memory freed. */
static void
poll_finish(CdcStream *s, SyncConnection *conn, MemoryContext work)
{
	HttpAsync  *poll = s->poll;
	MemoryContext cxt = s->poll_cxt;
	HttpRequest *req = s->poll_req;

	s->poll = NULL;
	s->poll_req = NULL;
	s->poll_cxt = NULL;
	http_background_release(poll);
	PG_TRY();
	{
		connect_done(s, conn, req, work);	/* catches its own errors */
	}
	PG_FINALLY();
	{
		MemoryContextDelete(cxt);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(work);
}

/*
 * The streams' part of a round: the connects that answered are applied
 * (due work or not: a stream with events is never starved by pushes), a
 * stream without a connect in flight opens and connects, and then, when
 * nothing else is due for next_ms (-1: nothing scheduled), the worker
 * waits here on the connects and its latch.  Returns how long the worker
 * may sleep without watching the streams: 0 while any connect is in
 * flight (the next round comes back here to wait), else next_ms or a
 * failed stream's retry time.
 */
long
cdc_stream_round(long next_ms, bool any_realtime)
{
	MemoryContext work = CurrentMemoryContext;
	int			n,
				i,
				inflight = 0;
	int64	   *stored;
	CdcStream **open;
	SyncConnection **conns;
	TimestampTz soonest = 0;
	uint64		wakes;
	bool		answered;
	long		wait_ms;

	/* answers read meanwhile (by the round's own requests), or readable now */
	answered = streams != NIL && http_background_wait(0, NULL, NULL);
	/* other work first (the connects stay in flight), unless answers wait */
	if (next_ms == 0 && !answered)
		return 0;
	/* no realtime mirror (the round's query says), none to close: no query */
	if (!any_realtime && streams == NIL)
		return next_ms;
	if (stream_cxt == NULL)
		stream_cxt = AllocSetContextCreate(TopMemoryContext, "sync change streams", ALLOCSET_SMALL_SIZES);

	wakes = sync_worker_round_wakes();
	if (load_streams(&n, &stored, &open, work))
		return 0;				/* the round's schedule changed: compute it again */
	if (n == 0)
		return next_ms;

	/* open what is closed (and due) */
	conns = open_streams(n, open, stored, &soonest, work);

	for (;;)
	{
		/* the answers: events applied, then the stream connects again */
		for (i = 0; i < n; i++)
			if (open[i] != NULL && open[i]->poll != NULL && http_background_done(open[i]->poll))
				poll_finish(open[i], conns[i], work);
		inflight = 0;
		for (i = 0; i < n; i++)
		{
			CdcStream  *s = open[i];

			if (s == NULL || s->client_id == NULL)
				continue;		/* failed, or to open again next round */
			if (s->poll == NULL && s->retry_at > GetCurrentTimestamp())
			{
				/* the server's advice: connect again only after its interval */
				soonest = soonest == 0 ? s->retry_at : Min(soonest, s->retry_at);
				continue;
			}
			if (s->poll == NULL)
				poll_start(s, conns[i], work);
			if (s->poll != NULL)
				inflight++;
		}

		/* a pull due at once (a first subscription, an overflow): the round first */
		if (pull_requested || next_ms == 0 || inflight == 0)
			break;

		/*
		 * Nothing else due: wait on the connects until one answers, the
		 * next due work, a failed stream's retry, or a wake-up (a commit,
		 * SIGHUP).  A wake-up is counted before the latch is set and
		 * compared with the count at the round's start: one that came
		 * during the round ends the wait at once.
		 */
		wait_ms = sync_worker_sleep_ms(next_ms);	/* as the worker would sleep */
		if (soonest != 0)
			wait_ms = Min(wait_ms, ms_until(soonest));
		if (stop_waiting(&wakes))
			break;
		pgstat_report_activity(STATE_IDLE, "sync: waiting for change events");
		if (!http_background_wait(wait_ms, stop_waiting, &wakes))
			break;				/* woken, or the time is up */
		next_ms = 0;			/* answered: apply it, then the round again */
	}
	pull_requested = false;
	if (inflight > 0)
		return 0;
	if (soonest != 0)
		return next_ms < 0 ? ms_until(soonest) : Min(next_ms, ms_until(soonest));
	return next_ms;
}

/* ---------------------------------------------------------------------
 * sync.mirror(): the option
 * --------------------------------------------------------------------- */

void
sf_cdc_check_mirror(SyncConnection *conn, SyncMirror *m)
{
	SJson	   *rt = sjson_get(m->options, "realtime");
	CdcStream	probe;

	if (rt == NULL)
		return;
	if (sjson_type(rt) != SJSON_BOOL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for mirror option \"realtime\": must be true or false")));
	if (!sjson_bool(rt, false))
		return;
	if (m->direction == 'p')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mirror option \"realtime\" needs a mirror that pulls"),
				 errdetail("The mirror of %s only pushes; change events would have nowhere to go.", m->remote_object)));

	/* ask the org now: a handshake and a subscription (no API calls) */
	memset(&probe, 0, sizeof(probe));
	probe.mirror = m->id;
	probe.object = m->remote_object;
	probe.channel = channel_for(m->remote_object);
	handshake(&probe, conn);
	(void) subscribe(&probe, conn, -1);
	{
		SJson	   *arr = sjson_new_array();

		/* whatever the answer: the client expires by itself anyway */
		(void) new_message(&probe, arr, "/meta/disconnect");
		http_run_one(bayeux_request(&probe, conn, arr, 0));
	}
}
