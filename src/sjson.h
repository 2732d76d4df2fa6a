/*
 * sjson.h — the only door to json-c.
 *
 * json-c's `json_object` type collides with PostgreSQL's json_object()
 * (utils/fmgrprotos.h), so no other translation unit includes json-c.
 *
 * Lifetime: a tree made by sjson_parse() or sjson_new_object/array() is a
 * *root*; it is freed when the memory context that was current at its
 * creation is reset or deleted (a reset callback drops json-c's reference),
 * so an ERROR thrown while a tree is alive leaks nothing.  Nodes reached
 * from a root, or added to one with the sjson_add_* / sjson_append_*
 * functions, are borrowed: they live as long as their root.
 */
#ifndef SYNC_SJSON_H
#define SYNC_SJSON_H

#include "postgres.h"

typedef struct SJson SJson;

typedef enum SJsonType
{
	SJSON_NULL = 0,				/* JSON null, or absent (a NULL SJson *) */
	SJSON_BOOL,
	SJSON_INT,
	SJSON_DOUBLE,
	SJSON_STRING,
	SJSON_OBJECT,
	SJSON_ARRAY
} SJsonType;

/* parsing; NULL and a palloc'd *err on malformed input */
extern SJson *sjson_parse(const char *buf, size_t len, char **err);

/* reading (all NULL-safe) */
extern SJsonType sjson_type(const SJson *v);
extern SJson *sjson_get(const SJson *obj, const char *key);	/* NULL if absent or null */
extern bool sjson_has_key(const SJson *obj, const char *key);
extern int	sjson_array_length(const SJson *arr);
extern SJson *sjson_array_get(const SJson *arr, int i);
extern const char *sjson_string(const SJson *v);	/* NULL unless a string */
/* Was this string invalid UTF-8 or holding a NUL, repaired (U+FFFD) when parsed? */
extern bool sjson_repaired(const SJson *v);
extern const char *sjson_get_string(const SJson *obj, const char *key);
extern bool sjson_bool(const SJson *v, bool dflt);
extern int64 sjson_int(const SJson *v, int64 dflt);
extern double sjson_double(const SJson *v, double dflt);
extern char *sjson_scalar_text(const SJson *v);	/* palloc'd; NULL for null */
extern int	sjson_object_keys(const SJson *obj, const char ***keys);	/* palloc'd */

/* building */
extern SJson *sjson_new_object(void);
extern SJson *sjson_new_array(void);
extern SJson *sjson_add_object(SJson *obj, const char *key);
extern SJson *sjson_add_array(SJson *obj, const char *key);
extern void sjson_add_string(SJson *obj, const char *key, const char *val);
extern void sjson_add_int(SJson *obj, const char *key, int64 val);
extern void sjson_add_double(SJson *obj, const char *key, double val);
extern void sjson_add_bool(SJson *obj, const char *key, bool val);
extern void sjson_add_number_text(SJson *obj, const char *key, const char *digits);	/* serialised as given */
extern void sjson_add_null(SJson *obj, const char *key);
extern void sjson_add_copy(SJson *obj, const char *key, const SJson *val);
extern SJson *sjson_append_object(SJson *arr);
extern void sjson_append_string(SJson *arr, const char *val);
extern void sjson_append_copy(SJson *arr, const SJson *val);

/* writing: compact JSON text, palloc'd */
extern char *sjson_serialize(const SJson *v);

/* the linked library's version, for sync.version() */
extern const char *sjson_library_version(void);

#endif							/* SYNC_SJSON_H */
