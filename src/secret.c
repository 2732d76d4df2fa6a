/*
 * secret.c — secrets given as files (see secret.h and docs/security.md).
 *
 * Reading a server file is a privilege: whoever may point a connection at
 * a file may send that file to the connection's URL.  So setting or
 * changing an X_file option takes what pg_read_file() takes, superuser or
 * membership in pg_read_server_files; sync.secret_directory (set by the
 * server's administrator) can confine the files to one directory.
 */
#include "postgres.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "catalog/pg_authid.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/guc.h"

#include "secret.h"

char	   *sync_secret_directory = NULL;

#define FILE_SUFFIX "_file"

void
secret_define_gucs(void)
{
	DefineCustomStringVariable("sync.secret_directory",
							   "Directory every secret file of a connection (options ending in _file) must be in.",
							   "Empty: any absolute path the server can read.",
							   &sync_secret_directory, "", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
}

/* "connection "x": " or "" */
static const char *
who(const char *conn_name)
{
	return conn_name ? psprintf("connection \"%s\": ", conn_name) : "";
}

/* If key is X_file and X (under prefix) is a secret, the dotted path of X. */
static char *
secret_of_file_key(const SyncProvider *p, const char *prefix, const char *key)
{
	size_t		len = strlen(key);
	size_t		slen = strlen(FILE_SUFFIX);
	char	   *base;
	char	   *path;

	if (len <= slen || strcmp(key + len - slen, FILE_SUFFIX) != 0)
		return NULL;
	base = pnstrdup(key, len - slen);
	path = prefix ? psprintf("%s.%s", prefix, base) : base;
	if (p->is_secret(path))
		return path;
	return NULL;
}

static bool
may_read_server_files(void)
{
	return superuser() || has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES);
}

/* The path must be absolute and, with sync.secret_directory, below it. */
static void
check_path(const char *path, const char *option, const char *conn_name, bool exists)
{
	char	   *real_dir;
	char	   *real_path;
	size_t		dlen;

	if (path[0] != '/')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%sconnection option \"%s\" must be an absolute path", who(conn_name), option)));
	if (sync_secret_directory == NULL || sync_secret_directory[0] == '\0')
		return;
	real_dir = realpath(sync_secret_directory, NULL);
	if (real_dir == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not resolve sync.secret_directory \"%s\": %m", sync_secret_directory)));
	real_path = realpath(path, NULL);
	if (real_path == NULL)
	{
		free(real_dir);
		if (!exists)
			return;				/* the read reports it */
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("%scould not open \"%s\" file \"%s\": %m", who(conn_name), option, path)));
	}
	dlen = strlen(real_dir);
	if (!(strncmp(real_path, real_dir, dlen) == 0 &&
		  (real_path[dlen] == '/' || (dlen == 1 && real_dir[0] == '/'))))
	{
		char	   *dir = pstrdup(real_dir);

		free(real_dir);
		free(real_path);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s\"%s\" file \"%s\" is outside sync.secret_directory", who(conn_name), option, path),
				 errdetail("sync.secret_directory is \"%s\".", dir),
				 errhint("Put the file in that directory (symbolic links are followed).")));
	}
	free(real_dir);
	free(real_path);
}

static void
check_files(const SyncProvider *p, SJson *options, SJson *old, const char *prefix,
			const char *conn_name)
{
	const char **keys;
	int			n = sjson_object_keys(options, &keys);
	int			i;

	for (i = 0; i < n; i++)
	{
		SJson	   *v = sjson_get(options, keys[i]);
		char	   *option = prefix ? psprintf("%s.%s", prefix, keys[i]) : pstrdup(keys[i]);
		char	   *secret;
		const char *path;
		const char *was;

		if (sjson_type(v) == SJSON_OBJECT)
		{
			SJson	   *o = sjson_get(old, keys[i]);

			check_files(p, v, sjson_type(o) == SJSON_OBJECT ? o : NULL, option, conn_name);
			continue;
		}
		secret = secret_of_file_key(p, prefix, keys[i]);
		if (secret == NULL)
			continue;
		path = sjson_string(v);
		if (path == NULL || path[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%sconnection option \"%s\" must be the path of a file", who(conn_name), option)));
		if (sjson_has_key(options, strrchr(secret, '.') ? strrchr(secret, '.') + 1 : secret))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%sconnection options \"%s\" and \"%s\" exclude each other", who(conn_name), secret, option),
					 errhint("Give the secret either in the options or in a file, not both.")));
		was = old ? sjson_get_string(old, keys[i]) : NULL;
		if ((was == NULL || strcmp(was, path) != 0) && !may_read_server_files())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to set connection option \"%s\"", option),
					 errdetail("Secrets read from server files can be set only by superusers or members of pg_read_server_files."),
					 errhint("Give the secret itself in \"%s\", or ask such a role to set the file.", secret)));
		check_path(path, option, conn_name, false);
	}
}

void
secret_check_files(const SyncProvider *p, SJson *options, SJson *old, const char *conn_name)
{
	check_files(p, options, old, NULL, conn_name);
}

