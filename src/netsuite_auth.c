/*
 * netsuite_auth.c — NetSuite authentication.
 *
 * Token-based authentication (OAuth 1.0a, RFC 5849, HMAC-SHA256): every
 * request is signed with a fresh nonce and timestamp, retries included.
 * The base string is METHOD & enc(scheme://host[:port]/path) &
 * enc(sorted parameters): the oauth_* parameters without realm and
 * signature, plus the URL's query parameters; a JSON body is not signed.
 * The key is enc(consumer_secret) & enc(token_secret).  realm (the account
 * in upper case) is in the header only.
 *
 * OAuth 2.0 machine-to-machine (client credentials with a JWT assertion,
 * the primary mode: NetSuite takes no new TBA integrations from 2027.1).
 */
#include "postgres.h"

#include <ctype.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/base64.h"
#include "lib/stringinfo.h"
#include "port.h"

#include "netsuite.h"

#define bad_option(key, why) provider_bad_option("NetSuite", key, why)

static const char *const tba_keys[] = {
	"consumer_key", "consumer_secret", "token_id", "token_secret", NULL
};

void
ns_check_auth_options(SJson *auth)
{
	const char *type = sjson_get_string(auth, "type");
	int			i;

	if (type == NULL)
		bad_option("auth.type", "required: \"m2m\" or \"tba\"");
	if (strcmp(type, "tba") == 0)
	{
		for (i = 0; tba_keys[i]; i++)
			if (sjson_get_string(auth, tba_keys[i]) == NULL &&
				sjson_get_string(auth, psprintf("%s_file", tba_keys[i])) == NULL)
				bad_option(psprintf("auth.%s", tba_keys[i]), "required for token-based authentication");
		return;
	}
	if (strcmp(type, "m2m") == 0)
		bad_option("auth.type", "\"m2m\" is not available yet in this build; use \"tba\"");
	bad_option("auth.type", "must be \"m2m\" (OAuth 2.0 client credentials) or \"tba\" (token-based)");
}

bool
ns_is_secret(const char *path)
{
	return strcmp(path, "auth.consumer_secret") == 0 ||
		strcmp(path, "auth.token_secret") == 0 ||
		strcmp(path, "auth.private_key") == 0;
}

void
ns_authenticate(SyncConnection *conn)
{
	SJson	   *auth = sjson_get(conn->options, "auth");
	const char *type = sjson_get_string(auth, "type");

	(void) ns_state(conn);
	if (conn->max_in_flight <= 0)
	{
		int64		c = sjson_int(sjson_get(conn->options, "concurrency"), 0);

		conn->max_in_flight = c > 0 ? (int) c : Max(1, ns_state(conn)->concurrency_limit - 1);
	}
	if (strcmp(type, "tba") == 0)
	{
		/* nothing to obtain: each request is signed (ns_sign) */
		conn->access_token = MemoryContextStrdup(conn->cxt, "tba");
		conn->token_expires = 0;
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("connection \"%s\": NetSuite auth type \"%s\" is not available in this build",
					conn->name, type)));
}

/* ---------------------------------------------------------------------
 * token-based authentication
 * --------------------------------------------------------------------- */

typedef struct OAuthParam
{
	char	   *name;			/* encoded */
	char	   *value;			/* encoded */
} OAuthParam;

static int
param_cmp(const void *a, const void *b)
{
	const OAuthParam *x = (const OAuthParam *) a;
	const OAuthParam *y = (const OAuthParam *) b;
	int			c = strcmp(x->name, y->name);

	return c != 0 ? c : strcmp(x->value, y->value);
}

/* Percent-decoding of a query component ('+' is a space, as in forms). */
static char *
url_decode(const char *s, int len)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < len; i++)
	{
		if (s[i] == '+')
			appendStringInfoChar(&buf, ' ');
		else if (s[i] == '%' && i + 2 < len &&
				 isxdigit((unsigned char) s[i + 1]) && isxdigit((unsigned char) s[i + 2]))
		{
			char		hex[3] = {s[i + 1], s[i + 2], '\0'};

			appendStringInfoChar(&buf, (char) strtol(hex, NULL, 16));
			i += 2;
		}
		else
			appendStringInfoChar(&buf, s[i]);
	}
	return buf.data;
}

/* scheme://host[:port]/path in lower-case scheme and host, default port dropped */
static char *
base_uri(const char *url, const char **query)
{
	const char *sep = strstr(url, "://");
	const char *host = sep ? sep + 3 : url;
	const char *path = strchr(host, '/');
	const char *q = strchr(url, '?');
	char	   *scheme = sep ? pnstrdup(url, sep - url) : pstrdup("https");
	char	   *authority = path ? pnstrdup(host, path - host) : pstrdup(host);
	char	   *p;
	int			plen;

	for (p = scheme; *p; p++)
		*p = pg_tolower((unsigned char) *p);
	for (p = authority; *p; p++)
		*p = pg_tolower((unsigned char) *p);
	if ((strcmp(scheme, "https") == 0 && (p = strrchr(authority, ':')) && strcmp(p, ":443") == 0) ||
		(strcmp(scheme, "http") == 0 && (p = strrchr(authority, ':')) && strcmp(p, ":80") == 0))
		*p = '\0';
	*query = q ? q + 1 : NULL;
	if (path == NULL || (q && q < path))
		return psprintf("%s://%s/", scheme, authority);
	plen = q ? (int) (q - path) : (int) strlen(path);
	return psprintf("%s://%s%.*s", scheme, authority, plen, path);
}

