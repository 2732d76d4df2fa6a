/*
 * capture.c — the capture trigger: queue local writes to mirrored tables.
 *
 * Row-level AFTER INSERT/UPDATE/DELETE trigger, created by sync.mirror() as
 *
 *     sync.capture(mirror_id, key_column, remote_id_column, column...)
 *
 * where the columns are the mapped columns that may be pushed.  Carrying
 * them in the trigger's arguments means no lookup of sync.field; the
 * trigger is recreated whenever the mapping changes.  The rest of what a
 * row needs (attribute numbers, output functions, the outbox's relation,
 * index and columns, the proof that the mirror is this table's) is cached
 * per backend and follows invalidations: see "The per-backend cache".
 *
 * For each row it appends the operation and the set of changed columns to
 * sync.capture_log, in the same transaction: a heap insert into a table
 * without indexes, and nothing else (issue #13: coalescing in the trigger,
 * an index probe and an insert into the outbox's two indexes, cost the
 * writer more than the rest of the capture together).  An UPDATE that
 * changes no pushable column writes nothing.  Values are not copied: the
 * pusher reads them from the table, the source of truth.
 *
 * Folding (capture_fold, sync._fold()) moves the log into sync.outbox, in
 * the order the writes were made, coalescing each with the row's entry that
 * was never attempted:
 *     insert + update = insert          update + update = union of columns
 *     insert + delete = nothing         update + delete = delete
 * The worker folds at the start of each round (a commit wakes it), and
 * whatever reads a mirror's outbox folds the mirror first in its own
 * transaction: the claim of a push, an inbound apply (its conflict checks
 * see the pending local writes), resync, merges, unmirror.  One folder per
 * mirror at a time, to the end of its transaction (fold_lock): a row's
 * later write folded before an earlier one would coalesce wrongly.  The
 * log row's seq (from the outbox's id sequence) becomes the id of the
 * entry it opens, so entries keep the order of their writes.
 *
 * Rows written by an inbound apply of the same mirror are not captured
 * (sync_applying_mirror); user triggers still fire on them, and their
 * writes into other mirrors are captured.
 *
 * The outbox is writable by the extension owner only, so the trigger
 * switches to the owner's user id for its own statements, in a
 * security-restricted operation with search_path pinned to pg_catalog,
 * pg_temp: the writer's search_path must not choose the operators and
 * functions that run with the owner's rights (the SQL qualifies them as
 * well).  sync.capture() is not executable by PUBLIC, and it refuses to
 * fire on a table that is not its mirror's: otherwise a user could attach
 * it, with another mirror's id, to a table of its own and queue deletes of
 * any remote ID.
 *
 * At the fold, inserts and updates take a fast path that does not go
 * through SQL: a heap insert of a new open entry with its index entries, or an index probe
 * for the row's open entry (the way logical replication's apply finds rows)
 * and a heap update.  An executor start per captured row would cost more
 * than the user's UPDATE itself.  Most captured rows have no open entry, so
 * the new entry is usually inserted first, speculatively as INSERT ... ON
 * CONFLICT does: one descent of the outbox_row index instead of a probe and
 * an insert; the probe follows only when the row has an entry after all
 * (recent_rows below: the guesses that choose the order).  The probe
 * locks the open entry it finds (KEY SHARE), so a claimer cannot seal it
 * before this transaction commits: a change already covered by the entry
 * needs no write at all, and is still sent, because the claim that takes
 * the entry comes after the commit and reads the row then.  (The probe's
 * lock is held by the folding transaction, which commits at once.)
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/smgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "capture.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(sync_capture);
PG_FUNCTION_INFO_V1(sync_truncate_guard);
PG_FUNCTION_INFO_V1(sync_fold);

/* mirror whose inbound rows are being applied in this backend, or 0 */
int			sync_applying_mirror = 0;

/*
 * The per-backend cache
 * =====================
 *
 * Everything a captured row needs besides the row itself is looked up once
 * per backend and kept until an invalidation says it may have changed:
 *
 *   CaptureInfo, one per mirrored table (hash capture_tables, keyed by the
 *     table's OID): the trigger's mirror, its key, remote-ID and pushable
 *     columns as attribute numbers and names, the output functions of the
 *     key and remote-ID columns, and the proof that the trigger's mirror is
 *     this table's (see check_mirror_table).
 *   outbox: sync.outbox's OID, its row index and id sequence, its columns'
 *     attribute numbers, sync.capture_log's OID and columns, and the kept
 *     SPI plans of the SQL paths.
 *   the extension owner, and sync.mirror's OID and columns.
 *
 * How each learns of changes:
 *
 * - The mirrored table: a relcache callback.  ALTER TABLE (columns added,
 *   dropped, retyped, renamed), DROP TABLE, and CREATE/DROP TRIGGER all
 *   send a relcache invalidation of the table, to every backend, at commit
 *   (and to this one at its next command).  A changed mapping, a followed
 *   rename or a re-mirror recreates the trigger (sync._install_triggers),
 *   so changes to sync.field and to the mirror's options reach the cache
 *   this way too: capture reads the mapping from the trigger's arguments,
 *   never from sync.field.  The trigger's OID is compared as well.
 * - sync.outbox, its index, its sequence: the same relcache callback (DROP
 *   or ALTER EXTENSION, ALTER TABLE, REINDEX, and also the statistics that
 *   VACUUM and ANALYZE write, which merely cost a rebuild).
 * - The extension owner: a syscache callback on pg_extension.
 * - sync.mirror's rows: no callback can tell.  INSERT, UPDATE and DELETE on
 *   an ordinary table send no invalidation at all (a relcache callback on
 *   sync.mirror fires only for its DDL), and sync.mirror is not a system
 *   catalog, so no syscache covers it.  So the proof is checked once per
 *   statement, cheaply: the row version of sync.mirror that the lookup
 *   found is fetched again by its TID under the statement's snapshot; if it
 *   is still visible and still names this mirror and this table, the
 *   lookup's answer still holds.  Any update or delete of the row (unmirror,
 *   the ALTER TABLE follower, a hand edit; DROP EXTENSION, after which
 *   mirror ids start again at 1) leaves that version invisible, and the
 *   lookup runs again.
 *
 * Memory: each CaptureInfo has its own context under capture_cxt, a child
 * of CacheMemoryContext.  An invalidation only marks entries invalid: it
 * can arrive in the middle of a row's capture (at any lock acquisition),
 * and a capture trigger can be nested in another (a trigger on the outbox,
 * or on a table it writes), so an entry in use must not vanish.  The next
 * capture call drops the invalid entries from the hash and hands their
 * contexts to TopTransactionContext, which frees them when the transaction
 * ends; nothing refers to an entry across transactions (fn_extra lives for
 * one statement).  Kept SPI plans are freed (and prepared again) on the
 * next use after an invalidation of the outbox, unless one of them is
 * executing: then they are kept until the next use after that (the plan
 * cache revalidates them in the meantime).
 */
typedef struct CaptureInfo
{
	MemoryContext cxt;			/* holds this struct and its arrays */
	bool		valid;			/* false once invalidated */
	Oid			relid;			/* the mirrored table */
	Oid			tgoid;			/* the trigger it was built from */
	int32		mirror;
	AttrNumber	key_att;
	AttrNumber	remote_id_att;
	FmgrInfo	key_out;		/* output functions of the two */
	FmgrInfo	remote_id_out;
	int			ncols;			/* pushable columns, sorted by name */
	AttrNumber *atts;
	Datum	   *names;			/* as name Datums */
	bool		proved;			/* proof_tid is a proof, see above */
	ItemPointerData proof_tid;	/* sync.mirror row naming mirror and relid */
} CaptureInfo;

typedef struct CaptureEntry
{
	Oid			relid;			/* hash key */
	CaptureInfo *info;			/* NULL while being built */
} CaptureEntry;

/* fn_extra of the trigger's FmgrInfo: one statement's state */
typedef struct CaptureStmt
{
	Oid			tgoid;
	bool		checked;		/* the trust check passed in this statement */
	CaptureInfo *info;
} CaptureStmt;

