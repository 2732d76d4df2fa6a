/*
 * netsuite.h — what the NetSuite provider's files share (netsuite.c: options,
 * URLs, requests, errors, the provider table; netsuite_auth.c: M2M and
 * token-based authentication; netsuite_pull.c: describe, SuiteQL backfill
 * and increments, deletes, fetch; netsuite_push.c: record writes).
 * Nothing outside these files includes it.
 */
#ifndef SYNC_NETSUITE_H
#define SYNC_NETSUITE_H

#include "conn.h"
#include "provider.h"

#define NS_DEFAULT_CONCURRENCY_LIMIT 5	/* a standard account's limit */

/* Per-connection state, kept with the connection cache entry. */
typedef struct NsState
{
	char	   *realm;			/* account ID as TBA's realm: 1234567_SB1 */
	int			concurrency_limit;	/* the account's (governance), if learnt */
	int			throttled;		/* 429 episodes in a row (backoff exponent) */
	TimestampTz throttled_at;	/* when the last episode began */
	int			answered;		/* requests answered since the last 429 */

	/*
	 * SuiteQL shows datetimes in the user's time zone; the record API in
	 * UTC.  Seconds to add to a SuiteQL datetime to get UTC, once
	 * calibrated (netsuite_pull.c).
	 */
	bool		tz_known;
	int			tz_offset_s;
	TimestampTz tz_at;			/* when calibrated */
	bool		zone_warned;	/* said that option time_zone and SYSDATE disagree */
} NsState;

/* netsuite.c */
extern NsState *ns_state(SyncConnection *conn);
extern char *ns_url(SyncConnection *conn, const char *fmt,...) pg_attribute_printf(2, 3);
extern char *ns_token_url(SyncConnection *conn);
extern HttpRequest *ns_request(SyncConnection *conn, const char *method, const char *url,
							   const char *body, const char *content_type);
extern HttpRequest *ns_send(SyncConnection *conn, const char *method, const char *url,
							SJson *body);
extern char *ns_error_text(const HttpRequest *req, char **code, char **path);
extern void ns_fail(SyncConnection *conn, const char *what, const HttpRequest *req) pg_attribute_noreturn();
extern bool ns_valid_remote_id(const char *id);
extern int	ns_concurrency(SyncConnection *conn);
extern void ns_note_success(SyncConnection *conn);

/* netsuite_auth.c */
extern void ns_check_auth_options(SJson *auth);
extern bool ns_is_secret(const char *path);
extern void ns_authenticate(SyncConnection *conn);
extern void ns_sign(SyncConnection *conn, HttpRequest *req);

/* netsuite_pull.c */
extern List *ns_describe(SyncConnection *conn, const char *object);
extern void ns_check_mirror(SyncConnection *conn, SyncMirror *m);
extern void ns_pull_page(SyncConnection *conn, SyncMirror *m, SJson *cursor, SyncPage *page);
extern void ns_fetch(SyncConnection *conn, SyncMirror *m, char **ids, int n, SyncPage *page);

/* netsuite_push.c */
extern void ns_check_push_options(SyncConnection *conn, SyncMirror *m);
extern int	ns_batch_max(SyncConnection *conn, SyncMirror *m, char op);
extern void ns_push(SyncConnection *conn, SyncMirror *m, SyncPushItem *items, int n);

#endif							/* SYNC_NETSUITE_H */
