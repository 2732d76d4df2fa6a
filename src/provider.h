/*
 * provider.h — the interface between the engine and a remote API.
 *
 * The engine (outbox, apply, scheduling, HTTP, rate limiting, retries,
 * journaling) knows no provider; Salesforce, HubSpot and NetSuite each fill
 * in a SyncProvider.  docs/architecture.md shows how each API maps onto it.
 *
 * Values cross the interface as text in PostgreSQL's input syntax for the
 * field's local type (the provider converts from and to the remote's wire
 * format), so the engine can bind them as query parameters with a cast.
 */
#ifndef SYNC_PROVIDER_H
#define SYNC_PROVIDER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#include "http.h"
#include "sjson.h"

/* One remote field, as described by the remote's schema. */
typedef enum SyncFieldRole
{
	FIELD_DATA = 0,
	FIELD_ID,					/* the record's remote ID: the remote-id column */
	FIELD_STAMP					/* modification stamp: the stamp column */
} SyncFieldRole;

typedef struct SyncField
{
	char	   *remote_name;
	char	   *label;
	char	   *remote_type;	/* the remote's own type name */
	char	   *local_type;		/* PostgreSQL type; NULL if not mappable */
	SyncFieldRole role;
	bool		createable;
	bool		updateable;
	bool		nillable;
	bool		unique;
	bool		external_id;	/* usable as an idempotency key */
	char	   *reference_to;	/* remote object this field references */
	int			length;			/* max length for strings, 0 if none */
} SyncField;

/*
 * A token bucket, refilled continuously.  A connection has one for its
 * requests; a provider may keep more for endpoints the remote limits
 * separately (HubSpot's search) and send through them with
 * conn_send_limited().
 */
typedef struct SyncRateLimit
{
	double		rate;			/* requests per second now; 0 = unlimited */
	double		rate_max;		/* as configured; the rate recovers to it */
	double		capacity;		/* burst */
	double		tokens;
	TimestampTz at;
	TimestampTz blocked_until;	/* after a 429: nothing before this */
	struct SharedBudget *shared;	/* the running state is this (budget.h);
									 * NULL: this process's own */
} SyncRateLimit;

/* A connection at run time: options merged with secrets, auth state. */
typedef struct SyncConnection
{
	char	   *name;
	const struct SyncProvider *provider;
	MemoryContext cxt;			/* lives as long as this cache entry */
	SJson	   *options;		/* options + secrets (never logged) */
	char	   *ca_file;
	int			max_in_flight;

	/* authentication state, kept by the provider */
	char	   *access_token;
	char	   *api_base;		/* where API calls go (e.g. instance_url) */
	TimestampTz token_expires;

	/* rate limiting: the connection's token bucket */
	SyncRateLimit limit;
	char	   *api_usage;		/* last usage the remote reported */

	void	   *provider_state;
} SyncConnection;

/* What the engine knows about a mirror when it calls a provider. */
typedef struct SyncMirror
{
	int			id;
	char	   *remote_object;
	Oid			relid;
	char	   *qualified_table;	/* quoted schema.table */
	char	   *key_column;
	char	   *key_type;		/* SQL type of the key column, for index-friendly casts */
	Oid			owner;			/* the table's owner: statements on it run as this role */
	char	   *remote_id_column;
	char	   *stamp_column;
	char		direction;		/* 'b', 'l' (pull), 'p' (push) */
	SJson	   *options;
	int			nfields;
	SyncField  *fields;			/* mapped fields (data, id, stamp) */
	char	  **columns;		/* local column of each field */
	char	  **authority;		/* "both" | "local" | "remote" per field */
} SyncMirror;

/* One remote record in a pulled page; values[i] is for mirror->fields[i]. */
typedef struct SyncRecord
{
	char	   *remote_id;
	char	   *stamp;			/* timestamptz text */
	bool		deleted;
	char	  **values;			/* NULL entries are SQL NULL */
	char	   *invalid;		/* set by the provider: why the record cannot be applied
								 * as sent (a value the remote sent broken); the engine
								 * sets it aside like a record the table refuses */
} SyncRecord;

typedef struct SyncPage
{
	int			nrecords;
	SyncRecord *records;
	SJson	   *cursor;			/* cursor after this page (provider's own) */
	bool		more;			/* another page is ready right now */
	bool		backfill_done;	/* this page completed the backfill */
	int64		total;			/* records in the backfill, if known; -1 */
	int			ndeleted_ids;	/* remote IDs known deleted (delete feeds) */
	char	  **deleted_ids;
	bool		reconcile;		/* deleted_ids is a full live-ID list: delete the rest */

	/*
	 * Remote merges seen in this page: the record merged_ids[i] (the loser)
	 * was merged into merged_into[i] (the winner).  A loser may also come
	 * as a deleted record or a deleted ID; the engine applies the merges
	 * first (apply.c, merge.c), so it is not taken for a plain delete.
	 * Providers without a merge feed leave nmerged 0.
	 */
	int			nmerged;
	char	  **merged_ids;
	char	  **merged_into;
} SyncPage;

