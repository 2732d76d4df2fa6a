/*
 * deparse.c — every SQL text the engine runs on a user's table, in one
 * place (as postgres_fdw's deparse.c owns its SQL): the claim's value
 * query, parent lookups, write-back, row locks, reconcile, adoption, the
 * upserts and the deletes.  Identifiers are quoted, operators and functions
 * schema-qualified; values always travel as parameters ($n), never in the
 * text.  The statements run as the table's owner with search_path pinned
 * to pg_catalog (owner_begin).  Results are palloc'd in the current context.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "apply_bulk.h"
#include "engine_int.h"
#include "provider.h"

/* ---------------------------------------------------------------------
 * push
 * --------------------------------------------------------------------- */

/*
 * The remote IDs of a parent table's rows of keys $1 (text[]): key, remote
 * ID.  (Resolving "@key" references.)
 */
char *
deparse_ref_lookup(const char *parent_table, const char *key_column,
				   const char *remote_id_column, const char *key_type)
{
	return psprintf("SELECT u.k, p.%s FROM pg_catalog.unnest($1::pg_catalog.text[]) AS u(k) "
					"JOIN %s p ON p.%s OPERATOR(pg_catalog.=) u.k::%s",
					quote_identifier(remote_id_column), parent_table,
					quote_identifier(key_column), key_type);
}

/*
 * The values of claimed rows, keys $1 (text[]): key, remote ID, then one
 * column per field, as JSON (to_json: typed, ISO dates, arrays); NULL for
 * the ID and stamp fields; last the row version's xmin, which tells the
 * recording whether the row is still the one read here.
 */
char *
deparse_claim_values(SyncMirror *m)
{
	StringInfoData sql;
	int			j;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s::pg_catalog.text, %s", quote_identifier(m->key_column),
					 quote_identifier(m->remote_id_column));
	for (j = 0; j < m->nfields; j++)
	{
		if (m->fields[j].role != FIELD_DATA)
			appendStringInfoString(&sql, ", NULL");
		else
			appendStringInfo(&sql, ", pg_catalog.to_json(%s)::pg_catalog.text",
							 quote_identifier(m->columns[j]));
	}
	appendStringInfo(&sql, ", xmin::pg_catalog.text FROM %s WHERE %s OPERATOR(pg_catalog.=) ANY ($1::%s[])",
					 m->qualified_table, quote_identifier(m->key_column), m->key_type);
	return sql.data;
}

/*
 * Write-back: rows other than ours ($2, text[] keys) that hold the new
 * remote IDs ($1, text[]) already: remote ID, key.
 */
char *
deparse_wb_conflicts(SyncMirror *m)
{
	return psprintf("SELECT t.%s, t.%s::pg_catalog.text FROM %s t "
					"JOIN ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])) AS u(rid, key) "
					"ON t.%s OPERATOR(pg_catalog.=) u.rid AND t.%s OPERATOR(pg_catalog.<>) u.key::%s",
					quote_identifier(m->remote_id_column), quote_identifier(m->key_column),
					m->qualified_table, quote_identifier(m->remote_id_column),
					quote_identifier(m->key_column), m->key_type);
}

/* Write-back: the echo rows of remote IDs $1 (text[]) go. */
char *
deparse_wb_delete_echoes(SyncMirror *m)
{
	return psprintf("DELETE FROM %s t WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])",
					m->qualified_table, quote_identifier(m->remote_id_column));
}

/*
 * Write-back: rows of keys $3 take remote IDs $1 and stamps $2 (all text[]).
 * With `kept`, only rows whose version is still the one claimed (xmin $4,
 * text[]), returning their keys.
 */
char *
deparse_wb_ids(SyncMirror *m, bool kept)
{
	return psprintf("UPDATE %s t SET %s = COALESCE(u.rid, t.%s), "
					"  %s = COALESCE(u.stamp::pg_catalog.timestamptz, t.%s) "
					"FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[])%s) "
					"  AS u(rid, stamp, key%s) "
					"WHERE t.%s OPERATOR(pg_catalog.=) u.key::%s%s",
					m->qualified_table, quote_identifier(m->remote_id_column),
					quote_identifier(m->remote_id_column),
					quote_identifier(m->stamp_column), quote_identifier(m->stamp_column),
					kept ? ", pg_catalog.unnest($4::pg_catalog.text[])" : "",
					kept ? ", xmin" : "",
					quote_identifier(m->key_column), m->key_type,
					kept ? " AND t.xmin OPERATOR(pg_catalog.=) u.xmin::pg_catalog.xid RETURNING u.key" : "");
}

