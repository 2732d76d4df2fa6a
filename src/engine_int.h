/*
 * engine_int.h — what the parts of the engine share, and nothing else
 * includes: catalog.c (SPI, transactions, the run-as-owner scope,
 * subtransactions, mirrors and their state), deparse.c (the SQL run on
 * users' tables), push.c (outbox to remote), apply.c (remote to table),
 * deletes.c (the delete policies) and engine.c (the worker's round,
 * settings, sync.push / sync.pull).
 */
#ifndef SYNC_ENGINE_INT_H
#define SYNC_ENGINE_INT_H

#include "postgres.h"

#include "executor/spi.h"
#include "utils/elog.h"
#include "utils/timestamp.h"

#include "conn.h"
#include "provider.h"

/* settings (engine.c) */
extern int	sync_batch_size;
extern int	sync_lease_seconds;
extern int	sync_journal_retention_days;
extern int	sync_lock_timeout_ms;
extern int	sync_pull_interval_ms;

/* ---------------------------------------------------------------------
 * mirrors, with their options parsed once (catalog.c)
 * --------------------------------------------------------------------- */

/* option "conflict": who wins when a row has pending local changes */
typedef enum ConflictPolicy
{
	CONFLICT_LOCAL_WINS,		/* "local_wins" (the default) */
	CONFLICT_REMOTE_WINS		/* "remote_wins" */
} ConflictPolicy;

/* option "delete": what a remote delete does to the row */
typedef enum DeletePolicy
{
	DELETE_APPLY,				/* "delete" (the default) */
	DELETE_KEEP,				/* "keep" */
	DELETE_FLAG					/* "flag": remote_deleted_at is set (deletes.c) */
} DeletePolicy;

/* option "local_delete": what a local DELETE does remotely */
typedef enum LocalDeletePolicy
{
	LOCAL_DELETE_PROPAGATE,		/* "propagate" (the default) */
	LOCAL_DELETE_IGNORE			/* "ignore": the trigger captures no deletes */
} LocalDeletePolicy;

/*
 * A mirror as the engine loads it: the providers' SyncMirror first (they
 * are handed &base and read m->options for their own keys), then the
 * engine's options in typed fields.  Every SyncMirror the engine handles
 * comes from mirror_load, so engine_mirror() may recover the whole.
 */
typedef struct EngineMirror
{
	SyncMirror	base;			/* must be first */
	ConflictPolicy conflict;
	DeletePolicy on_delete;
	LocalDeletePolicy local_delete;
	const char *idempotency_field;	/* remote field of the key, or NULL */
	Interval   *pull_interval;	/* NULL: sync.pull_interval */
} EngineMirror;

static inline EngineMirror *
engine_mirror(SyncMirror *m)
{
	return (EngineMirror *) m;
}

extern SyncMirror *mirror_load(int id, MemoryContext work, char **connection);
extern int	mirror_id_for_table(Oid relid);
extern SJson *load_cursor(int mirror_id, MemoryContext work);
extern void note_mirror_error(int mirror, const char *message, bool own);
extern void note_push_done(int mirror);
extern void note_pull_done(SyncMirror *m);
extern void advance_cursor(SyncMirror *m, SyncPage *page);
extern void save_usage(SyncConnection *conn);

/* ---------------------------------------------------------------------
 * transactions, SPI, owner scopes, subtransactions (catalog.c)
 * --------------------------------------------------------------------- */

extern void xact_begin(bool own);
extern void xact_end(bool own);
extern int64 xact_fold(int32 mirror, int64 limit);
extern void spi_exec(const char *sql, int nargs, Oid *types, Datum *values,
					 const char *nulls, int expect);
extern char *getv(int row, int col);
extern Datum text_array(char **items, int n);
extern double thread_cpu_ms(void);
extern char *values_hash(char **values, int n);

typedef struct OwnerScope
{
	Oid			save_user;
	int			save_sec;
	int			save_nestlevel;
} OwnerScope;

extern void owner_begin(Oid owner, OwnerScope *s);
extern void owner_end(OwnerScope *s);
extern bool in_subxact(void (*fn) (void *), void *arg, MemoryContext errcxt, ErrorData **err);
extern bool error_is_transient(const ErrorData *e);
extern char *error_text(const ErrorData *e);

/* a key and the item it belongs to, for sorting and bsearch */
typedef struct KeyIndex
{
	const char *key;
	int			item;
} KeyIndex;

extern int	key_index_cmp(const void *a, const void *b);
extern int	key_index_item_cmp(const void *a, const void *b);

/* ---------------------------------------------------------------------
 * the SQL run on users' tables (deparse.c)
 * --------------------------------------------------------------------- */

extern char *deparse_ref_lookup(const char *parent_table, const char *key_column,
								const char *remote_id_column, const char *key_type);
extern char *deparse_claim_values(SyncMirror *m);
extern char *deparse_wb_conflicts(SyncMirror *m);
extern char *deparse_wb_delete_echoes(SyncMirror *m);
extern char *deparse_wb_ids(SyncMirror *m, bool kept);
extern char *deparse_wb_reference(SyncMirror *m, int field);
extern char *deparse_lock(SyncMirror *m, const char *lock);
extern char *deparse_reconcile(SyncMirror *m);
extern char *deparse_adopt(SyncMirror *m);
extern char *deparse_apply(SyncMirror *m, int *nparams);
extern char *deparse_apply_bulk(SyncMirror *m, int **fieldmap, int *nparams);
extern char *deparse_delete(SyncMirror *m);