/* sync.outbox: where the fast path writes */
typedef struct OutboxCache
{
	bool		valid;			/* false once invalidated */
	Oid			relid;
	Oid			idxid;			/* outbox_row (mirror, local_key, slot) */
	Oid			seqid;
	int			natts;			/* 0: attribute numbers not set yet */
	AttrNumber	a_id,
				a_mirror,
				a_key,
				a_op,
				a_cols,
				a_rid,
				a_state,
				a_slot,
				a_attempts,
				a_next,
				a_created,
				a_updated;
	/* sync.capture_log, where the trigger writes */
	Oid			logid;
	int			log_natts;		/* 0: attribute numbers not set yet */
	AttrNumber	l_seq,
				l_at,
				l_mirror,
				l_op,
				l_key,
				l_cols,
				l_rid;
	/* kept SPI plans of the SQL path (deletes, an outbox with triggers) */
	bool		plans_stale;
	int			plans_running;
	SPIPlanPtr	upsert_plan;
	SPIPlanPtr	unqueue_plan;
	SPIPlanPtr	delete_plan;
	SPIPlanPtr	log_plan;		/* the trigger's insert when the log has triggers */
	SPIPlanPtr	read_plan;		/* the fold's read of the log */
} OutboxCache;

/* sync.mirror, for the per-statement proof check */
typedef struct MirrorCatalog
{
	bool		valid;
	Oid			relid;
	AttrNumber	a_id;
	AttrNumber	a_table;
} MirrorCatalog;

static MemoryContext capture_cxt = NULL;
static HTAB *capture_tables = NULL;
static bool capture_sweep_pending = false;
static OutboxCache outbox;
static MirrorCatalog mirror_catalog;
static Oid	owner_cache = InvalidOid;

/* What run_as_owner() saved, for end_run_as_owner(). */
typedef struct OwnerState
{
	Oid			save_user;
	int			save_sec;
	int			save_nestlevel;
} OwnerState;

/*
 * Relcache invalidation: of a mirrored table, of the outbox or its index or
 * sequence, of sync.mirror; InvalidOid means all relations.  Only marks:
 * see "Memory" above.
 */
static void
capture_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid))
	{
		HASH_SEQ_STATUS seq;
		CaptureEntry *e;

		hash_seq_init(&seq, capture_tables);
		while ((e = (CaptureEntry *) hash_seq_search(&seq)) != NULL)
			if (e->info != NULL)
				e->info->valid = false;
		capture_sweep_pending = true;
	}
	else
	{
		CaptureEntry *e = (CaptureEntry *) hash_search(capture_tables, &relid, HASH_FIND, NULL);

		if (e != NULL && e->info != NULL)
		{
			e->info->valid = false;
			capture_sweep_pending = true;
		}
	}
	if (!OidIsValid(relid) || relid == outbox.relid || relid == outbox.idxid ||
		relid == outbox.seqid || relid == outbox.logid)
	{
		outbox.valid = false;
		outbox.plans_stale = true;
	}
	if (!OidIsValid(relid) || relid == mirror_catalog.relid)
		mirror_catalog.valid = false;
}

/* pg_extension changed (any row, e.g. REASSIGN OWNED): the owner again */
static void
capture_extension_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	owner_cache = InvalidOid;
}

static void
capture_cache_init(void)
{
	HASHCTL		ctl;

	if (capture_cxt != NULL)
		return;
	if (CacheMemoryContext == NULL)
		CreateCacheMemoryContext();
	capture_cxt = AllocSetContextCreate(CacheMemoryContext, "sync capture cache",
										ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(CaptureEntry);
	ctl.hcxt = capture_cxt;
	capture_tables = hash_create("sync capture tables", 16, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(capture_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(EXTENSIONOID, capture_extension_callback, (Datum) 0);
}

/* An entry leaves the cache; its memory goes when the transaction ends. */
static void
retire_info(CaptureInfo *info)
{
	MemoryContextSetParent(info->cxt, TopTransactionContext);
}

/* Drop the invalidated entries (see "Memory" above). */
static void
capture_sweep(void)
{
	HASH_SEQ_STATUS seq;
	CaptureEntry *e;

	capture_sweep_pending = false;
	hash_seq_init(&seq, capture_tables);
	while ((e = (CaptureEntry *) hash_seq_search(&seq)) != NULL)
	{
		if (e->info != NULL && e->info->valid)
			continue;
		if (e->info != NULL)
			retire_info(e->info);
		(void) hash_search(capture_tables, &e->relid, HASH_REMOVE, NULL);
	}
}

/*
 * The extension owner, looked up once per backend and again after any
 * change to pg_extension.
 */
static Oid
extension_owner(void)
{
	Oid			extoid;
	HeapTuple	tup;

	if (OidIsValid(owner_cache))
		return owner_cache;
	extoid = get_extension_oid("sync", false);
	tup = SearchSysCache1(EXTENSIONOID, ObjectIdGetDatum(extoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for extension %u", extoid);
	owner_cache = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	ReleaseSysCache(tup);
	return owner_cache;
}

/*
 * Become the extension owner, in a security-restricted operation, with
 * search_path pinned to pg_catalog, pg_temp (the model is VACUUM's switch
 * to the table owner).  An error on the way out is cleaned up by the
 * transaction's abort, which restores both.
 */
static void
run_as_owner(OwnerState *st)
{
	Oid			owner = extension_owner();

	GetUserIdAndSecContext(&st->save_user, &st->save_sec);
	SetUserIdAndSecContext(owner,
						   st->save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	st->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

static void
end_run_as_owner(OwnerState *st)
{
	AtEOXact_GUC(true, st->save_nestlevel);
	SetUserIdAndSecContext(st->save_user, st->save_sec);
}

/* "schema.table" for messages, or the OID when the table is gone */
static char *
relation_display_name(Oid relid)
{
	char	   *rel = get_rel_name(relid);
	char	   *nsp = rel ? get_namespace_name(get_rel_namespace(relid)) : NULL;

	if (rel == NULL || nsp == NULL)
		return psprintf("with OID %u", relid);
	return quote_qualified_identifier(nsp, rel);
}

static AttrNumber
catalog_attnum(TupleDesc desc, const char *table, const char *name)
{
	AttrNumber	att = SPI_fnumber(desc, name);

	if (att <= 0)
		elog(ERROR, "sync: sync.%s has no column \"%s\"; reinstall the extension", table, name);
	return att;
}

/*
 * sync.mirror, opened for the proof check; NULL when it cannot be (the
 * extension is being dropped, say): then the proof does not hold.  The
 * cached OID is checked after the lock is taken, which is when an
 * invalidation of it would have arrived.
 */
static Relation
mirror_catalog_open(void)
{
	Relation	rel;

	if (!mirror_catalog.valid)
	{
		Oid			nsp = get_namespace_oid("sync", true);

		mirror_catalog.valid = true;
		mirror_catalog.relid = OidIsValid(nsp) ? get_relname_relid("mirror", nsp) : InvalidOid;
		mirror_catalog.a_id = InvalidAttrNumber;
	}
	if (!OidIsValid(mirror_catalog.relid))
		return NULL;
	rel = try_table_open(mirror_catalog.relid, AccessShareLock);
	if (rel != NULL && !mirror_catalog.valid)
	{
		table_close(rel, AccessShareLock);
		rel = NULL;
	}
	if (rel != NULL && mirror_catalog.a_id == InvalidAttrNumber)
	{
		mirror_catalog.a_table = catalog_attnum(RelationGetDescr(rel), "mirror", "local_table");
		mirror_catalog.a_id = catalog_attnum(RelationGetDescr(rel), "mirror", "id");
	}
	return rel;
}

/*
 * Is block blk within rel (locked)?  The size this backend last saw is
 * kept by smgr (smgr_cached_nblocks) and is a lower bound: a relation
 * grows without telling other backends, but shrinks only by truncation,
 * which needs AccessExclusiveLock and sends every backend an smgr
 * invalidation that forgets the size (before it truncates).  The caller's
 * lock was taken after any truncation finished, and taking it processed
 * that invalidation.  So a block below the kept size exists; only above
 * it is the size asked of the kernel (an lseek), which keeps it again.
 */
static bool
block_exists(Relation rel, BlockNumber blk)
{
	BlockNumber known = RelationGetSmgr(rel)->smgr_cached_nblocks[MAIN_FORKNUM];

	if (known != InvalidBlockNumber && blk < known)
		return true;
	return blk < RelationGetNumberOfBlocks(rel);
}

/*
 * Does the sync.mirror row version that proved info's mirror to be of its
 * table still say so, under the statement's snapshot?  (See the head of
 * the cache.)  The block is checked against the relation's size: VACUUM
 * may have truncated the page of a dead version away.
 */
static bool
mirror_proof_holds(CaptureInfo *info)
{
	Relation	rel;
	HeapTupleData tuple;
	Buffer		buf;
	bool		holds = false;

	if (!info->proved || !ActiveSnapshotSet() || (rel = mirror_catalog_open()) == NULL)
		return false;
	tuple.t_self = info->proof_tid;
	if (block_exists(rel, ItemPointerGetBlockNumber(&info->proof_tid)) &&
		heap_fetch(rel, GetActiveSnapshot(), &tuple, &buf, false))
	{
		bool		idnull,
					tablenull;
		Datum		id = heap_getattr(&tuple, mirror_catalog.a_id, RelationGetDescr(rel), &idnull);
		Datum		table = heap_getattr(&tuple, mirror_catalog.a_table, RelationGetDescr(rel), &tablenull);

		holds = !idnull && !tablenull && DatumGetInt32(id) == info->mirror &&
			DatumGetObjectId(table) == info->relid;
		ReleaseBuffer(buf);
	}
	table_close(rel, AccessShareLock);
	return holds;
}

/*
 * The table of a mirror, by SQL as the owner (sync.mirror is readable by
 * the owner only), and the TID of the row version that says so; InvalidOid
 * when there is no such mirror.
 */
static Oid
lookup_mirror_table(int32 mirror, ItemPointer tid)
{
	Oid			relid = InvalidOid;
	OwnerState	st;
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];
	int			rc;

	run_as_owner(&st);
	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed: %s", SPI_result_code_string(rc));
	args[0] = Int32GetDatum(mirror);
	rc = SPI_execute_with_args("SELECT local_table, ctid FROM sync.mirror WHERE id OPERATOR(pg_catalog.=) $1",
							   1, argtypes, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "sync: mirror lookup failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		bool		isnull,
					tidnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		Datum		t = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &tidnull);

		if (!isnull && !tidnull)
		{
			relid = DatumGetObjectId(d);
			ItemPointerCopy((ItemPointer) DatumGetPointer(t), tid);
		}
	}
	SPI_finish();
	end_run_as_owner(&st);
	return relid;
}

/*
 * Refuse a capture trigger whose mirror is not of the table it fires on.
 * sync.mirror() creates the trigger with its own mirror's id; any other
 * id was given by hand, and would queue writes (deletes of arbitrary
 * remote IDs among them) into another mirror.  Once per statement: a
 * fetch by TID while the cached proof holds, else a lookup.
 */
static void
check_mirror_table(CaptureInfo *info, const char *tgname)
{
	Oid			mirror_relid;
	ItemPointerData tid;

	if (mirror_proof_holds(info))
		return;
	info->proved = false;
	mirror_relid = lookup_mirror_table(info->mirror, &tid);

	if (!OidIsValid(mirror_relid))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on table %s calls sync.capture() for mirror %d, which does not exist",
						tgname, relation_display_name(info->relid), info->mirror),
				 errhint("Drop the trigger.  Triggers on mirrored tables are created by sync.mirror().")));
	if (mirror_relid != info->relid)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on table %s calls sync.capture() for mirror %d, which is the mirror of table %s",
						tgname, relation_display_name(info->relid), info->mirror,
						relation_display_name(mirror_relid)),
				 errdetail("sync.capture() queues the writes of its own mirror's table only."),
				 errhint("Drop the trigger.  Triggers on mirrored tables are created by sync.mirror().")));
	info->proof_tid = tid;
	info->proved = true;
}

