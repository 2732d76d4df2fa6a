/*
 * sjson.c — wrapper around json-c; see sjson.h for the ownership rules.
 *
 * This file deliberately includes only postgres.h and utils/memutils.h from
 * PostgreSQL, never utils/builtins.h, so json-c's json_object type and
 * PostgreSQL's json_object() function never meet.
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>

#include <json-c/json.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "sjson.h"

#define J(v)	((struct json_object *) (v))
#define S(v)	((SJson *) (v))

typedef struct SJsonRoot
{
	MemoryContextCallback cb;
	struct json_object *obj;
} SJsonRoot;

static void
sjson_release(void *arg)
{
	SJsonRoot  *root = (SJsonRoot *) arg;

	if (root->obj)
		json_object_put(root->obj);
	root->obj = NULL;
}

/* Tie a fresh json-c tree to CurrentMemoryContext. */
static SJson *
sjson_adopt(struct json_object *obj)
{
	SJsonRoot  *root;

	if (obj == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building JSON")));
	/* allocate first: if palloc fails, json-c's object must not be lost */
	PG_TRY();
	{
		root = MemoryContextAllocZero(CurrentMemoryContext, sizeof(SJsonRoot));
	}
	PG_CATCH();
	{
		json_object_put(obj);
		PG_RE_THROW();
	}
	PG_END_TRY();
	root->obj = obj;
	root->cb.func = sjson_release;
	root->cb.arg = root;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &root->cb);
	return S(obj);
}

/* userdata of a string that sanitize_tree() had to repair */
static char repaired_marker;

bool
sjson_repaired(const SJson *v)
{
	return v != NULL && json_object_is_type(J(v), json_type_string) &&
		json_object_get_userdata(J(v)) == &repaired_marker;
}

/*
 * A string as PostgreSQL text can take it: invalid UTF-8 sequences and NUL
 * characters (\u0000) become U+FFFD.  NULL if the string is fine as it is.
 */
static char *
repair_utf8(const char *s, int len)
{
	StringInfoData out;
	int			i = 0;
	bool		changed = false;

	initStringInfo(&out);
	while (i < len)
	{
		unsigned char c = (unsigned char) s[i];
		int			l = (c == 0) ? 1 : pg_utf_mblen((const unsigned char *) s + i);

		if (c != 0 && i + l <= len && pg_utf8_islegal((const unsigned char *) s + i, l))
		{
			appendBinaryStringInfo(&out, s + i, l);
			i += l;
		}
		else
		{
			appendStringInfoString(&out, "\xEF\xBF\xBD");
			changed = true;
			i++;
		}
	}
	if (!changed)
	{
		pfree(out.data);
		return NULL;
	}
	return out.data;
}

/*
 * Make a parsed tree safe to read: every string valid UTF-8 without NULs
 * (repaired in place), and no integer json-c had to saturate (it keeps no
 * text for those: refused, rather than passed on as a different number).
 * json-c's nesting limit keeps the recursion shallow.
 */
static bool
sanitize_tree(struct json_object *o, char **err)
{
	switch (json_object_get_type(o))
	{
		case json_type_string:
			{
				const char *s = json_object_get_string(o);
				int			len = json_object_get_string_len(o);
				char	   *fixed;

				if (pg_verify_mbstr(PG_UTF8, s, len, true) && memchr(s, '\0', len) == NULL)
					return true;
				fixed = repair_utf8(s, len);
				if (fixed && json_object_set_string_len(o, fixed, strlen(fixed)) == 0)
				{
					*err = pstrdup("out of memory");
					return false;
				}
				/* remembered: a record holding it is set aside, not applied altered */
				json_object_set_userdata(o, &repaired_marker, NULL);
				return true;
			}
		case json_type_int:
			if (json_object_get_int64(o) == INT64_MIN ||
				(json_object_get_int64(o) == INT64_MAX && json_object_get_uint64(o) == UINT64_MAX))
			{
				*err = pstrdup("integer out of range");
				return false;
			}
			return true;
		case json_type_object:
			{
				struct json_object_iterator it = json_object_iter_begin(o);
				struct json_object_iterator end = json_object_iter_end(o);

				while (!json_object_iter_equal(&it, &end))
				{
					struct json_object *v = json_object_iter_peek_value(&it);

					if (v && !sanitize_tree(v, err))
					{
						/* say where: "auth.expires_in: integer out of range" */
						*err = psprintf("%s%s%s", json_object_iter_peek_name(&it),
										**err == '[' || strchr(*err, ':') ? "." : ": ", *err);
						return false;
					}
					json_object_iter_next(&it);
				}
				return true;
			}
		case json_type_array:
			{
				size_t		n = json_object_array_length(o);
				size_t		i;

				for (i = 0; i < n; i++)
				{
					struct json_object *v = json_object_array_get_idx(o, i);

					if (v && !sanitize_tree(v, err))
						return false;
				}
				return true;
			}
		default:
			return true;
	}
}