/* Result of one outbound write. */
typedef enum SyncPushResult
{
	PUSH_PENDING = 0,
	PUSH_OK,
	PUSH_REJECTED,				/* the remote refused this record: park it */
	PUSH_RETRY					/* transient: back off and try again */
} SyncPushResult;

typedef struct SyncPushItem
{
	int64		outbox_id;
	char		op;				/* 'I', 'U', 'D' */
	char	   *local_key;
	char	   *remote_id;		/* known for U and D */
	char	   *idempotency_key;	/* creates, when configured */
	bool	   *send;			/* per field: include it */
	char	  **values;			/* per field, text (NULL = SQL NULL) */
	bool	   *value_null;

	/* filled by the provider */
	SyncPushResult result;
	char	   *new_remote_id;
	char	   *new_stamp;
	char	   *error_code;
	char	   *error_message;
	char	   *error_fields;	/* comma-separated, as the remote named them */
	int			retry_after_s;	/* from the remote, for PUSH_RETRY */
} SyncPushItem;

typedef struct SyncProvider
{
	const char *name;

	/* Validate options (ereport ERROR naming the key on bad input). */
	void		(*check_options) (SJson *options);

	/* Is the option at this dotted path (e.g. "auth.client_secret") a secret? */
	bool		(*is_secret) (const char *path);

	/* Obtain credentials; ERROR with the remote's words on failure. */
	void		(*authenticate) (SyncConnection *conn);

	/* Add credentials to a request (bearer header, OAuth 1.0a signature). */
	void		(*sign) (SyncConnection *conn, HttpRequest *req);

	/* Facts for sync.test_connection (after authenticate). */
	void		(*test) (SyncConnection *conn, SJson *facts);

	/* The remote object's fields (List of SyncField *); ERROR if unknown. */
	List	   *(*describe) (SyncConnection *conn, const char *object);

	/* Check a mirror's options against the object's schema (filters, keys). */
	void		(*check_mirror) (SyncConnection *conn, SyncMirror *mirror);

	/*
	 * Fetch the page after `cursor` (NULL: start the backfill).  Must stream:
	 * one page in memory at a time.
	 */
	void		(*pull_page) (SyncConnection *conn, SyncMirror *mirror,
							  SJson *cursor, SyncPage *page);

	/* Largest batch per request for this operation. */
	int			(*batch_max) (SyncConnection *conn, SyncMirror *mirror, char op);

	/*
	 * Send the items (all of one op, at most batch_max each request; the
	 * provider may split them further) and fill each item's result.
	 */
	void		(*push) (SyncConnection *conn, SyncMirror *mirror,
						 SyncPushItem *items, int nitems);

	/*
	 * Is this a well-formed record ID of this remote (Salesforce: 15 or 18
	 * alphanumerics; HubSpot and NetSuite: digits)?  IDs come back from the
	 * user's table into URLs and query strings: the engine parks an entry
	 * whose remote ID fails this before the provider sees it, and providers
	 * check again where they build a URL.
	 */
	bool		(*valid_remote_id) (const char *remote_id);

	/*
	 * Optional: fetch the current versions of the given records (IDs already
	 * valid) into page->records, streaming like pull_page; IDs the remote no
	 * longer has go to page->deleted_ids.  Used to re-apply inbound records
	 * that the local table rejected, after the user fixed the table
	 * (sync.retry).  NULL: such records wait for their next remote change.
	 */
	void		(*fetch) (SyncConnection *conn, SyncMirror *mirror,
						  char **remote_ids, int n, SyncPage *page);

	/*
	 * Optional: after a 429 without Retry-After, how long (ms) to hold this
	 * connection's requests (e.g. the remote's rate-limit interval).  NULL
	 * or 0: one second.
	 */
	long		(*throttle_ms) (SyncConnection *conn, const HttpRequest *req);
} SyncProvider;

/* Helpers shared by the providers (provider.c) */
extern void provider_bad_option(const char *provider, const char *key, const char *why) pg_attribute_noreturn();
extern bool provider_url_ok(const char *url);
extern void provider_appendf_va(StringInfo buf, const char *fmt, va_list ap) pg_attribute_printf(2, 0);
extern SJson *provider_response_json(const HttpRequest *req);
extern void provider_sign_bearer(SyncConnection *conn, HttpRequest *req);
extern char *provider_list_array(const char *v);
extern char *provider_broken_value(const char *field);
extern char *provider_body_excerpt(const HttpRequest *req, int max);
extern bool provider_valid_stamp(const char *s);
extern char *provider_quote_value(const char *v);
extern void provider_bad_response(SyncConnection *conn, const char *remote, const char *what,
								  const HttpRequest *req, const char *why) pg_attribute_noreturn();

/* Registry */
extern const SyncProvider *provider_lookup(const char *name, bool missing_ok);
extern const char *provider_names(void);

extern const SyncProvider salesforce_provider;
extern const SyncProvider hubspot_provider;
extern const SyncProvider netsuite_provider;

#endif							/* SYNC_PROVIDER_H */