static AttrNumber
column_attnum(Relation rel, const char *name, bool for_key)
{
	AttrNumber	att = SPI_fnumber(RelationGetDescr(rel), name);

	if (att <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of mirrored table \"%s\" does not exist",
						name, RelationGetRelationName(rel)),
				 errdetail("sync maps this column%s; it was renamed or dropped after sync.mirror().",
						   for_key ? " as the row's key" : " to a remote field"),
				 errhint("Restore the column, or run sync.unmirror() and sync.mirror() again.")));
	return att;
}

static void
column_output(Relation rel, AttrNumber att, FmgrInfo *flinfo, MemoryContext cxt)
{
	Oid			typoutput;
	bool		varlena;

	getTypeOutputInfo(TupleDescAttr(RelationGetDescr(rel), att - 1)->atttypid, &typoutput, &varlena);
	fmgr_info_cxt(typoutput, flinfo, cxt);
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(NameStr(*DatumGetName(*(const Datum *) a)),
				  NameStr(*DatumGetName(*(const Datum *) b)));
}

/*
 * A table's cache entry, from its trigger's arguments and its columns.
 * The pushable columns are sorted by name, so the changed ones come out in
 * the order coalescing expects.  Built in a context of its own under the
 * caller's, moved under capture_cxt once complete: an error on the way
 * leaves nothing behind in the cache.
 */
static CaptureInfo *
build_capture_info(Relation rel, Trigger *tg)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "sync capture table",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	CaptureInfo *info;
	int			i;

	MemoryContextCopyAndSetIdentifier(cxt, RelationGetRelationName(rel));
	info = palloc0(sizeof(CaptureInfo));
	info->cxt = cxt;
	info->relid = RelationGetRelid(rel);
	info->tgoid = tg->tgoid;
	info->mirror = pg_strtoint32(tg->tgargs[0]);
	info->key_att = column_attnum(rel, tg->tgargs[1], true);
	info->remote_id_att = column_attnum(rel, tg->tgargs[2], true);
	column_output(rel, info->key_att, &info->key_out, cxt);
	column_output(rel, info->remote_id_att, &info->remote_id_out, cxt);
	info->ncols = tg->tgnargs - 3;
	info->names = palloc(sizeof(Datum) * Max(1, info->ncols));
	info->atts = palloc(sizeof(AttrNumber) * Max(1, info->ncols));
	for (i = 0; i < info->ncols; i++)
		info->names[i] = DirectFunctionCall1(namein, CStringGetDatum(tg->tgargs[3 + i]));
	qsort(info->names, info->ncols, sizeof(Datum), name_cmp);
	for (i = 0; i < info->ncols; i++)
		info->atts[i] = column_attnum(rel, NameStr(*DatumGetName(info->names[i])), false);
	MemoryContextSwitchTo(old);
	MemoryContextSetParent(cxt, capture_cxt);
	info->valid = true;
	return info;
}

/* The cache entry of the trigger's table, valid for this trigger. */
static CaptureInfo *
capture_table_info(Relation rel, Trigger *tg)
{
	Oid			relid = RelationGetRelid(rel);
	CaptureEntry *e;
	bool		found;

	capture_cache_init();
	if (capture_sweep_pending)
		capture_sweep();
	e = (CaptureEntry *) hash_search(capture_tables, &relid, HASH_ENTER, &found);
	if (!found)
		e->info = NULL;
	if (e->info != NULL && e->info->valid && e->info->tgoid == tg->tgoid)
		return e->info;
	/* invalid, or another capture trigger on the same table */
	if (e->info != NULL)
		retire_info(e->info);
	e->info = NULL;
	e->info = build_capture_info(rel, tg);
	return e->info;
}

