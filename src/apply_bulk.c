/*
 * apply_bulk.c — what a page's apply writes besides the table, written the
 * cheapest way PostgreSQL allows (issue #13: the apply of a page close to
 * a plain upsert of the same rows).
 *
 * The journal rows — still one per record, in sync.journal, as before —
 * go in by PostgreSQL's own COPY FROM (CopyFrom, fed from memory as
 * logical replication's initial table copy is): rows inserted in batches
 * (heap_multi_insert), no statement to parse and plan, no arrays to
 * unnest.  Defaults (the identity, `at`), constraints, indexes and any
 * trigger on sync.journal apply as for an INSERT.  It is skipped — the
 * caller then runs its INSERT, with that statement's checks and errors —
 * when the current user may not insert into the whole table, when
 * row-level security applies to it (COPY FROM does not support it), or in
 * a read-only transaction.
 *
 * The values hash of each record (values_hash() in catalog.c) with one
 * MD5 context for the page instead of one per record.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/copy.h"
#include "common/md5.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"

#include "apply_bulk.h"

/* the COPY data being read (CopyFrom's callback takes no argument) */
static StringInfo journal_data;
static int	journal_pos;

static int
journal_read(void *outbuf, int minread, int maxread)
{
	int			n = Min(maxread, journal_data->len - journal_pos);

	memcpy(outbuf, journal_data->data + journal_pos, n);
	journal_pos += n;
	return n;
}

/* One field in COPY's text format: \N for NULL, escapes for the rest. */
static void
copy_field(StringInfo buf, const char *v, char sep)
{
	const char *p;

	if (v == NULL)
		appendBinaryStringInfo(buf, "\\N", 2);
	else
		for (p = v; *p; p++)
		{
			switch (*p)
			{
				case '\\':
					appendBinaryStringInfo(buf, "\\\\", 2);
					break;
				case '\n':
					appendBinaryStringInfo(buf, "\\n", 2);
					break;
				case '\r':
					appendBinaryStringInfo(buf, "\\r", 2);
					break;
				case '\t':
					appendBinaryStringInfo(buf, "\\t", 2);
					break;
				default:
					appendStringInfoCharMacro(buf, *p);
			}
		}
	appendStringInfoCharMacro(buf, sep);
}

bool
apply_journal_copy(int mirror, int n, char **op, char **rid, char **hash,
				   char **result, char **detail)
{
	Oid			relid = get_relname_relid("journal", get_namespace_oid("sync", false));
	Relation	rel;
	ParseState *pstate;
	CopyFromState cstate;
	StringInfoData data;
	char		mirror_text[16];
	List	   *cols;
	List	   *options;
	int			i;

	if (!OidIsValid(relid) || XactReadOnly ||
		pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK ||
		check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		return false;

	initStringInfo(&data);
	snprintf(mirror_text, sizeof(mirror_text), "%d", mirror);
	for (i = 0; i < n; i++)
	{
		appendStringInfoString(&data, mirror_text);
		appendBinaryStringInfo(&data, "\tin\t", 4);
		copy_field(&data, op[i], '\t');
		copy_field(&data, rid[i], '\t');
		copy_field(&data, hash[i], '\t');
		copy_field(&data, result[i], '\t');
		copy_field(&data, detail[i], '\n');
	}

	rel = table_open(relid, RowExclusiveLock);
	pstate = make_parsestate(NULL);
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	cols = list_make5(makeString("mirror"), makeString("direction"), makeString("op"),
					  makeString("remote_id"), makeString("values_hash"));
	cols = lappend(lappend(cols, makeString("result")), makeString("detail"));
	/* the data is in the database's encoding, whatever the client's */
	options = list_make1(makeDefElem("encoding",
									 (Node *) makeString(pstrdup(GetDatabaseEncodingName())), -1));
	journal_data = &data;
	journal_pos = 0;
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, journal_read, cols, options);
	(void) CopyFrom(cstate);
	EndCopyFrom(cstate);
	journal_data = NULL;
	free_parsestate(pstate);
	table_close(rel, NoLock);
	pfree(data.data);
	return true;
}

/*
 * values_hash() (catalog.c) of many records: the same MD5 of the values
 * (NULL as \N, each followed by \x1f), with one digest context and one
 * buffer for all, where values_hash() sets up both for each record.
 */
void
values_hasher_init(ValuesHasher *h)
{
	h->ctx = pg_cryptohash_create(PG_MD5);
	initStringInfo(&h->buf);
}

char *
values_hasher_hash(ValuesHasher *h, char **values, int n)
{
	uint8		digest[MD5_DIGEST_LENGTH];
	char	   *hex;
	int			i;

	resetStringInfo(&h->buf);
	for (i = 0; i < n; i++)
	{
		appendStringInfoString(&h->buf, values[i] ? values[i] : "\\N");
		appendStringInfoCharMacro(&h->buf, '\x1f');
	}
	if (h->ctx == NULL ||
		pg_cryptohash_init(h->ctx) < 0 ||
		pg_cryptohash_update(h->ctx, (uint8 *) h->buf.data, h->buf.len) < 0 ||
		pg_cryptohash_final(h->ctx, digest, sizeof(digest)) < 0)
		return NULL;
	hex = palloc(MD5_DIGEST_LENGTH * 2 + 1);
	for (i = 0; i < MD5_DIGEST_LENGTH; i++)
	{
		hex[i * 2] = "0123456789abcdef"[digest[i] >> 4];
		hex[i * 2 + 1] = "0123456789abcdef"[digest[i] & 0x0f];
	}
	hex[MD5_DIGEST_LENGTH * 2] = '\0';
	return hex;
}

void
values_hasher_end(ValuesHasher *h)
{
	if (h->ctx != NULL)
		pg_cryptohash_free(h->ctx);
	h->ctx = NULL;
	pfree(h->buf.data);
}
