/*
 * capture.c — the capture trigger: queue local writes to mirrored tables.
 *
 * Row-level AFTER INSERT/UPDATE/DELETE trigger, created by sync.mirror() as
 *
 *     sync.capture(mirror_id, key_column, remote_id_column, column...)
 *
 * where the columns are the mapped columns that may be pushed.  Carrying
 * them in the trigger's arguments means no catalog lookup per row; the
 * trigger is recreated whenever the mapping changes.
 *
 * For each row it writes the operation and the set of changed columns to
 * sync.outbox, in the same transaction, coalescing with the row's entry
 * that was never attempted:
 *     insert + update = insert          update + update = union of columns
 *     insert + delete = nothing         update + delete = delete
 * An UPDATE that changes no pushable column writes nothing.  Values are not
 * copied: the pusher reads them from the table, the source of truth.
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
 * Inserts and updates take a fast path that does not go through SQL: an
 * index probe for the row's open entry (the way logical replication's apply
 * finds rows), then a heap insert or update.  An executor start per captured
 * row would cost more than the user's UPDATE itself.  The probe locks the
 * open entry it finds (KEY SHARE), so a claimer cannot seal it before this
 * transaction commits: a change already covered by the entry needs no write
 * at all, and is still sent, because the claim that takes the entry comes
 * after the commit and reads the row then.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "capture.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(sync_capture);
PG_FUNCTION_INFO_V1(sync_truncate_guard);

/* mirror whose inbound rows are being applied in this backend, or 0 */
int			sync_applying_mirror = 0;

/* Per-statement cache, in fn_extra: the trigger's columns as attnums. */
typedef struct CaptureInfo
{
	Oid			tgoid;
	int			mirror;
	AttrNumber	key_att;
	AttrNumber	remote_id_att;
	int			ncols;
	AttrNumber *atts;
	Datum	   *names;			/* column names as name Datums */
} CaptureInfo;

static SPIPlanPtr upsert_plan = NULL;
static SPIPlanPtr unqueue_plan = NULL;
static SPIPlanPtr delete_plan = NULL;
static Oid	owner_cache = InvalidOid;

/*
 * Mirror id -> its table, for the mirrors whose capture triggers fired in
 * this backend and were found on their own table.  Mirror ids are never
 * reused, so an entry never goes stale; the check costs one SPI query per
 * backend and mirror, then a hash probe per statement.
 */
typedef struct MirrorTable
{
	int32		mirror;			/* hash key */
	Oid			relid;
} MirrorTable;

static HTAB *mirror_tables = NULL;

/* What run_as_owner() saved, for end_run_as_owner(). */
typedef struct OwnerState
{
	Oid			save_user;
	int			save_sec;
	int			save_nestlevel;
} OwnerState;

/*
 * The extension owner, looked up once per backend.  (An ALTER EXTENSION
 * OWNER is rare; a new backend sees it.)
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

/*
 * Refuse a capture trigger whose mirror is not of the table it fires on.
 * sync.mirror() creates the trigger with its own mirror's id; any other
 * id was given by hand, and would queue writes (deletes of arbitrary
 * remote IDs among them) into another mirror.
 */
static void
check_mirror_table(int mirror, Relation rel, const char *tgname)
{
	Oid			relid = RelationGetRelid(rel);
	Oid			mirror_relid = InvalidOid;
	MirrorTable *entry;
	OwnerState	st;
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];
	int			rc;

	if (mirror_tables == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(MirrorTable);
		ctl.hcxt = TopMemoryContext;
		mirror_tables = hash_create("sync capture mirror tables", 16, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = (MirrorTable *) hash_search(mirror_tables, &mirror, HASH_FIND, NULL);
	if (entry != NULL && entry->relid == relid)
		return;

	/* sync.mirror is readable by the owner only */
	run_as_owner(&st);
	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed: %s", SPI_result_code_string(rc));
	args[0] = Int32GetDatum(mirror);
	rc = SPI_execute_with_args("SELECT local_table FROM sync.mirror WHERE id OPERATOR(pg_catalog.=) $1",
							   1, argtypes, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "sync: mirror lookup failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			mirror_relid = DatumGetObjectId(d);
	}
	SPI_finish();
	end_run_as_owner(&st);

	if (!OidIsValid(mirror_relid))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on table %s calls sync.capture() for mirror %d, which does not exist",
						tgname, relation_display_name(relid), mirror),
				 errhint("Drop the trigger.  Triggers on mirrored tables are created by sync.mirror().")));
	if (mirror_relid != relid)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on table %s calls sync.capture() for mirror %d, which is the mirror of table %s",
						tgname, relation_display_name(relid), mirror,
						relation_display_name(mirror_relid)),
				 errdetail("sync.capture() queues the writes of its own mirror's table only."),
				 errhint("Drop the trigger.  Triggers on mirrored tables are created by sync.mirror().")));

	entry = (MirrorTable *) hash_search(mirror_tables, &mirror, HASH_ENTER, NULL);
	entry->relid = relid;
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