/*
 * The trigger's cache entry, from fn_extra within a statement, and the
 * trust check once per statement.
 */
static CaptureInfo *
capture_info(FunctionCallInfo fcinfo, TriggerData *td)
{
	CaptureStmt *stmt = (CaptureStmt *) fcinfo->flinfo->fn_extra;
	Trigger    *tg = td->tg_trigger;

	if (stmt != NULL && stmt->tgoid == tg->tgoid && stmt->info->valid)
		return stmt->info;

	if (tg->tgnargs < 3)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("sync.capture() needs the mirror id, key column and remote-id column as arguments"),
				 errhint("Triggers on mirrored tables are created by sync.mirror(); do not create them by hand.")));

	if (stmt == NULL || stmt->tgoid != tg->tgoid)
	{
		if (stmt == NULL)
			stmt = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(CaptureStmt));
		stmt->tgoid = tg->tgoid;
		stmt->checked = false;
		stmt->info = NULL;
		fcinfo->flinfo->fn_extra = stmt;
	}
	stmt->info = capture_table_info(td->tg_relation, tg);
	if (!stmt->checked)
	{
		check_mirror_table(stmt->info, tg->tgname);
		stmt->checked = true;
	}
	return stmt->info;
}

/*
 * sync.outbox's OIDs, looked up again after an invalidation.  Marked valid
 * first: an invalidation that arrives while they are looked up marks them
 * invalid again, and outbox_open() retries.
 */
static void
outbox_lookup(void)
{
	Oid			nsp = get_namespace_oid("sync", false);

	outbox.valid = true;
	outbox.natts = 0;
	outbox.relid = get_relname_relid("outbox", nsp);
	outbox.idxid = get_relname_relid("outbox_row", nsp);
	outbox.seqid = get_relname_relid("outbox_id_seq", nsp);
	/* InvalidOid before 0.3 (see log_write) */
	outbox.logid = get_relname_relid("capture_log", nsp);
	outbox.log_natts = 0;
	if (!OidIsValid(outbox.relid) || !OidIsValid(outbox.idxid) || !OidIsValid(outbox.seqid))
	{
		outbox.valid = false;
		elog(ERROR, "sync: the outbox is missing; reinstall the extension");
	}
}

static void
outbox_attnums(TupleDesc desc)
{
	outbox.a_id = catalog_attnum(desc, "outbox", "id");
	outbox.a_mirror = catalog_attnum(desc, "outbox", "mirror");
	outbox.a_key = catalog_attnum(desc, "outbox", "local_key");
	outbox.a_op = catalog_attnum(desc, "outbox", "op");
	outbox.a_cols = catalog_attnum(desc, "outbox", "columns");
	outbox.a_rid = catalog_attnum(desc, "outbox", "remote_id");
	outbox.a_state = catalog_attnum(desc, "outbox", "state");
	outbox.a_slot = catalog_attnum(desc, "outbox", "slot");
	outbox.a_attempts = catalog_attnum(desc, "outbox", "attempts");
	outbox.a_next = catalog_attnum(desc, "outbox", "next_attempt_at");
	outbox.a_created = catalog_attnum(desc, "outbox", "created_at");
	outbox.a_updated = catalog_attnum(desc, "outbox", "updated_at");
	outbox.natts = desc->natts;
}

static void
log_attnums(TupleDesc desc)
{
	outbox.l_seq = catalog_attnum(desc, "capture_log", "seq");
	outbox.l_at = catalog_attnum(desc, "capture_log", "at");
	outbox.l_mirror = catalog_attnum(desc, "capture_log", "mirror");
	outbox.l_op = catalog_attnum(desc, "capture_log", "op");
	outbox.l_key = catalog_attnum(desc, "capture_log", "local_key");
	outbox.l_cols = catalog_attnum(desc, "capture_log", "columns");
	outbox.l_rid = catalog_attnum(desc, "capture_log", "remote_id");
	outbox.log_natts = desc->natts;
}

/*
 * sync.outbox (log false) or sync.capture_log (log true), opened with
 * RowExclusiveLock, the cached OIDs and attribute numbers current: taking
 * the lock accepts the invalidations sent before, so they are checked
 * after it.
 */
static Relation
outbox_open_rel(bool log)
{
	int			tries;

	for (tries = 0; tries < 10; tries++)
	{
		Relation	rel;

		if (!outbox.valid)
			outbox_lookup();
		rel = try_table_open(log ? outbox.logid : outbox.relid, RowExclusiveLock);
		if (rel != NULL && outbox.valid)
		{
			TupleDesc	desc = RelationGetDescr(rel);

			if (log && outbox.log_natts != desc->natts)
				log_attnums(desc);
			else if (!log && outbox.natts != desc->natts)
				outbox_attnums(desc);
			return rel;
		}
		if (rel != NULL)
			table_close(rel, RowExclusiveLock);
		outbox.valid = false;
	}
	elog(ERROR, "sync: %s keeps changing; try again", log ? "sync.capture_log" : "sync.outbox");
	return NULL;				/* keep compiler quiet */
}

#define outbox_open() outbox_open_rel(false)
#define log_open() outbox_open_rel(true)

/*
 * One captured write: the arguments of the upsert and log plans (mirror,
 * local_key, op, columns, remote_id, seq, at) with their SPI null flags,
 * and whether it is a delete.
 */
#define CAPTURED_NARGS 7
static Oid	captured_types[CAPTURED_NARGS] = {INT4OID, TEXTOID, CHAROID, NAMEARRAYOID, TEXTOID,
INT8OID, TIMESTAMPTZOID};

typedef struct CapturedWrite
{
	Datum		args[CAPTURED_NARGS];
	char		nulls[CAPTURED_NARGS];
	bool		is_delete;
} CapturedWrite;

static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "sync: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/* Free the kept plans after an invalidation of the outbox, unless in use. */
static void
free_stale_plans(void)
{
	SPIPlanPtr *plans[5] = {&outbox.upsert_plan, &outbox.unqueue_plan, &outbox.delete_plan,
	&outbox.log_plan, &outbox.read_plan};
	int			i;

	if (!outbox.plans_stale || outbox.plans_running > 0)
		return;
	for (i = 0; i < lengthof(plans); i++)
		if (*plans[i] != NULL)
		{
			SPI_freeplan(*plans[i]);
			*plans[i] = NULL;
		}
	outbox.plans_stale = false;
}

static void
prepare_plans(void)
{
	free_stale_plans();
	if (outbox.upsert_plan == NULL)
	{
		/* outbox coalescing: capture.h; the entry's id is the log row's seq */
		outbox.upsert_plan = prepare_kept(
										  "INSERT INTO sync.outbox AS o (mirror, local_key, op, columns, remote_id, "
										  "id, created_at, next_attempt_at) "
										  "VALUES ($1, $2, $3, $4, $5, $6, $7, $7) " OUTBOX_COALESCE_SQL,
										  CAPTURED_NARGS, captured_types);
	}
	if (!OidIsValid(outbox.logid))
		return;					/* before 0.3: no log */
	if (outbox.log_plan == NULL)
		outbox.log_plan = prepare_kept(
									   "INSERT INTO sync.capture_log (seq, at, mirror, op, local_key, columns, remote_id) "
									   "VALUES ($6, $7, $1, $3, $2, $4, $5)",
									   CAPTURED_NARGS, captured_types);
	if (outbox.read_plan == NULL)
	{
		Oid			types[2] = {INT4OID, INT8OID};

		/* no index: the log is read whole (it holds what came since the last fold) */
		outbox.read_plan = prepare_kept(
										"SELECT ctid, seq, at, mirror, op, local_key, columns, remote_id "
										"FROM sync.capture_log "
										"WHERE ($1 OPERATOR(pg_catalog.=) 0 OR mirror OPERATOR(pg_catalog.=) $1) "
										"ORDER BY seq LIMIT $2",
										2, types);
	}
	if (outbox.unqueue_plan == NULL)
	{
		Oid			types[2] = {INT4OID, TEXTOID};

		outbox.unqueue_plan = prepare_kept(
										   "DELETE FROM sync.outbox "
										   "WHERE mirror OPERATOR(pg_catalog.=) $1 "
										   "AND local_key OPERATOR(pg_catalog.=) $2 "
										   "AND slot OPERATOR(pg_catalog.=) 0 "
										   "RETURNING op",
										   2, types);
	}
	if (outbox.delete_plan == NULL)
	{
		Oid			types[5] = {INT4OID, TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID};

		outbox.delete_plan = prepare_kept(
										  "INSERT INTO sync.outbox (mirror, local_key, op, remote_id, slot, "
										  "id, created_at, next_attempt_at) "
										  "VALUES ($1, $2, 'D', $3, 1, $4, $5, $5) "
										  "ON CONFLICT (mirror, local_key, slot) DO NOTHING",
										  5, types);
	}
}

