/*
 * apply_bulk.h — the bulk paths of a page's apply: its journal rows by COPY
 * (a pushed batch's too)
 * and its values hashes (apply_bulk.c), its records by a plain INSERT
 * (deparse.c).
 */
#ifndef SYNC_APPLY_BULK_H
#define SYNC_APPLY_BULK_H

#include "common/cryptohash.h"
#include "lib/stringinfo.h"

/*
 * Journal rows of one mirror and direction ("in" or "out"), n of each
 * array, written by COPY.  at: one timestamptz (text) for all rows, or NULL
 * for the column's default; key and fields (remote names separated by
 * \x1f, an element NULL for SQL NULL) may be NULL arrays: the columns are
 * then left NULL.  False: not done (the current user may not insert into
 * all of sync.journal, row-level security applies, or the transaction is
 * read-only); the caller inserts them by SQL.
 */
typedef struct JournalRows
{
	int			mirror;
	const char *direction;
	int			n;
	const char *at;
	char	  **op;
	char	  **key;
	char	  **rid;
	char	  **fields;
	char	  **hash;
	char	  **result;
	char	  **detail;
} JournalRows;

extern bool journal_copy(const JournalRows *j);

/* values_hash() of many records, reusing one MD5 context (identical hashes) */
typedef struct ValuesHasher
{
	pg_cryptohash_ctx *ctx;
	StringInfoData buf;
} ValuesHasher;

extern void values_hasher_init(ValuesHasher *h);
extern char *values_hasher_hash(ValuesHasher *h, char **values, int n);
extern void values_hasher_end(ValuesHasher *h);

/* deparse.c: a page's records by a plain INSERT (deparse_apply_bulk's twin) */
struct SyncMirror;
extern char *deparse_apply_bulk_insert(struct SyncMirror *m);

#endif
