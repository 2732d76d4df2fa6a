/*
 * secret.h — secrets given as files: a secret option X (whatever the
 * provider's is_secret says) may instead be given as X_file, the absolute
 * path of a file readable by the server's OS user.  The file is read when
 * the connection is loaded, so its content never appears in SQL text.
 */
#ifndef SYNC_SECRET_H
#define SYNC_SECRET_H

#include "lib/stringinfo.h"

#include "provider.h"

/* Largest secret file read (bytes). */
#define SECRET_FILE_MAX 65536

/* GUC sync.secret_directory: if set, every *_file secret lives below it. */
extern char *sync_secret_directory;
extern void secret_define_gucs(void);

/*
 * Check the X_file options of a connection's options document: a string,
 * an absolute path (below sync.secret_directory if set), no X beside it.
 * With old != NULL, a path that is new or differs from old's at the same
 * place needs the privilege to read server files (superuser or
 * pg_read_server_files); with old == NULL every path does.
 * conn_name may be NULL (in messages).
 */
extern void secret_check_files(const SyncProvider *p, SJson *options,
							   SJson *old, const char *conn_name);

/*
 * A copy of options with every X_file replaced by X, the file's content
 * (trailing newline trimmed).  If paths is given, the path of each file
 * read is appended to it (for secret_stamp).
 * ERROR naming the connection and option if a file is missing, unreadable,
 * not a regular file, empty, too large or not text; never its content.
 */
extern SJson *secret_resolve_files(const SyncProvider *p, SJson *options,
								   const char *conn_name, List **paths);

/* The paths of the X_file options (for secret_stamp), without reading them. */
extern List *secret_file_paths(const SyncProvider *p, SJson *options);

/*
 * The identity of the files (palloc'd text): changes when a file is
 * replaced, rewritten, removed or its permissions change.
 */
extern char *secret_stamp(List *paths);

#endif							/* SYNC_SECRET_H */