/*
 * Did the column's value change?  Compares the stored images, detoasted.
 * The row versions are read through the trigger's slots, which deform each
 * row once for all its columns.
 */
static bool
column_changed(TupleTableSlot *oldslot, TupleTableSlot *newslot, AttrNumber att)
{
	Form_pg_attribute a = TupleDescAttr(oldslot->tts_tupleDescriptor, att - 1);
	bool		oldnull,
				newnull;
	Datum		oldd = slot_getattr(oldslot, att, &oldnull);
	Datum		newd = slot_getattr(newslot, att, &newnull);

	if (oldnull || newnull)
		return oldnull != newnull;
	return !datum_image_eq(oldd, newd, a->attbyval, a->attlen);
}

static char *
column_text(TupleTableSlot *slot, AttrNumber att, FmgrInfo *out)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);

	return isnull ? NULL : OutputFunctionCall(out, d);
}

/*
 * An update: the changed pushable columns (sorted: info's order), or false
 * when none changed.  The key must not change; it is compared as text,
 * the form it is queued in, unless the stored images are equal.
 */
static bool
describe_update(CaptureInfo *info, TriggerData *td, CapturedWrite *w)
{
	TupleDesc	desc = RelationGetDescr(td->tg_relation);
	Form_pg_attribute keyatt = TupleDescAttr(desc, info->key_att - 1);
	Datum	   *changed = palloc(sizeof(Datum) * Max(1, info->ncols));
	int			nchanged = 0;
	int			i;
	char	   *key = column_text(td->tg_newslot, info->key_att, &info->key_out);

	for (i = 0; i < info->ncols; i++)
		if (column_changed(td->tg_trigslot, td->tg_newslot, info->atts[i]))
			changed[nchanged++] = info->names[i];

	if (column_changed(td->tg_trigslot, td->tg_newslot, info->key_att) || key == NULL)
	{
		char	   *oldkey = column_text(td->tg_trigslot, info->key_att, &info->key_out);

		if (key == NULL || oldkey == NULL || strcmp(key, oldkey) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot change the primary key of a row of mirrored table \"%s\"",
							RelationGetRelationName(td->tg_relation)),
					 errdetail("sync identifies queued writes by the key column \"%s\".",
							   NameStr(keyatt->attname)),
					 errhint("Delete the row and insert it with the new key instead.")));
	}
	if (nchanged == 0)
		return false;
	w->args[1] = CStringGetTextDatum(key);
	w->args[2] = CharGetDatum('U');
	w->args[3] = PointerGetDatum(construct_array(changed, nchanged, NAMEOID,
												 NAMEDATALEN, false, TYPALIGN_CHAR));
	return true;
}

/*
 * What to queue for this row, or false when nothing (no pushable column
 * changed).  Uses info; what it returns does not refer to it.
 */
static bool
describe_write(CaptureInfo *info, TriggerData *td, CapturedWrite *w)
{
	TupleTableSlot *row = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newslot : td->tg_trigslot;
	char	   *rid;

	memset(w->args, 0, sizeof(w->args));
	memset(w->nulls, ' ', sizeof(w->nulls));
	w->is_delete = TRIGGER_FIRED_BY_DELETE(td->tg_event);
	w->args[0] = Int32GetDatum(info->mirror);

	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		if (!describe_update(info, td, w))
			return false;
	}
	else
	{
		char	   *key = column_text(row, info->key_att, &info->key_out);

		if (key == NULL)
			return false;		/* cannot happen for a primary key */
		w->args[1] = CStringGetTextDatum(key);
		w->args[2] = CharGetDatum(TRIGGER_FIRED_BY_INSERT(td->tg_event) ? 'I' : 'D');
		w->nulls[3] = 'n';
	}

	rid = column_text(row, info->remote_id_att, &info->remote_id_out);
	if (rid != NULL)
		w->args[4] = CStringGetTextDatum(rid);
	else
		w->nulls[4] = 'n';

	/*
	 * A row inserted with its remote ID already set adopts an existing
	 * remote record: push it as an update of every column.
	 */
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event) && rid != NULL)
		w->args[2] = CharGetDatum('U');
	return true;
}

/*
 * The columns of an entry after coalescing `changed` into `old` (both sorted
 * name[]; NULL = all columns): their union.  *same: nothing was added.
 */
static Datum
union_columns(Datum old, bool oldnull, Datum changed, bool changednull, bool *same, bool *isnull)
{
	Datum	   *a,
			   *b,
			   *all;
	int			na,
				nb,
				n = 0,
				i;

	*same = false;
	*isnull = false;
	if (oldnull || changednull)
	{
		*same = oldnull;
		*isnull = true;
		return (Datum) 0;
	}
	deconstruct_array(DatumGetArrayTypeP(old), NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &a, NULL, &na);
	deconstruct_array(DatumGetArrayTypeP(changed), NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &b, NULL, &nb);
	all = palloc(sizeof(Datum) * Max(1, na + nb));
	memcpy(all, a, sizeof(Datum) * na);
	memcpy(all + na, b, sizeof(Datum) * nb);
	qsort(all, na + nb, sizeof(Datum), name_cmp);
	for (i = 0; i < na + nb; i++)
		if (n == 0 || name_cmp(&all[n - 1], &all[i]) != 0)
			all[n++] = all[i];
	*same = (n == na);
	return PointerGetDatum(construct_array(all, n, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR));
}

/* The executor state of one fast-path write to the outbox. */
typedef struct OutboxWrite
{
	Relation	rel;
	Relation	idxrel;			/* outbox_row, opened with the others */
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *found;		/* the row's open entry */
	TupleTableSlot *slot;		/* what is written */
	Datum		now;
} OutboxWrite;

static void
outbox_write_begin(OutboxWrite *ow, Relation rel)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	ow->rel = rel;
	ow->now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	ow->estate = CreateExecutorState();
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(ow->estate, list_make1(rte));
	ow->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(ow->rri, rel, 1, NULL, 0);
	ow->estate->es_output_cid = GetCurrentCommandId(true);
	ow->estate->es_snapshot = GetActiveSnapshot();
	ExecOpenIndices(ow->rri, false);
	ow->idxrel = NULL;
	for (i = 0; i < ow->rri->ri_NumIndices; i++)
		if (RelationGetRelid(ow->rri->ri_IndexRelationDescs[i]) == outbox.idxid)
			ow->idxrel = ow->rri->ri_IndexRelationDescs[i];

	/* the probe's scan keys assume the index of 40_catalog.sql */
	if (ow->idxrel == NULL ||
		IndexRelationGetNumberOfKeyAttributes(ow->idxrel) != 3 ||
		ow->idxrel->rd_index->indkey.values[0] != outbox.a_mirror ||
		ow->idxrel->rd_index->indkey.values[1] != outbox.a_key ||
		ow->idxrel->rd_index->indkey.values[2] != outbox.a_slot ||
		!ow->idxrel->rd_index->indisunique ||
		ow->idxrel->rd_rel->relam != BTREE_AM_OID)
		elog(ERROR, "sync: index sync.outbox_row is not the unique (mirror, local_key, slot) index it should be; reinstall the extension");
	ow->found = table_slot_create(rel, &ow->estate->es_tupleTable);
	ow->slot = ExecInitExtraTupleSlot(ow->estate, desc, &TTSOpsVirtual);
}