/* Write-back: the row of key $2 holds its parent's remote ID $1 in `field`. */
char *
deparse_wb_reference(SyncMirror *m, int field)
{
	return psprintf("UPDATE %s SET %s = $1 WHERE %s OPERATOR(pg_catalog.=) $2::%s",
					m->qualified_table, quote_identifier(m->columns[field]),
					quote_identifier(m->key_column), m->key_type);
}

/* ---------------------------------------------------------------------
 * pull and apply
 * --------------------------------------------------------------------- */

/*
 * Rows of the page's remote IDs ($1 text[]): remote ID and key, locked by
 * `lock` ("", "FOR NO KEY UPDATE OF t", "... SKIP LOCKED").
 */
char *
deparse_lock(SyncMirror *m, const char *lock)
{
	return psprintf("SELECT t.%s, t.%s::pg_catalog.text FROM %s t "
					"WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) ORDER BY 1 %s",
					quote_identifier(m->remote_id_column), quote_identifier(m->key_column),
					m->qualified_table, quote_identifier(m->remote_id_column), lock);
}

/* Remote IDs of rows not in the live list $1 (text[]): the remote deleted them. */
char *
deparse_reconcile(SyncMirror *m)
{
	return psprintf("SELECT %s FROM %s WHERE %s IS NOT NULL "
					"AND NOT (%s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]))",
					quote_identifier(m->remote_id_column), m->qualified_table,
					quote_identifier(m->remote_id_column), quote_identifier(m->remote_id_column));
}

/*
 * Our own creates come back: the rows of keys $2 (text[]) take remote IDs
 * $1 (text[]), unless a row has that remote ID already.
 */
char *
deparse_adopt(SyncMirror *m)
{
	return psprintf("UPDATE %s t SET %s = v.rid "
					"FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])) AS v(rid, key) "
					"WHERE t.%s OPERATOR(pg_catalog.=) v.key::%s AND t.%s IS NULL "
					"  AND NOT EXISTS (SELECT 1 FROM %s d WHERE d.%s OPERATOR(pg_catalog.=) v.rid)",
					m->qualified_table, quote_identifier(m->remote_id_column),
					quote_identifier(m->key_column), m->key_type, quote_identifier(m->remote_id_column),
					m->qualified_table, quote_identifier(m->remote_id_column));
}

/* The remote deletes: rows of remote IDs $1 (text[]); returns their remote IDs. */
char *
deparse_delete(SyncMirror *m)
{
	return psprintf("DELETE FROM %s WHERE %s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) RETURNING %s",
					m->qualified_table, quote_identifier(m->remote_id_column),
					quote_identifier(m->remote_id_column));
}

/*
 * The upsert of one inbound record.  Identical rows are not touched (the
 * WHERE compares the data columns), so user triggers don't fire on noise.
 * Columns in $N (the row's pending local changes, under "local_wins") keep
 * their local value.  Fields whose authority is "local" are never written.
 */
char *
deparse_apply(SyncMirror *m, int *nparams)
{
	StringInfoData s,
				vals,
				set,
				cmp_old,
				cmp_new;
	int			p = 1,
				i;
	bool		first = true;

	initStringInfo(&s);
	initStringInfo(&vals);
	initStringInfo(&set);
	initStringInfo(&cmp_old);
	initStringInfo(&cmp_new);

	appendStringInfo(&s, "INSERT INTO %s AS t (", m->qualified_table);
	for (i = 0; i < m->nfields; i++)
	{
		const char *col = quote_identifier(m->columns[i]);

		if (strcmp(m->authority[i], "local") == 0)
		{
			p++;				/* keep parameter numbering aligned with fields */
			continue;
		}
		appendStringInfo(&s, "%s%s", first ? "" : ", ", col);
		appendStringInfo(&vals, "%s$%d::%s", first ? "" : ", ", p, m->fields[i].local_type);
		first = false;
		if (m->fields[i].role == FIELD_ID)
		{
			p++;
			continue;
		}
		if (m->fields[i].role == FIELD_STAMP)
			appendStringInfo(&set, "%s = EXCLUDED.%s, ", col, col);
		else
		{
			appendStringInfo(&set, "%s = CASE WHEN %s OPERATOR(pg_catalog.=) ANY ($%d::pg_catalog.text[]) "
							 "THEN t.%s ELSE EXCLUDED.%s END, ",
							 col, quote_literal_cstr(m->columns[i]), m->nfields + 1, col, col);
			appendStringInfo(&cmp_old, "%st.%s", cmp_old.len ? ", " : "", col);
			appendStringInfo(&cmp_new, "%sCASE WHEN %s OPERATOR(pg_catalog.=) ANY ($%d::pg_catalog.text[]) "
							 "THEN t.%s ELSE EXCLUDED.%s END",
							 cmp_new.len ? ", " : "", quote_literal_cstr(m->columns[i]),
							 m->nfields + 1, col, col);
		}
		p++;
	}
	/* drop the trailing ", " */
	if (set.len >= 2)
		set.data[set.len -= 2] = '\0';
	appendStringInfo(&s, ") VALUES (%s) ON CONFLICT (%s) DO UPDATE SET %s",
					 vals.data, quote_identifier(m->remote_id_column), set.data);
	if (cmp_old.len > 0)
		appendStringInfo(&s, " WHERE ROW(%s, NULL) IS DISTINCT FROM ROW(%s, NULL)", cmp_old.data, cmp_new.data);
	appendStringInfoString(&s, " RETURNING (xmax OPERATOR(pg_catalog.=) 0) AS inserted");
	*nparams = m->nfields + 1;
	return s.data;
}