SJson *
sjson_parse(const char *buf, size_t len, char **err)
{
	struct json_tokener *tok;
	struct json_object *obj;
	enum json_tokener_error jerr;

	if (len > (size_t) INT_MAX)
	{
		*err = pstrdup("document too large");
		return NULL;
	}
	tok = json_tokener_new();
	if (tok == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	obj = json_tokener_parse_ex(tok, buf, (int) len);
	jerr = json_tokener_get_error(tok);
	if (obj != NULL && jerr == json_tokener_success &&
		json_tokener_get_parse_end(tok) < len)
	{
		/* trailing garbage after a complete value; allow only whitespace */
		size_t		i;

		for (i = json_tokener_get_parse_end(tok); i < len; i++)
			if (!isspace((unsigned char) buf[i]))
			{
				json_object_put(obj);
				obj = NULL;
				json_tokener_free(tok);
				*err = psprintf("unexpected data after JSON value at offset %zu", i);
				return NULL;
			}
	}
	if (obj == NULL || jerr != json_tokener_success)
	{
		if (jerr == json_tokener_continue)
			*err = pstrdup("unexpected end of JSON input");
		else
			*err = pstrdup(json_tokener_error_desc(jerr));
		if (obj)
			json_object_put(obj);
		json_tokener_free(tok);
		return NULL;
	}
	json_tokener_free(tok);
	*err = NULL;
	if (!sanitize_tree(obj, err))
	{
		json_object_put(obj);
		return NULL;
	}
	return sjson_adopt(obj);
}

SJsonType
sjson_type(const SJson *v)
{
	if (v == NULL)
		return SJSON_NULL;
	switch (json_object_get_type(J(v)))
	{
		case json_type_null:
			return SJSON_NULL;
		case json_type_boolean:
			return SJSON_BOOL;
		case json_type_int:
			return SJSON_INT;
		case json_type_double:
			return SJSON_DOUBLE;
		case json_type_string:
			return SJSON_STRING;
		case json_type_object:
			return SJSON_OBJECT;
		case json_type_array:
			return SJSON_ARRAY;
	}
	return SJSON_NULL;
}

SJson *
sjson_get(const SJson *obj, const char *key)
{
	struct json_object *val = NULL;

	if (obj == NULL || !json_object_is_type(J(obj), json_type_object))
		return NULL;
	/* json-c represents a JSON null as a NULL child */
	if (!json_object_object_get_ex(J(obj), key, &val))
		return NULL;
	return S(val);
}

bool
sjson_has_key(const SJson *obj, const char *key)
{
	if (obj == NULL || !json_object_is_type(J(obj), json_type_object))
		return false;
	return json_object_object_get_ex(J(obj), key, NULL);
}

int
sjson_array_length(const SJson *arr)
{
	if (arr == NULL || !json_object_is_type(J(arr), json_type_array))
		return 0;
	return (int) json_object_array_length(J(arr));
}

SJson *
sjson_array_get(const SJson *arr, int i)
{
	if (i < 0 || i >= sjson_array_length(arr))
		return NULL;
	return S(json_object_array_get_idx(J(arr), i));
}

const char *
sjson_string(const SJson *v)
{
	if (v == NULL || !json_object_is_type(J(v), json_type_string))
		return NULL;
	return json_object_get_string(J(v));
}

const char *
sjson_get_string(const SJson *obj, const char *key)
{
	return sjson_string(sjson_get(obj, key));
}

bool
sjson_bool(const SJson *v, bool dflt)
{
	if (v == NULL || !json_object_is_type(J(v), json_type_boolean))
		return dflt;
	return json_object_get_boolean(J(v));
}

int64
sjson_int(const SJson *v, int64 dflt)
{
	if (v == NULL)
		return dflt;
	if (json_object_is_type(J(v), json_type_int))
		return json_object_get_int64(J(v));
	if (json_object_is_type(J(v), json_type_double))
	{
		double		d = json_object_get_double(J(v));

		/* out of range (1e400000 is inf) or NaN: the cast would be undefined */
		if (!(d > -9.2e18 && d < 9.2e18))
			return dflt;
		return (int64) d;
	}
	return dflt;
}

double
sjson_double(const SJson *v, double dflt)
{
	if (v == NULL)
		return dflt;
	if (json_object_is_type(J(v), json_type_int) ||
		json_object_is_type(J(v), json_type_double))
		return json_object_get_double(J(v));
	return dflt;
}

char *
sjson_scalar_text(const SJson *v)
{
	switch (sjson_type(v))
	{
		case SJSON_NULL:
			return NULL;
		case SJSON_STRING:
			return pstrdup(json_object_get_string(J(v)));
		case SJSON_BOOL:
			return pstrdup(json_object_get_boolean(J(v)) ? "true" : "false");
		case SJSON_INT:
			return psprintf(INT64_FORMAT, (int64) json_object_get_int64(J(v)));
		case SJSON_DOUBLE:
		case SJSON_OBJECT:
		case SJSON_ARRAY:
			/* doubles keep json-c's shortest round-trip text */
			return sjson_serialize(v);
	}
	return NULL;
}

int
sjson_object_keys(const SJson *obj, const char ***keys)
{
	int			n = 0;
	struct json_object_iterator it,
				end;

	*keys = NULL;
	if (obj == NULL || !json_object_is_type(J(obj), json_type_object))
		return 0;
	*keys = palloc(sizeof(char *) * Max(1, json_object_object_length(J(obj))));
	it = json_object_iter_begin(J(obj));
	end = json_object_iter_end(J(obj));
	while (!json_object_iter_equal(&it, &end))
	{
		(*keys)[n++] = json_object_iter_peek_name(&it);
		json_object_iter_next(&it);
	}
	return n;
}

SJson *
sjson_new_object(void)
{
	return sjson_adopt(json_object_new_object());
}

SJson *
sjson_new_array(void)
{
	return sjson_adopt(json_object_new_array());
}

static void
add_owned(SJson *obj, const char *key, struct json_object *child)
{
	if (child == NULL && key != NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	/* json_object_object_add takes ownership of child, even on failure */
	if (json_object_object_add(J(obj), key, child) != 0)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
}

static void
append_owned(SJson *arr, struct json_object *child)
{
	if (child == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (json_object_array_add(J(arr), child) != 0)
	{
		json_object_put(child);
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
}

SJson *
sjson_add_object(SJson *obj, const char *key)
{
	struct json_object *child = json_object_new_object();

	add_owned(obj, key, child);
	return S(child);
}

SJson *
sjson_add_array(SJson *obj, const char *key)
{
	struct json_object *child = json_object_new_array();

	add_owned(obj, key, child);
	return S(child);
}

void
sjson_add_string(SJson *obj, const char *key, const char *val)
{
	if (val == NULL)
		sjson_add_null(obj, key);
	else
		add_owned(obj, key, json_object_new_string(val));
}

void
sjson_add_int(SJson *obj, const char *key, int64 val)
{
	add_owned(obj, key, json_object_new_int64(val));
}

void
sjson_add_double(SJson *obj, const char *key, double val)
{
	add_owned(obj, key, json_object_new_double(val));
}

void
sjson_add_bool(SJson *obj, const char *key, bool val)
{
	add_owned(obj, key, json_object_new_boolean(val));
}

void
sjson_add_number_text(SJson *obj, const char *key, const char *digits)
{
	/* keeps every digit of a numeric: serialised exactly as `digits` */
	add_owned(obj, key, json_object_new_double_s(strtod(digits, NULL), digits));
}

void
sjson_add_null(SJson *obj, const char *key)
{
	/* json-c represents JSON null as a NULL child */
	if (json_object_object_add(J(obj), key, NULL) != 0)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
}

static struct json_object *
deep_copy(const SJson *val)
{
	struct json_object *copy = NULL;

	if (val == NULL)
		return NULL;
	if (json_object_deep_copy(J(val), &copy, NULL) != 0)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	return copy;
}

void
sjson_add_copy(SJson *obj, const char *key, const SJson *val)
{
	if (val == NULL || sjson_type(val) == SJSON_NULL)
		sjson_add_null(obj, key);
	else
		add_owned(obj, key, deep_copy(val));
}

SJson *
sjson_append_object(SJson *arr)
{
	struct json_object *child = json_object_new_object();

	append_owned(arr, child);
	return S(child);
}

void
sjson_append_string(SJson *arr, const char *val)
{
	append_owned(arr, json_object_new_string(val));
}

void
sjson_append_copy(SJson *arr, const SJson *val)
{
	append_owned(arr, deep_copy(val));
}

char *
sjson_serialize(const SJson *v)
{
	if (v == NULL)
		return pstrdup("null");
	return pstrdup(json_object_to_json_string_ext(J(v),
												  JSON_C_TO_STRING_PLAIN |
												  JSON_C_TO_STRING_NOSLASHESCAPE));
}

const char *
sjson_library_version(void)
{
	return json_c_version();
}