static CaptureInfo *
capture_info(FunctionCallInfo fcinfo, TriggerData *td)
{
	CaptureInfo *info = (CaptureInfo *) fcinfo->flinfo->fn_extra;
	Trigger    *tg = td->tg_trigger;
	MemoryContext old;
	int			i;

	if (info != NULL && info->tgoid == tg->tgoid)
		return info;

	if (tg->tgnargs < 3)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("sync.capture() needs the mirror id, key column and remote-id column as arguments"),
				 errhint("Triggers on mirrored tables are created by sync.mirror(); do not create them by hand.")));

	check_mirror_table(pg_strtoint32(tg->tgargs[0]), td->tg_relation, tg->tgname);

	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	info = palloc0(sizeof(CaptureInfo));
	info->tgoid = tg->tgoid;
	info->mirror = pg_strtoint32(tg->tgargs[0]);
	info->key_att = column_attnum(td->tg_relation, tg->tgargs[1], true);
	info->remote_id_att = column_attnum(td->tg_relation, tg->tgargs[2], true);
	info->ncols = tg->tgnargs - 3;
	info->atts = palloc(sizeof(AttrNumber) * Max(1, info->ncols));
	info->names = palloc(sizeof(Datum) * Max(1, info->ncols));
	for (i = 0; i < info->ncols; i++)
	{
		info->atts[i] = column_attnum(td->tg_relation, tg->tgargs[3 + i], false);
		info->names[i] = DirectFunctionCall1(namein, CStringGetDatum(tg->tgargs[3 + i]));
	}
	MemoryContextSwitchTo(old);
	fcinfo->flinfo->fn_extra = info;
	return info;
}

static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "sync: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

static void
prepare_plans(void)
{
	if (upsert_plan == NULL)
	{
		Oid			types[5] = {INT4OID, TEXTOID, CHAROID, NAMEARRAYOID, TEXTOID};

		/*
		 * The ON CONFLICT target is the row's open entry (slot 0, see
		 * sync.outbox).  insert+update stays an insert (all columns);
		 * update+update unions the columns.  Operators and functions are
		 * qualified: this runs as the extension owner.
		 */
		upsert_plan = prepare_kept(
								   "INSERT INTO sync.outbox AS o (mirror, local_key, op, columns, remote_id) "
								   "VALUES ($1, $2, $3, $4, $5) "
								   "ON CONFLICT (mirror, local_key, slot) "
								   "DO UPDATE SET columns = CASE "
								   "  WHEN o.op OPERATOR(pg_catalog.=) 'I' OR o.columns IS NULL OR EXCLUDED.columns IS NULL THEN NULL "
								   "  ELSE ARRAY(SELECT DISTINCT c FROM pg_catalog.unnest(o.columns OPERATOR(pg_catalog.||) EXCLUDED.columns) AS c ORDER BY 1) END, "
								   "  remote_id = COALESCE(EXCLUDED.remote_id, o.remote_id), "
								   "  updated_at = pg_catalog.now()",
								   5, types);
	}
	if (unqueue_plan == NULL)
	{
		Oid			types[2] = {INT4OID, TEXTOID};

		unqueue_plan = prepare_kept(
									"DELETE FROM sync.outbox "
									"WHERE mirror OPERATOR(pg_catalog.=) $1 "
									"AND local_key OPERATOR(pg_catalog.=) $2 "
									"AND slot OPERATOR(pg_catalog.=) 0 "
									"RETURNING op",
									2, types);
	}
	if (delete_plan == NULL)
	{
		Oid			types[3] = {INT4OID, TEXTOID, TEXTOID};

		delete_plan = prepare_kept(
								   "INSERT INTO sync.outbox (mirror, local_key, op, remote_id, slot) "
								   "VALUES ($1, $2, 'D', $3, 1) ON CONFLICT (mirror, local_key, slot) DO NOTHING",
								   3, types);
	}
}