/* The trimmed content of a secret file; ERROR on anything else. */
static char *
read_secret_file(const char *path, const char *option, const char *conn_name)
{
	int			fd;
	struct stat st;
	char	   *buf;
	int			len = 0;

	check_path(path, option, conn_name, true);
	/* O_NONBLOCK: a FIFO must not hang the backend; it is refused below */
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY | O_NONBLOCK);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("%scould not open \"%s\" file \"%s\": %m", who(conn_name), option, path),
				 errhint("The file must exist and be readable by the operating system user the server runs as.")));
	if (fstat(fd, &st) < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("%scould not stat \"%s\" file \"%s\": %m", who(conn_name), option, path)));
	if (!S_ISREG(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s\"%s\" file \"%s\" is not a regular file", who(conn_name), option, path)));
	if (st.st_size > SECRET_FILE_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s\"%s\" file \"%s\" is too large (%lld bytes)", who(conn_name), option, path,
						(long long) st.st_size),
				 errdetail("A secret file holds at most %d bytes.", SECRET_FILE_MAX)));
	buf = palloc(SECRET_FILE_MAX + 2);
	for (;;)
	{
		ssize_t		r = read(fd, buf + len, SECRET_FILE_MAX + 1 - len);

		if (r < 0)
		{
			if (errno == EINTR)
				continue;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("%scould not read \"%s\" file \"%s\": %m", who(conn_name), option, path)));
		}
		if (r == 0)
			break;
		len += r;
		if (len > SECRET_FILE_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("%s\"%s\" file \"%s\" is too large", who(conn_name), option, path),
					 errdetail("A secret file holds at most %d bytes.", SECRET_FILE_MAX)));
	}
	CloseTransientFile(fd);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	buf[len] = '\0';
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s\"%s\" file \"%s\" is empty", who(conn_name), option, path)));
	if (memchr(buf, '\0', len) != NULL || !pg_verifymbstr(buf, len, true))
	{
		/* do not leave the content around longer than needed */
		explicit_bzero(buf, len);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s\"%s\" file \"%s\" is not valid text in the database encoding",
						who(conn_name), option, path)));
	}
	return buf;
}

static void
resolve(const SyncProvider *p, SJson *src, SJson *dst, const char *prefix,
		const char *conn_name, List **paths)
{
	const char **keys;
	int			n = sjson_object_keys(src, &keys);
	int			i;

	for (i = 0; i < n; i++)
	{
		SJson	   *v = sjson_get(src, keys[i]);
		char	   *option = prefix ? psprintf("%s.%s", prefix, keys[i]) : pstrdup(keys[i]);
		char	   *secret;

		if (sjson_type(v) == SJSON_OBJECT)
		{
			resolve(p, v, sjson_add_object(dst, keys[i]), option, conn_name, paths);
			continue;
		}
		secret = secret_of_file_key(p, prefix, keys[i]);
		if (secret != NULL && sjson_string(v) != NULL)
		{
			const char *path = sjson_string(v);
			char	   *content = read_secret_file(path, option, conn_name);
			const char *leaf = strrchr(secret, '.') ? strrchr(secret, '.') + 1 : secret;

			sjson_add_string(dst, leaf, content);
			explicit_bzero(content, strlen(content));
			pfree(content);
			if (paths)
				*paths = lappend(*paths, pstrdup(path));
		}
		else
			sjson_add_copy(dst, keys[i], v);
	}
}

SJson *
secret_resolve_files(const SyncProvider *p, SJson *options, const char *conn_name, List **paths)
{
	SJson	   *out = sjson_new_object();

	resolve(p, options, out, NULL, conn_name, paths);
	return out;
}

static void
collect_paths(const SyncProvider *p, SJson *options, const char *prefix, List **paths)
{
	const char **keys;
	int			n = sjson_object_keys(options, &keys);
	int			i;

	for (i = 0; i < n; i++)
	{
		SJson	   *v = sjson_get(options, keys[i]);

		if (sjson_type(v) == SJSON_OBJECT)
			collect_paths(p, v, prefix ? psprintf("%s.%s", prefix, keys[i]) : keys[i], paths);
		else if (sjson_string(v) != NULL && secret_of_file_key(p, prefix, keys[i]) != NULL)
			*paths = lappend(*paths, pstrdup(sjson_string(v)));
	}
}

List *
secret_file_paths(const SyncProvider *p, SJson *options)
{
	List	   *paths = NIL;

	collect_paths(p, options, NULL, &paths);
	return paths;
}

char *
secret_stamp(List *paths)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, paths)
	{
		const char *path = (const char *) lfirst(lc);
		struct stat st;

		if (stat(path, &st) < 0)
			appendStringInfo(&buf, "%s:-%d;", path, errno);
		else
			appendStringInfo(&buf, "%s:%llu:%lld:%lld:%lld:%o;", path,
							 (unsigned long long) st.st_ino, (long long) st.st_size,
							 (long long) st.st_mtime, (long long) st.st_ctime,
							 (unsigned) st.st_mode);
	}
	return buf.data;
}