static char *
nonce(void)
{
	static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char raw[20];
	char	   *out = palloc(sizeof(raw) + 1);
	int			i;

	if (!pg_strong_random(raw, sizeof(raw)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random OAuth nonce")));
	for (i = 0; i < (int) sizeof(raw); i++)
		out[i] = alnum[raw[i] % (sizeof(alnum) - 1)];
	out[sizeof(raw)] = '\0';
	return out;
}

/* The base64 HMAC-SHA256 of text under key. */
static char *
hmac_sha256_b64(const char *key, const char *text)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char	   *out;
	int			n;

	if (HMAC(EVP_sha256(), key, strlen(key), (const unsigned char *) text, strlen(text),
			 mac, &maclen) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute an HMAC-SHA256 signature")));
	out = palloc(pg_b64_enc_len(maclen) + 1);
	n = pg_b64_encode((const char *) mac, maclen, out, pg_b64_enc_len(maclen));
	if (n < 0)
		elog(ERROR, "sync: base64 encoding failed");
	out[n] = '\0';
	return out;
}

/* Build the Authorization header value for one attempt of req. */
static char *
tba_header(SyncConnection *conn, const HttpRequest *req)
{
	SJson	   *auth = sjson_get(conn->options, "auth");
	const char *query;
	char	   *uri = base_uri(req->url, &query);
	char	   *ts = psprintf("%ld", (long) time(NULL));
	char	   *nc = nonce();
	OAuthParam *params;
	int			n = 0,
				cap = 8;
	StringInfoData norm,
				base,
				hdr;
	char	   *key,
			   *sig;
	int			i;

	params = palloc(sizeof(OAuthParam) * cap);
#define ADD_PARAM(nm, val) do { \
		if (n == cap) params = repalloc(params, sizeof(OAuthParam) * (cap *= 2)); \
		params[n].name = http_url_encode(nm); params[n].value = http_url_encode(val); n++; \
	} while (0)
	ADD_PARAM("oauth_consumer_key", sjson_get_string(auth, "consumer_key"));
	ADD_PARAM("oauth_token", sjson_get_string(auth, "token_id"));
	ADD_PARAM("oauth_signature_method", "HMAC-SHA256");
	ADD_PARAM("oauth_timestamp", ts);
	ADD_PARAM("oauth_nonce", nc);
	ADD_PARAM("oauth_version", "1.0");
	while (query && *query)
	{
		const char *amp = strchr(query, '&');
		int			len = amp ? (int) (amp - query) : (int) strlen(query);
		const char *eq = memchr(query, '=', len);

		if (len > 0)
		{
			char	   *name = url_decode(query, eq ? (int) (eq - query) : len);
			char	   *value = eq ? url_decode(eq + 1, len - (int) (eq - query) - 1) : pstrdup("");

			ADD_PARAM(name, value);
		}
		query = amp ? amp + 1 : NULL;
	}
#undef ADD_PARAM
	qsort(params, n, sizeof(OAuthParam), param_cmp);
	initStringInfo(&norm);
	for (i = 0; i < n; i++)
		appendStringInfo(&norm, "%s%s=%s", i ? "&" : "", params[i].name, params[i].value);

	initStringInfo(&base);
	appendStringInfo(&base, "%s&%s&%s", req->method, http_url_encode(uri), http_url_encode(norm.data));
	key = psprintf("%s&%s", http_url_encode(sjson_get_string(auth, "consumer_secret")),
				   http_url_encode(sjson_get_string(auth, "token_secret")));
	sig = hmac_sha256_b64(key, base.data);
	memset(key, 0, strlen(key));

	initStringInfo(&hdr);
	appendStringInfo(&hdr,
					 "OAuth realm=\"%s\", oauth_consumer_key=\"%s\", oauth_token=\"%s\", "
					 "oauth_signature_method=\"HMAC-SHA256\", oauth_timestamp=\"%s\", "
					 "oauth_nonce=\"%s\", oauth_version=\"1.0\", oauth_signature=\"%s\"",
					 ns_state(conn)->realm,
					 http_url_encode(sjson_get_string(auth, "consumer_key")),
					 http_url_encode(sjson_get_string(auth, "token_id")),
					 ts, nc, http_url_encode(sig));
	return hdr.data;
}

/* Set (or replace, on a retry) a request's Authorization header. */
static void
set_authorization(HttpRequest *req, char *value)
{
	ListCell   *lc;

	foreach(lc, req->headers)
	{
		HttpHeader *h = (HttpHeader *) lfirst(lc);

		if (pg_strcasecmp(h->name, "Authorization") == 0)
		{
			h->value = value;
			return;
		}
	}
	http_add_header(req, "Authorization", value);
}

void
ns_sign(SyncConnection *conn, HttpRequest *req)
{
	const char *type = sjson_get_string(sjson_get(conn->options, "auth"), "type");

	if (strcmp(type, "tba") == 0)
		set_authorization(req, tba_header(conn, req));
	else
		provider_sign_bearer(conn, req);
}
