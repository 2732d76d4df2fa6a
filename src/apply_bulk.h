/*
 * apply_bulk.h — the bulk paths of a page's apply: its journal rows by COPY
 * and its values hashes (apply_bulk.c), its records by a plain INSERT
 * (deparse.c).
 */
#ifndef SYNC_APPLY_BULK_H
#define SYNC_APPLY_BULK_H

#include "common/cryptohash.h"
#include "lib/stringinfo.h"

/*
 * Inbound journal rows of `mirror` (op, remote ID, values hash, result,
 * detail; n of each) written by COPY.  False: not done (the current user
 * may not insert into all of sync.journal, row-level security applies, or
 * the transaction is read-only); the caller inserts them by SQL.
 */
extern bool apply_journal_copy(int mirror, int n, char **op, char **rid, char **hash,
							   char **result, char **detail);

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