static void
outbox_write_end(OutboxWrite *ow)
{
	ExecCloseIndices(ow->rri);
	ExecResetTupleTable(ow->estate->es_tupleTable, false);
	FreeExecutorState(ow->estate);
	table_close(ow->rel, NoLock);
}

/*
 * Probe for the row's open entry (slot 0) by the outbox_row index, locking
 * it KEY SHARE (see the head of this file); into ow->found.  As logical
 * replication's RelationFindReplTupleByIndex, with a dirty snapshot, but
 * an entry still being inserted speculatively (by another capture, see
 * insert_entry) is waited for by its token, not its transaction, as
 * ON CONFLICT does.
 */
static bool
find_open_entry(OutboxWrite *ow, CapturedWrite *w)
{
	ScanKeyData skey[3];
	SnapshotData snap;
	IndexScanDesc scan;
	bool		found;

	ScanKeyInit(&skey[0], 1, BTEqualStrategyNumber, F_INT4EQ, w->args[0]);
	ScanKeyInit(&skey[1], 2, BTEqualStrategyNumber, F_TEXTEQ, w->args[1]);
	skey[1].sk_collation = ow->idxrel->rd_indcollation[1];
	ScanKeyInit(&skey[2], 3, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(0));

	InitDirtySnapshot(snap);
	scan = index_beginscan(ow->rel, ow->idxrel, &snap, 3, 0);
	for (;;)
	{
		TM_FailureData tmfd;
		TM_Result	res;
		TransactionId xwait;

		CHECK_FOR_INTERRUPTS();
		index_rescan(scan, skey, 3, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, ow->found);
		if (!found)
			break;
		ExecMaterializeSlot(ow->found);

		/* an insert or update in progress: wait for it, look again */
		xwait = TransactionIdIsValid(snap.xmin) ? snap.xmin : snap.xmax;
		if (TransactionIdIsValid(xwait))
		{
			if (snap.speculativeToken != 0)
				SpeculativeInsertionWait(snap.xmin, snap.speculativeToken);
			else
				XactLockTableWait(xwait, ow->rel, &ow->found->tts_tid, XLTW_None);
			continue;
		}

		PushActiveSnapshot(GetLatestSnapshot());
		res = table_tuple_lock(ow->rel, &ow->found->tts_tid, GetLatestSnapshot(),
							   ow->found, GetCurrentCommandId(false),
							   LockTupleKeyShare, LockWaitBlock, 0, &tmfd);
		PopActiveSnapshot();
		if (res == TM_Ok)
			break;
		if (res != TM_Updated && res != TM_Deleted)
			elog(ERROR, "sync: unexpected result %d locking an outbox entry", (int) res);
		/* sealed or removed meanwhile: look again */
	}
	index_endscan(scan);
	return found;
}

/*
 * Coalesce into the open entry in ow->found: insert + update = insert (all
 * columns); update + update = union.  A change the entry already covers
 * writes nothing: the lock keeps the entry open until commit.
 */
static void
coalesce_entry(OutboxWrite *ow, CapturedWrite *w)
{
	TupleTableSlot *found = ow->found;
	TupleTableSlot *slot = ow->slot;
	int			natts = RelationGetDescr(ow->rel)->natts;
	bool		same,
				colsnull;
	Datum		cols;
	bool		new_rid;

	slot_getallattrs(found);
	if (DatumGetChar(found->tts_values[outbox.a_op - 1]) == 'I')
	{
		cols = (Datum) 0;
		colsnull = true;
		same = found->tts_isnull[outbox.a_cols - 1];
	}
	else
		cols = union_columns(found->tts_values[outbox.a_cols - 1], found->tts_isnull[outbox.a_cols - 1],
							 w->args[3], w->nulls[3] == 'n', &same, &colsnull);
	new_rid = w->nulls[4] != 'n' &&
		(found->tts_isnull[outbox.a_rid - 1] ||
		 !datumIsEqual(found->tts_values[outbox.a_rid - 1], w->args[4], false, -1));
	if (same && !new_rid)
		return;

	ExecClearTuple(slot);
	memcpy(slot->tts_values, found->tts_values, sizeof(Datum) * natts);
	memcpy(slot->tts_isnull, found->tts_isnull, sizeof(bool) * natts);
	slot->tts_values[outbox.a_cols - 1] = cols;
	slot->tts_isnull[outbox.a_cols - 1] = colsnull;
	if (w->nulls[4] != 'n')
	{
		slot->tts_values[outbox.a_rid - 1] = w->args[4];
		slot->tts_isnull[outbox.a_rid - 1] = false;
	}
	slot->tts_values[outbox.a_updated - 1] = ow->now;
	ExecStoreVirtualTuple(slot);
	ExecSimpleRelationUpdate(ow->rri, ow->estate, NULL, found, slot);
}

/*
 * A new open entry for the row, inserted speculatively, the way INSERT ...
 * ON CONFLICT does: the heap tuple carries a token that others wait for
 * instead of this transaction, and the outbox_row index entry is made with
 * a partial uniqueness check.  Returns false when the row turned out to
 * have an open entry already (committed or not): then the tuple is killed
 * at once (its index entries stay, pointing at nothing, until vacuum), and
 * the caller probes.  One index descent instead of a probe and an insert.
 */
static bool
insert_entry(OutboxWrite *ow, CapturedWrite *w)
{
	TupleTableSlot *slot = ow->slot;
	Relation	rel = ow->rel;
	TransactionId xid;
	uint32		token;
	bool		conflict = false;
	List	   *recheck;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * RelationGetDescr(rel)->natts);
#define SET(att, v) \
	do { slot->tts_values[(att) - 1] = (v); slot->tts_isnull[(att) - 1] = false; } while (0)
	SET(outbox.a_mirror, w->args[0]);
	SET(outbox.a_key, w->args[1]);
	SET(outbox.a_op, w->args[2]);
	if (w->nulls[3] != 'n')
		SET(outbox.a_cols, w->args[3]);
	if (w->nulls[4] != 'n')
		SET(outbox.a_rid, w->args[4]);
	SET(outbox.a_state, CStringGetTextDatum("pending"));
	SET(outbox.a_slot, Int64GetDatum(0));
	SET(outbox.a_attempts, Int32GetDatum(0));
	SET(outbox.a_id, w->args[5]);
	SET(outbox.a_next, w->args[6]);
	SET(outbox.a_created, w->args[6]);
	SET(outbox.a_updated, ow->now);
#undef SET
	ExecStoreVirtualTuple(slot);
	if (rel->rd_att->constr)
		ExecConstraints(ow->rri, slot, ow->estate);

	xid = GetCurrentTransactionId();
	token = SpeculativeInsertionLockAcquire(xid);
	table_tuple_insert_speculative(rel, slot, ow->estate->es_output_cid, 0, NULL, token);
	recheck = ExecInsertIndexTuples(ow->rri, slot, ow->estate, false, true, &conflict,
									list_make1_oid(outbox.idxid));
	table_tuple_complete_speculative(rel, slot, token, !conflict);
	SpeculativeInsertionLockRelease(xid);
	list_free(recheck);
	return !conflict;
}

/*
 * The fold's outbox write, open for a fetch of log rows (capture_fold): an
 * executor state, the outbox and its indexes opened once for a thousand
 * rows, not once a row.  NULL otherwise.
 */
static OutboxWrite *fold_ow = NULL;

/*
 * Probe first, or insert first?  Inserting first costs one index descent
 * when the row has no open entry, but a wasted insert (and dead index
 * entries for vacuum) when it has one; probing first costs a descent more
 * when it has none.  Two per-backend guesses choose; either order gives
 * the same outbox:
 *
 * - recent_rows: hashes of (mirror, key) of the rows this backend queued
 *   lately.  A row found here likely has its entry still open (a row
 *   written again, in one transaction or the next), so it is probed first.
 * - open_rate: how many of the latest captured rows had an open entry
 *   already, out of 1024 (a moving average over about 16 rows).  Above a
 *   third, probing first is the cheaper bet (a few hot rows written by many
 *   sessions); below, inserting first (new rows, rows written once between
 *   pushes, a bulk update).
 */