static char *
attr_text(HeapTuple tuple, TupleDesc desc, AttrNumber att, bool *isnull)
{
	Datum		d = heap_getattr(tuple, att, desc, isnull);
	Oid			typoutput;
	bool		varlena;

	if (*isnull)
		return NULL;
	getTypeOutputInfo(TupleDescAttr(desc, att - 1)->atttypid, &typoutput, &varlena);
	return OidOutputFunctionCall(typoutput, d);
}

/* Did the column's value change?  Compares the stored images, detoasted. */
static bool
column_changed(HeapTuple oldtup, HeapTuple newtup, TupleDesc desc, AttrNumber att)
{
	Form_pg_attribute a = TupleDescAttr(desc, att - 1);
	bool		oldnull,
				newnull;
	Datum		oldd = heap_getattr(oldtup, att, desc, &oldnull);
	Datum		newd = heap_getattr(newtup, att, desc, &newnull);

	if (oldnull || newnull)
		return oldnull != newnull;
	return !datum_image_eq(oldd, newd, a->attbyval, a->attlen);
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(NameStr(*DatumGetName(*(const Datum *) a)),
				  NameStr(*DatumGetName(*(const Datum *) b)));
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

static AttrNumber
outbox_attnum(TupleDesc desc, const char *name)
{
	AttrNumber	att = SPI_fnumber(desc, name);

	if (att <= 0)
		elog(ERROR, "sync: sync.outbox has no column \"%s\"; reinstall the extension", name);
	return att;
}

/*
 * Queue an insert or update of one row, by the fast path (see the head of
 * this file).  args are those of the upsert plan: mirror, local_key, op,
 * columns, remote_id.  Returns false, doing nothing, when the outbox has
 * triggers of its own: only the SQL path fires them.
 */
static bool
queue_upsert(Datum *args, const char *nulls)
{
	Oid			nsp = get_namespace_oid("sync", false);
	Oid			relid = get_relname_relid("outbox", nsp);
	Oid			idxid = get_relname_relid("outbox_row", nsp);
	Oid			seqid = get_relname_relid("outbox_id_seq", nsp);
	Relation	rel;
	TupleDesc	desc;
	EState	   *estate;
	RangeTblEntry *rte;
	ResultRelInfo *rri;
	TupleTableSlot *search,
			   *found,
			   *slot;
	AttrNumber	a_mirror,
				a_key,
				a_cols,
				a_rid,
				a_slot,
				a_updated;
	Datum		now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());

	if (!OidIsValid(relid) || !OidIsValid(idxid) || !OidIsValid(seqid))
		elog(ERROR, "sync: the outbox is missing; reinstall the extension");
	rel = table_open(relid, RowExclusiveLock);
	if (rel->trigdesc != NULL)
	{
		table_close(rel, RowExclusiveLock);
		return false;
	}
	desc = RelationGetDescr(rel);
	a_mirror = outbox_attnum(desc, "mirror");
	a_key = outbox_attnum(desc, "local_key");
	a_cols = outbox_attnum(desc, "columns");
	a_rid = outbox_attnum(desc, "remote_id");
	a_slot = outbox_attnum(desc, "slot");
	a_updated = outbox_attnum(desc, "updated_at");

	/* entries written earlier in this command must be visible to the probe */
	CommandCounterIncrement();

	/* what the executor needs to insert and update with index maintenance */
	estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(estate, list_make1(rte));
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	estate->es_output_cid = GetCurrentCommandId(true);
	estate->es_snapshot = GetActiveSnapshot();
	ExecOpenIndices(rri, false);

	search = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);
	found = table_slot_create(rel, &estate->es_tupleTable);
	slot = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);

	ExecClearTuple(search);
	memset(search->tts_isnull, true, sizeof(bool) * desc->natts);
	search->tts_values[a_mirror - 1] = args[0];
	search->tts_isnull[a_mirror - 1] = false;
	search->tts_values[a_key - 1] = args[1];
	search->tts_isnull[a_key - 1] = false;
	search->tts_values[a_slot - 1] = Int64GetDatum(0);
	search->tts_isnull[a_slot - 1] = false;
	ExecStoreVirtualTuple(search);

	if (RelationFindReplTupleByIndex(rel, idxid, LockTupleKeyShare, search, found))
	{
		/* coalesce into the row's open entry */
		AttrNumber	a_op = outbox_attnum(desc, "op");
		bool		same,
					colsnull;
		Datum		cols;

		slot_getallattrs(found);

		/* insert + update = insert (all columns); update + update = union */
		if (DatumGetChar(found->tts_values[a_op - 1]) == 'I')
		{
			cols = (Datum) 0;
			colsnull = true;
			same = found->tts_isnull[a_cols - 1];
		}
		else
			cols = union_columns(found->tts_values[a_cols - 1], found->tts_isnull[a_cols - 1],
								 args[3], nulls[3] == 'n', &same, &colsnull);
		if (!same ||
			(nulls[4] != 'n' && (found->tts_isnull[a_rid - 1] ||
								 !datumIsEqual(found->tts_values[a_rid - 1], args[4], false, -1))))
		{
			ExecClearTuple(slot);
			memcpy(slot->tts_values, found->tts_values, sizeof(Datum) * desc->natts);
			memcpy(slot->tts_isnull, found->tts_isnull, sizeof(bool) * desc->natts);
			slot->tts_values[a_cols - 1] = cols;
			slot->tts_isnull[a_cols - 1] = colsnull;
			if (nulls[4] != 'n')
			{
				slot->tts_values[a_rid - 1] = args[4];
				slot->tts_isnull[a_rid - 1] = false;
			}
			slot->tts_values[a_updated - 1] = now;
			ExecStoreVirtualTuple(slot);
			ExecSimpleRelationUpdate(rri, estate, NULL, found, slot);
		}
		/* else already covered; the lock keeps the entry open until commit */
	}
	else
	{
		ExecClearTuple(slot);
		memset(slot->tts_isnull, true, sizeof(bool) * desc->natts);
#define SET(name, v) \
	do { AttrNumber att_ = outbox_attnum(desc, name); \
		 slot->tts_values[att_ - 1] = (v); slot->tts_isnull[att_ - 1] = false; } while (0)
		SET("id", Int64GetDatum(nextval_internal(seqid, false)));
		SET("mirror", args[0]);
		SET("local_key", args[1]);
		SET("op", args[2]);
		if (nulls[3] != 'n')
			SET("columns", args[3]);
		if (nulls[4] != 'n')
			SET("remote_id", args[4]);
		SET("state", CStringGetTextDatum("pending"));
		SET("slot", Int64GetDatum(0));
		SET("attempts", Int32GetDatum(0));
		SET("next_attempt_at", now);
		SET("created_at", now);
		SET("updated_at", now);
#undef SET
		ExecStoreVirtualTuple(slot);
		ExecSimpleRelationInsert(rri, estate, slot);
	}

	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	return true;
}

