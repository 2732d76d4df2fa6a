/*
 * engine_int.h — what the parts of the engine share, and nothing else
 * includes: catalog.c (SPI, transactions, the run-as-owner scope,
 * subtransactions, mirrors and their state), deparse.c (the SQL run on
 * users' tables), push.c (outbox to remote), apply.c (remote to table) and
 * engine.c (the worker's round, settings, sync.push / sync.pull).
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
	DELETE_KEEP					/* "keep" */
} DeletePolicy;

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
extern void spi_exec(const char *sql, int nargs, Oid *types, Datum *values,
					 const char *nulls, int expect);
extern char *getv(int row, int col);
extern Datum text_array(char **items, int n);
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
extern char *deparse_wb_ids(SyncMirror *m);
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
extern int64 pull_mirror(int mirror_id, bool own, MemoryContext work,
						 int64 *deleted, int64 *failed);

/* remote merges followed locally, before a page is applied (merge.c) */
extern void merge_apply(SyncMirror *m, SyncPage *page, MemoryContext work);

#endif							/* SYNC_ENGINE_INT_H */