#define RECENT_SLOTS 1024
#define OPEN_RATE_PROBE_FIRST 341
static uint32 recent_rows[RECENT_SLOTS];
static int	open_rate = 0;

static uint32
row_hash(CapturedWrite *w)
{
	text	   *key = DatumGetTextPP(w->args[1]);
	uint32		h = hash_bytes((const unsigned char *) VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));

	return hash_combine(h, (uint32) DatumGetInt32(w->args[0])) | 1;	/* never 0 */
}

/*
 * Queue an insert or update of one row, by the fast path (see the head of
 * this file).  Returns false, doing nothing, when the outbox has triggers
 * of its own: only the SQL path fires them.
 */
static bool
queue_upsert(CapturedWrite *w)
{
	OutboxWrite own_ow;
	OutboxWrite *ow = fold_ow;
	uint32		h;
	bool		probe;
	bool		had_entry = false;

	if (ow == NULL)
	{
		Relation	rel = outbox_open();

		if (rel->trigdesc != NULL)
		{
			table_close(rel, RowExclusiveLock);
			return false;
		}
		/* entries written earlier in this command must be visible to the probe */
		CommandCounterIncrement();
		outbox_write_begin(&own_ow, rel);
		ow = &own_ow;
	}
	else
	{
		/* the fold's write, kept open: the same, with a new command id */
		CommandCounterIncrement();
		ow->estate->es_output_cid = GetCurrentCommandId(true);
		ResetPerTupleExprContext(ow->estate);
	}

	h = row_hash(w);
	probe = (recent_rows[h % RECENT_SLOTS] == h || open_rate > OPEN_RATE_PROBE_FIRST);
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (probe && find_open_entry(ow, w))
		{
			coalesce_entry(ow, w);
			had_entry = true;
			break;
		}
		if (insert_entry(ow, w))
			break;
		/* it has an open entry after all (or had, if that one goes away) */
		probe = true;
		had_entry = true;
	}
	if (ow == &own_ow)
		outbox_write_end(&own_ow);
	recent_rows[h % RECENT_SLOTS] = h;
	open_rate += ((had_entry ? 1024 : 0) - open_rate) / 16;
	return true;
}

/*
 * A delete, by SQL: remove the row's never-attempted entry; insert + delete
 * = nothing, unless an earlier attempt is in flight (the row has a remote
 * ID); else queue a delete with the remote ID.
 */
static void
queue_delete_sql(CapturedWrite *w)
{
	bool		was_insert = false;
	int			rc;

	rc = SPI_execute_plan(outbox.unqueue_plan, w->args, w->nulls, false, 0);
	if (rc != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "sync: outbox delete failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		bool		opnull;
		Datum		op = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &opnull);

		was_insert = (DatumGetChar(op) == 'I');
	}
	if (!was_insert || w->nulls[4] == ' ')
	{
		Datum		dargs[5] = {w->args[0], w->args[1], w->args[4], w->args[5], w->args[6]};
		char		dnulls[5] = {' ', ' ', w->nulls[4], ' ', ' '};

		rc = SPI_execute_plan(outbox.delete_plan, dargs, dnulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "sync: outbox insert failed: %s", SPI_result_code_string(rc));
	}
}

/*
 * The SQL path, as the owner: the trigger's write when the log has
 * triggers (to_log); at the fold, deletes, and inserts and updates when the
 * outbox has triggers.  The kept plans are marked running meanwhile, so a
 * nested capture (from a trigger on the outbox) does not free them.
 */
static void
queue_by_sql(CapturedWrite *w, bool to_log)
{
	OwnerState	st;
	int			rc;

	run_as_owner(&st);
	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed: %s", SPI_result_code_string(rc));
	prepare_plans();
	outbox.plans_running++;
	PG_TRY();
	{
		if (to_log)
		{
			rc = SPI_execute_plan(outbox.log_plan, w->args, w->nulls, false, 0);
			if (rc != SPI_OK_INSERT)
				elog(ERROR, "sync: capture log insert failed: %s", SPI_result_code_string(rc));
		}
		else if (w->is_delete)
			queue_delete_sql(w);
		else
		{
			rc = SPI_execute_plan(outbox.upsert_plan, w->args, w->nulls, false, 0);
			if (rc != SPI_OK_INSERT)
				elog(ERROR, "sync: outbox insert failed: %s", SPI_result_code_string(rc));
		}
	}
	PG_FINALLY();
	{
		outbox.plans_running--;
	}
	PG_END_TRY();
	SPI_finish();
	end_run_as_owner(&st);
}

/*
 * Queue a captured write into the outbox, coalescing: inserts and updates
 * by the fast path, deletes and an outbox with triggers by SQL.
 */
static void
queue_write(CapturedWrite *w)
{
	if (w->is_delete || !queue_upsert(w))
		queue_by_sql(w, false);
}

/*
 * Does sync.capture_log exist?  Not in the schema of 0.1 or 0.2 (this
 * library is installed before ALTER EXTENSION UPDATE runs); then the cache
 * is marked to look again next time, for the update that creates it.
 */
static bool
log_exists(void)
{
	if (!outbox.valid)
		outbox_lookup();
	if (OidIsValid(outbox.logid))
		return true;
	outbox.valid = false;
	return false;
}

/*
 * The trigger's write: one row appended to sync.capture_log by a heap
 * insert (no index, nothing to check: no column it sets is null), or by SQL
 * when the log has triggers of its own.  The row's seq comes from the
 * outbox's id sequence.
 */
static void
log_write(CapturedWrite *w)
{
	Relation	rel;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
	bool		have_log = log_exists();

	w->args[5] = Int64GetDatum(nextval_internal(outbox.seqid, false));
	w->args[6] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());

	/*
	 * The schema of an earlier version (0.1, 0.2: this library is installed
	 * before ALTER EXTENSION UPDATE runs) has no log: queue into the outbox
	 * at once, as the fold would.
	 */
	if (!have_log)
	{
		queue_write(w);
		return;
	}
	rel = log_open();
	desc = RelationGetDescr(rel);
	if (rel->trigdesc != NULL)
	{
		table_close(rel, RowExclusiveLock);
		queue_by_sql(w, true);
		return;
	}
	values = palloc0(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	memset(nulls, true, sizeof(bool) * desc->natts);
#define SET(att, i) \
	do { values[(att) - 1] = w->args[i]; nulls[(att) - 1] = (w->nulls[i] == 'n'); } while (0)
	SET(outbox.l_mirror, 0);
	SET(outbox.l_key, 1);
	SET(outbox.l_op, 2);
	SET(outbox.l_cols, 3);
	SET(outbox.l_rid, 4);
	SET(outbox.l_seq, 5);
	SET(outbox.l_at, 6);
#undef SET
	simple_heap_insert(rel, heap_form_tuple(desc, values, nulls));
	table_close(rel, NoLock);
}

/*
 * A mirror's fold lock, held to the end of the transaction (see the head of
 * this file): an object lock in a class of its own, the log's OID, so that
 * no other lock of the server shares its tag.  Without wait, false when
 * another transaction holds it.  Waiting is bounded by lock_timeout and
 * seen by the deadlock detector, as any heavyweight lock.
 */
static bool
fold_lock(int32 mirror, bool wait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, MyDatabaseId, outbox.logid, (uint32) mirror, 0);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

/* Log rows fetched at a time by a fold. */
#define FOLD_FETCH 1000

/*
 * Is there a log row of `mirror` (0: of any) to fold?  A scan of the heap
 * until the first one, without SQL: an idle round of the worker asks this
 * of an empty log, and must not grow by a statement (issue #13).
 */