Datum
sync_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	CaptureInfo *info;
	TupleDesc	desc;
	HeapTuple	row;
	char	   *key;
	bool		isnull;
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	OwnerState	st;
	int			rc;

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

	desc = RelationGetDescr(td->tg_relation);
	row = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;

	args[0] = Int32GetDatum(info->mirror);

	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		Datum	   *changed = palloc(sizeof(Datum) * Max(1, info->ncols));
		int			nchanged = 0;
		int			i;
		char	   *oldkey;

		for (i = 0; i < info->ncols; i++)
			if (column_changed(td->tg_trigtuple, td->tg_newtuple, desc, info->atts[i]))
				changed[nchanged++] = info->names[i];

		key = attr_text(row, desc, info->key_att, &isnull);
		oldkey = attr_text(td->tg_trigtuple, desc, info->key_att, &isnull);
		if (key == NULL || oldkey == NULL || strcmp(key, oldkey) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot change the primary key of a row of mirrored table \"%s\"",
							RelationGetRelationName(td->tg_relation)),
					 errdetail("sync identifies queued writes by the key column \"%s\".",
							   td->tg_trigger->tgargs[1]),
					 errhint("Delete the row and insert it with the new key instead.")));
		if (nchanged == 0)
			return PointerGetDatum(NULL);	/* nothing pushable changed */
		args[1] = CStringGetTextDatum(key);
		args[2] = CharGetDatum('U');
		args[3] = PointerGetDatum(construct_array(changed, nchanged, NAMEOID,
												  NAMEDATALEN, false, TYPALIGN_CHAR));
	}
	else
	{
		key = attr_text(row, desc, info->key_att, &isnull);
		if (key == NULL)
			return PointerGetDatum(NULL);	/* cannot happen for a primary key */
		args[1] = CStringGetTextDatum(key);
		args[2] = CharGetDatum(TRIGGER_FIRED_BY_INSERT(td->tg_event) ? 'I' : 'D');
		nulls[3] = 'n';
	}

	{
		char	   *rid = attr_text(row, desc, info->remote_id_att, &isnull);

		if (rid != NULL)
			args[4] = CStringGetTextDatum(rid);
		else
			nulls[4] = 'n';

		/*
		 * A row inserted with its remote ID already set adopts an existing
		 * remote record: push it as an update of every column.
		 */
		if (TRIGGER_FIRED_BY_INSERT(td->tg_event) && rid != NULL)
			args[2] = CharGetDatum('U');
	}

	/* the changed columns, sorted, as coalescing expects */
	if (nulls[3] != 'n')
	{
		Datum	   *elems;
		int			nelems;

		deconstruct_array(DatumGetArrayTypeP(args[3]), NAMEOID, NAMEDATALEN, false,
						  TYPALIGN_CHAR, &elems, NULL, &nelems);
		qsort(elems, nelems, sizeof(Datum), name_cmp);
		args[3] = PointerGetDatum(construct_array(elems, nelems, NAMEOID, NAMEDATALEN,
												  false, TYPALIGN_CHAR));
	}

	if (!TRIGGER_FIRED_BY_DELETE(td->tg_event) && queue_upsert(args, nulls))
	{
		sync_wake_at_commit();
		return PointerGetDatum(NULL);
	}

	run_as_owner(&st);

	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed: %s", SPI_result_code_string(rc));
	prepare_plans();

	if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		bool		was_insert = false;

		rc = SPI_execute_plan(unqueue_plan, args, nulls, false, 0);
		if (rc != SPI_OK_DELETE_RETURNING)
			elog(ERROR, "sync: outbox delete failed: %s", SPI_result_code_string(rc));
		if (SPI_processed > 0)
		{
			bool		opnull;
			Datum		op = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &opnull);

			was_insert = (DatumGetChar(op) == 'I');
		}
		/* insert + delete = nothing, unless an earlier attempt is in flight */
		if (!was_insert || nulls[4] == ' ')
		{
			Datum		dargs[3] = {args[0], args[1], args[4]};
			char		dnulls[3] = {' ', ' ', nulls[4]};

			rc = SPI_execute_plan(delete_plan, dargs, dnulls, false, 0);
			if (rc != SPI_OK_INSERT)
				elog(ERROR, "sync: outbox insert failed: %s", SPI_result_code_string(rc));
		}
	}
	else
	{
		rc = SPI_execute_plan(upsert_plan, args, nulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "sync: outbox insert failed: %s", SPI_result_code_string(rc));
	}

	SPI_finish();
	end_run_as_owner(&st);

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