/*
 * The set-based upsert of the records of a page that have no pending local
 * change (nearly all of them): one statement per page instead of one per
 * record.  $k is the text[] of field k's values; returns the remote ID and
 * whether the row was inserted, for the rows actually written.  (Without
 * `upsert`: the same as a plain INSERT.)
 */
static char *
apply_bulk(SyncMirror *m, int **fieldmap, int *nparams, bool upsert)
{
	StringInfoData s,
				cols,
				sel,
				un,
				set,
				cmp_old,
				cmp_new;
	int			p = 0,
				i;

	*fieldmap = palloc(sizeof(int) * Max(1, m->nfields));
	initStringInfo(&s);
	initStringInfo(&cols);
	initStringInfo(&sel);
	initStringInfo(&un);
	initStringInfo(&set);
	initStringInfo(&cmp_old);
	initStringInfo(&cmp_new);
	for (i = 0; i < m->nfields; i++)
	{
		const char *col = quote_identifier(m->columns[i]);

		if (strcmp(m->authority[i], "local") == 0)
			continue;
		(*fieldmap)[p++] = i;
		appendStringInfo(&cols, "%s%s", p > 1 ? ", " : "", col);
		appendStringInfo(&sel, "%su.f%d::%s", p > 1 ? ", " : "", p, m->fields[i].local_type);
		appendStringInfo(&un, "%spg_catalog.unnest($%d::pg_catalog.text[]) AS f%d", p > 1 ? ", " : "", p, p);
		if (m->fields[i].role == FIELD_ID)
			continue;
		appendStringInfo(&set, "%s%s = EXCLUDED.%s", set.len ? ", " : "", col, col);
		if (m->fields[i].role == FIELD_DATA)
		{
			appendStringInfo(&cmp_old, "%st.%s", cmp_old.len ? ", " : "", col);
			appendStringInfo(&cmp_new, "%sEXCLUDED.%s", cmp_new.len ? ", " : "", col);
		}
	}
	/*
	 * The arrays are unnested in the select list, in step (they are of one
	 * length): a set-returning function there yields row by row, where one
	 * in FROM (ROWS FROM) would first copy all its rows into a tuplestore.
	 */
	appendStringInfo(&s, "INSERT INTO %s AS t (%s) SELECT %s FROM (SELECT %s) AS u",
					 m->qualified_table, cols.data, sel.data, un.data);
	if (upsert && set.len == 0)
		appendStringInfo(&s, " ON CONFLICT (%s) DO NOTHING", quote_identifier(m->remote_id_column));
	else if (upsert)
	{
		appendStringInfo(&s, " ON CONFLICT (%s) DO UPDATE SET %s",
						 quote_identifier(m->remote_id_column), set.data);
		if (cmp_old.len > 0)
			appendStringInfo(&s, " WHERE ROW(%s, NULL) IS DISTINCT FROM ROW(%s, NULL)",
							 cmp_old.data, cmp_new.data);
	}
	appendStringInfo(&s, " RETURNING t.%s::pg_catalog.text, (t.xmax OPERATOR(pg_catalog.=) 0)",
					 quote_identifier(m->remote_id_column));
	*nparams = p;
	return s.data;
}

char *
deparse_apply_bulk(SyncMirror *m, int **fieldmap, int *nparams)
{
	return apply_bulk(m, fieldmap, nparams, true);
}

/*
 * The same rows by a plain INSERT (no ON CONFLICT), for records that have
 * no row yet (a backfill's): same parameters, same result columns.
 */
char *
deparse_apply_bulk_insert(SyncMirror *m)
{
	int		   *fieldmap;
	int			nparams;

	return apply_bulk(m, &fieldmap, &nparams, false);
}