/* ---------------------------------------------------------------------
 * push (push.c) and pull (apply.c)
 * --------------------------------------------------------------------- */

extern int64 push_mirror(int mirror_id, bool own, MemoryContext work,
						 int *nok, int *nrejected, int *nretry);
extern void push_as_helper(void);
extern int64 pull_mirror(int mirror_id, bool own, MemoryContext work,
						 int64 *deleted, int64 *failed);
extern void apply_page(SyncMirror *m, SyncPage *page, bool advance, MemoryContext work,
					   int64 *applied, int64 *deleted, int64 *failed);

/* ---------------------------------------------------------------------
 * delete policies (deletes.c)
 * --------------------------------------------------------------------- */

#define SYNC_REMOTE_DELETED_COLUMN "remote_deleted_at"

extern char *deletes_flag_sql(SyncMirror *m);
extern void deletes_restore(SyncMirror *m, char **rids, int n,
							char ***restored, int *nrestored);
extern void deletes_skip_flagged(SyncMirror *m, SyncPushItem *items, int nitems,
								 MemoryContext work);
extern int	deletes_drop_live(char **del, int ndel, SyncRecord *records, int nrecords);
extern void deletes_verify_feed(SyncConnection *conn, SyncMirror *m, SyncPage *page,
								bool own, MemoryContext cxt);

/* remote merges followed locally, before a page is applied (merge.c) */
extern void merge_apply(SyncMirror *m, SyncPage *page, MemoryContext work);
extern void apply_records(SyncMirror *m, SyncPage *page, MemoryContext work,
						  int64 *applied, int64 *deleted, int64 *failed);

/* ---------------------------------------------------------------------
 * what a round has due: the conditions of the worker's parts of a round,
 * each written once, for their own queries and for the one query of an
 * idle round (engine.c's round_due).  SQL fragments; each caller adds its
 * own pause test (pause.h) with " AND ".
 * --------------------------------------------------------------------- */

/*
 * fill_round() (alter.c): the fills of added fields due now, as
 * "... FROM " DUE_FILL_SQL: rows f (sync.fill) and m (sync.mirror).
 */
#define DUE_FILL_SQL \
	"sync.fill f JOIN sync.mirror m ON m.id OPERATOR(pg_catalog.=) f.mirror " \
	"WHERE m.direction OPERATOR(pg_catalog.<>) 'push' " \
	"  AND f.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()"

/*
 * drift_round() (drift.c): a mirror's schema check, over the rows of
 * "FROM " DUE_DRIFT_FROM_SQL: m (sync.mirror), d (sync.drift_state) and s
 * (sync.mirror_state).  DUE_DRIFT_REQUESTED_SQL: a check was asked for or
 * the remote refused a field as unknown since the last one, which was ten
 * seconds ago or more (the CASE: "NULL AND f()" still calls f, so the error
 * text is only read for a mirror whose last error came after its last
 * check).  DUE_DRIFT_PERIODIC_SQL: sync.drift_check_interval, parameter $1
 * (ms; 0: never), has passed since the last check (a new mirror: since it
 * was made).  (An explicit OPERATOR() binds tighter than AND/OR and takes
 * no precedence of its own.)
 */
#define DUE_DRIFT_FROM_SQL \
	"sync.mirror m " \
	"LEFT JOIN sync.drift_state d ON d.mirror OPERATOR(pg_catalog.=) m.id " \
	"LEFT JOIN sync.mirror_state s ON s.mirror OPERATOR(pg_catalog.=) m.id"
#define DUE_DRIFT_REQUESTED_SQL \
	"((d.requested_at IS NOT NULL " \
	"  OR CASE WHEN s.last_error_at OPERATOR(pg_catalog.>) COALESCE(d.checked_at, '-infinity') " \
	"     THEN sync._unknown_field_error(NULL, s.last_error) ELSE false END) " \
	" AND (COALESCE(d.checked_at, '-infinity') OPERATOR(pg_catalog.<) " \
	"      (pg_catalog.now() OPERATOR(pg_catalog.-) '10 seconds'::pg_catalog.interval)))"
#define DUE_DRIFT_PERIODIC_SQL \
	"(($1 OPERATOR(pg_catalog.>) 0) AND ((COALESCE(d.checked_at, m.created_at) OPERATOR(pg_catalog.+) " \
	"  pg_catalog.make_interval(secs => ($1 OPERATOR(pg_catalog./) 1000.0))) OPERATOR(pg_catalog.<=) pg_catalog.now()))"

/*
 * cdc_stream_round() (salesforce_cdc.c): the mirrors that stream changes
 * (Salesforce, pulling, option "realtime", past their backfill), as
 * "... FROM " DUE_CDC_STREAM_SQL: rows m (sync.mirror), s
 * (sync.mirror_state) and c (sync.connection).
 */
#define DUE_CDC_STREAM_SQL \
	"sync.mirror m JOIN sync.mirror_state s ON s.mirror OPERATOR(pg_catalog.=) m.id " \
	"JOIN sync.connection c ON c.name OPERATOR(pg_catalog.=) m.connection " \
	"WHERE c.provider OPERATOR(pg_catalog.=) 'salesforce' AND m.direction OPERATOR(pg_catalog.<>) 'push' " \
	"  AND s.phase OPERATOR(pg_catalog.=) 'incremental' " \
	"  AND (m.options OPERATOR(pg_catalog.->) 'realtime') OPERATOR(pg_catalog.=) 'true'::pg_catalog.jsonb"

#endif							/* SYNC_ENGINE_INT_H */