static bool
log_has_rows(Relation logrel, int32 mirror)
{
	TableScanDesc scan;
	HeapTuple	tup;
	bool		found = false;
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());

	scan = table_beginscan(logrel, snap, 0, NULL);
	while (!found && (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		m = heap_getattr(tup, outbox.l_mirror, RelationGetDescr(logrel), &isnull);

		found = mirror == 0 || (!isnull && DatumGetInt32(m) == mirror);
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	return found;
}

/*
 * The log rows of `mirror` (0: of any) in seq order, at most `limit` (-1:
 * all): a cursor, so that a large log is read (and sorted) once, in
 * bounded memory.
 */
static Portal
fold_cursor(int32 mirror, int64 limit)
{
	Datum		a[2];
	char		n[2] = {' ', ' '};
	Portal		portal;

	a[0] = Int32GetDatum(mirror);
	a[1] = Int64GetDatum(limit);
	if (limit < 0)
		n[1] = 'n';				/* LIMIT NULL: all */
	portal = SPI_cursor_open(NULL, outbox.read_plan, a, n, false);
	if (portal == NULL)
		elog(ERROR, "sync: reading sync.capture_log failed: %s", SPI_result_code_string(SPI_result));
	return portal;
}

/*
 * Fold one log row: delete it, then queue its write into the outbox.  False
 * when the row was gone (an unmirror deleted it meanwhile).
 */
static bool
fold_row(Relation logrel, HeapTuple tup, TupleDesc desc)
{
	CapturedWrite w;
	ItemPointerData tid;
	TM_FailureData tmfd;
	bool		isnull;
	int			i;

	tid = *(ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 1, &isnull));
	if (heap_delete(logrel, &tid, GetCurrentCommandId(true), InvalidSnapshot, true,
					&tmfd, false) != TM_Ok)
		return false;

	/* columns 2.. : seq, at, mirror, op, local_key, columns, remote_id */
	memset(w.nulls, ' ', sizeof(w.nulls));
	w.args[5] = SPI_getbinval(tup, desc, 2, &isnull);
	w.args[6] = SPI_getbinval(tup, desc, 3, &isnull);
	w.args[0] = SPI_getbinval(tup, desc, 4, &isnull);
	w.args[2] = SPI_getbinval(tup, desc, 5, &isnull);
	w.args[1] = SPI_getbinval(tup, desc, 6, &isnull);
	for (i = 3; i <= 4; i++)
	{
		w.args[i] = SPI_getbinval(tup, desc, i + 4, &isnull);
		if (isnull)
			w.nulls[i] = 'n';
	}
	w.is_delete = DatumGetChar(w.args[2]) == 'D';
	queue_write(&w);
	return true;
}

/*
 * Open the fold's outbox write (fold_ow) for a fetch of log rows, unless
 * the outbox has triggers (then each row takes the SQL path, which fires
 * them).
 */
static void
fold_write_begin(OutboxWrite *ow)
{
	Relation	rel = outbox_open();

	if (rel->trigdesc != NULL)
	{
		table_close(rel, RowExclusiveLock);
		return;
	}
	outbox_write_begin(ow, rel);
	fold_ow = ow;
}

static void
fold_write_end(OutboxWrite *ow)
{
	if (fold_ow == NULL)
		return;
	fold_ow = NULL;
	outbox_write_end(ow);
}

int64
capture_fold(int32 mirror, bool wait, int64 limit)
{
	OwnerState	st;
	Relation	logrel;
	MemoryContext rowcxt;
	int64		folded = 0;
	List	   *held = NIL;
	List	   *skipped = NIL;
	OutboxWrite ow;
	int			rc;

	capture_cache_init();
	if (!log_exists())
		return 0;				/* before 0.3: nothing to fold */
	logrel = log_open();
	if (!log_has_rows(logrel, mirror))
	{
		table_close(logrel, NoLock);
		return 0;
	}
	run_as_owner(&st);
	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed: %s", SPI_result_code_string(rc));
	prepare_plans();
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "sync fold row", ALLOCSET_DEFAULT_SIZES);
	outbox.plans_running++;
	PG_TRY();
	{
		Portal		portal;
		bool		go = true;

		/* (one mirror: nothing to fold took no lock, above) */
		if (mirror != 0)
			go = fold_lock(mirror, wait);
		if (!go)
			folded = -1;		/* another process folds the mirror now */
		portal = go ? fold_cursor(mirror, limit) : NULL;
		while (portal != NULL)
		{
			SPITupleTable *rows;
			uint64		i;

			SPI_cursor_fetch(portal, true, FOLD_FETCH);
			if (SPI_processed == 0)
				break;
			rows = SPI_tuptable;
			fold_write_begin(&ow);
			for (i = 0; i < SPI_processed; i++)
			{
				HeapTuple	tup = rows->vals[i];
				bool		isnull;
				int32		m = DatumGetInt32(SPI_getbinval(tup, rows->tupdesc, 4, &isnull));
				MemoryContext old;

				CHECK_FOR_INTERRUPTS();
				if (list_member_int(skipped, m))
					continue;
				if (mirror == 0 && !list_member_int(held, m))
				{
					if (!fold_lock(m, wait))
					{
						skipped = lappend_int(skipped, m);
						continue;
					}
					held = lappend_int(held, m);
				}
				old = MemoryContextSwitchTo(rowcxt);
				if (fold_row(logrel, tup, rows->tupdesc))
					folded++;
				MemoryContextSwitchTo(old);
				MemoryContextReset(rowcxt);
			}
			fold_write_end(&ow);
			SPI_freetuptable(rows);
		}
		if (portal != NULL)
			SPI_cursor_close(portal);
	}
	PG_FINALLY();
	{
		outbox.plans_running--;
		fold_ow = NULL;			/* (an error's abort cleans up the rest) */
	}
	PG_END_TRY();
	MemoryContextDelete(rowcxt);
	table_close(logrel, NoLock);
	SPI_finish();
	end_run_as_owner(&st);
	return folded;
}

/* sync._fold(mirror int DEFAULT NULL): fold now, waiting for the fold locks */
Datum
sync_fold(PG_FUNCTION_ARGS)
{
	int32		mirror = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT32(0);

	if (mirror < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sync._fold: mirror must be a mirror's id, or NULL for all mirrors")));
	PG_RETURN_INT64(capture_fold(mirror, true, -1));
}

Datum
sync_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	CaptureInfo *info;
	CapturedWrite w;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("sync.capture() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("sync.capture() must be an AFTER ... FOR EACH ROW trigger")));

	info = capture_info(fcinfo, td);
	if (sync_applying_mirror == info->mirror)
		return PointerGetDatum(NULL);	/* inbound apply of this mirror: no echo */
	if (!describe_write(info, td, &w))
		return PointerGetDatum(NULL);	/* nothing pushable changed */

	log_write(&w);
	sync_wake_at_commit();
	return PointerGetDatum(NULL);
}

/*
 * BEFORE TRUNCATE on mirrored tables: TRUNCATE fires no row triggers, so it
 * would silently desynchronise the table from the remote.  Pull-only
 * mirrors get it too, with the argument 'pull': their rows would not come
 * back, because the pull goes on from its cursor.
 */
Datum
sync_truncate_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("sync.truncate_guard() must be called as a trigger")));
	if (td->tg_trigger->tgnargs > 0 && strcmp(td->tg_trigger->tgargs[0], "pull") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot truncate mirrored table \"%s\"",
						RelationGetRelationName(td->tg_relation)),
				 errdetail("The table is a pull-only mirror: the pull goes on from where it was, so the removed rows would not be pulled again until they change remotely."),
				 errhint("To reload the table from the remote, sync.unmirror() it and sync.mirror() it again.")));
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot truncate mirrored table \"%s\"",
					RelationGetRelationName(td->tg_relation)),
			 errdetail("TRUNCATE fires no row triggers, so the deletions would never reach the remote."),
			 errhint("Use DELETE to delete remote records too, or sync.unmirror() the table first.")));
	PG_RETURN_NULL();
}
