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
 * OAuth 2.0 machine-to-machine (M2M, the primary mode: NetSuite takes no
 * new TBA integrations from 2027.1): the client credentials grant with a
 * JWT assertion (RFC 7523) signed by the private key of the certificate
 * uploaded to NetSuite, PS256 by default (PS384/512, ES256/384/512; RS256
 * is retired).  The header carries kid = the certificate ID; the claims
 * iss = the client ID, scope, aud = the token URL, iat and exp (less than
 * 60 minutes after iat).  The access token (60 minutes) comes without a
 * refresh token: a new assertion is made a minute before it expires, and
 * conn.c makes one on a 401 too.
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/base64.h"
#include "lib/stringinfo.h"
#include "port.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "jwt.h"
#include "netsuite.h"

#define bad_option(key, why) provider_bad_option("NetSuite", key, why)

static void check_m2m_options(SJson *auth);
static void m2m_token(SyncConnection *conn, SJson *auth);

static const char *const tba_keys[] = {
	"consumer_key", "consumer_secret", "token_id", "token_secret", NULL
};

/* ---------------------------------------------------------------------
 * OAuth 2.0 client credentials (M2M): options
 * --------------------------------------------------------------------- */

#define NS_M2M_DEFAULT_ALG "PS256"
#define NS_M2M_DEFAULT_SCOPE "rest_webservices"

/*
 * The assertion's lifetime: NetSuite's help wants exp "less than 60
 * minutes greater than" iat, so a minute less.  It is used at once; the
 * long life only helps a clock that runs behind NetSuite's.
 */
#define NS_M2M_ASSERTION_S 3540

static const char *const m2m_keys[] = {
	"type", "client_id", "certificate_id", "private_key", "private_key_file",
	"algorithm", "scope", NULL
};

/* NetSuite's algorithms for the assertion (RS256 retired) */
static const char *const m2m_algs[] = {
	"PS256", "PS384", "PS512", "ES256", "ES384", "ES512", NULL
};

static const char *const m2m_scopes[] = {
	"rest_webservices", "restlets", "suite_analytics", NULL
};

static bool
in_list(const char *const *list, const char *s, int len)
{
	int			i;

	for (i = 0; list[i]; i++)
		if ((int) strlen(list[i]) == len && strncmp(list[i], s, len) == 0)
			return true;
	return false;
}

static const char *
m2m_algorithm(SJson *auth)
{
	const char *a = sjson_get_string(auth, "algorithm");

	return a ? a : NS_M2M_DEFAULT_ALG;
}

static const char *
m2m_scope(SJson *auth)
{
	const char *s = sjson_get_string(auth, "scope");

	return s ? s : NS_M2M_DEFAULT_SCOPE;
}

/* The scope claim: the scopes as NetSuite's help writes them, comma-separated. */
static char *
m2m_scope_claim(SJson *auth)
{
	const char *p = m2m_scope(auth);
	StringInfoData buf;

	initStringInfo(&buf);
	while (*p)
	{
		int			len = strcspn(p, ", ");

		if (len > 0)
			appendStringInfo(&buf, "%s%.*s", buf.len > 0 ? "," : "", len, p);
		p += len;
		if (*p)
			p++;
	}
	return buf.data;
}

static void
check_m2m_options(SJson *auth)
{
	const char **keys;
	int			n = sjson_object_keys(auth, &keys);
	int			i;
	const char *alg;
	const char *scope;
	const char *p;
	int			nscopes = 0;

	for (i = 0; i < n; i++)
		if (!in_list(m2m_keys, keys[i], strlen(keys[i])))
			bad_option(psprintf("auth.%s", keys[i]),
					   "unknown option for \"m2m\" (known: client_id, certificate_id, "
					   "private_key or private_key_file, algorithm, scope)");
	if (sjson_get_string(auth, "client_id") == NULL || *sjson_get_string(auth, "client_id") == '\0')
		bad_option("auth.client_id",
				   "required for \"m2m\": the client ID of the integration record "
				   "(shown once when the record is saved)");
	if (sjson_get_string(auth, "certificate_id") == NULL || *sjson_get_string(auth, "certificate_id") == '\0')
		bad_option("auth.certificate_id",
				   "required for \"m2m\": the certificate ID NetSuite shows under Setup > Integration > "
				   "OAuth 2.0 Client Credentials (M2M) Setup");
	if (sjson_has_key(auth, "algorithm") && sjson_get_string(auth, "algorithm") == NULL)
		bad_option("auth.algorithm", "must be a string: PS256, PS384, PS512, ES256, ES384 or ES512");
	alg = m2m_algorithm(auth);
	if (strcmp(alg, "RS256") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid NetSuite connection option \"auth.algorithm\": NetSuite no longer accepts RS256 "
						"assertions for OAuth 2.0 client credentials"),
				 errhint("Use \"PS256\" (RSASSA-PSS): the same RSA key and certificate work with it.")));
	if (!in_list(m2m_algs, alg, strlen(alg)))
		bad_option("auth.algorithm", "must be PS256 (the default), PS384, PS512, ES256, ES384 or ES512, "
				   "as fits the certificate's key");
	if (sjson_has_key(auth, "scope") && sjson_get_string(auth, "scope") == NULL)
		bad_option("auth.scope", "must be a string, e.g. \"rest_webservices\" or \"rest_webservices,restlets\"");
	scope = m2m_scope(auth);
	for (p = scope; *p;)
	{
		int			len = strcspn(p, ", ");

		if (len > 0)
		{
			if (!in_list(m2m_scopes, p, len))
				bad_option("auth.scope",
						   psprintf("unknown scope \"%.*s\" (NetSuite's scopes: rest_webservices, restlets, "
									"suite_analytics, comma-separated)", len, p));
			nscopes++;
		}
		p += len;
		if (*p)
			p++;
	}
	if (nscopes == 0)
		bad_option("auth.scope", "must name at least one scope, e.g. \"rest_webservices\"");
	if (sjson_get_string(auth, "private_key") == NULL)
		bad_option("auth.private_key",
				   "required for \"m2m\": the PEM private key of the certificate uploaded to NetSuite "
				   "(or auth.private_key_file, the path of a file holding it)");
	jwt_check_key(alg, sjson_get_string(auth, "private_key"),
				  "invalid NetSuite connection option \"auth.private_key\"");
}

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
	{
		check_m2m_options(auth);
		return;
	}
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
	MemoryContext tmp,
				old;

	(void) ns_state(conn);
	if (conn->max_in_flight <= 0)
		conn->max_in_flight = ns_concurrency(conn);
	if (strcmp(type, "tba") == 0)
	{
		/* nothing to obtain: each request is signed (ns_sign) */
		conn->access_token = MemoryContextStrdup(conn->cxt, "tba");
		conn->token_expires = 0;
		return;
	}
	/* m2m: the exchange's garbage must not stay with the connection */
	tmp = AllocSetContextCreate(conn->cxt, "sync netsuite auth", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(tmp);
	PG_TRY();
	{
		m2m_token(conn, auth);
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(tmp);
	}
	PG_END_TRY();
}

/* ---------------------------------------------------------------------
 * OAuth 2.0 client credentials (M2M): the token request
 * --------------------------------------------------------------------- */

/* The client assertion: a JWT signed with the certificate's private key. */
static char *
m2m_assertion(SyncConnection *conn, SJson *auth, const char *token_url)
{
	SJson	   *header = sjson_new_object();
	SJson	   *claims = sjson_new_object();
	int64		now = (int64) time(NULL);

	sjson_add_string(header, "typ", "JWT");
	sjson_add_string(header, "alg", m2m_algorithm(auth));
	sjson_add_string(header, "kid", sjson_get_string(auth, "certificate_id"));
	sjson_add_string(claims, "iss", sjson_get_string(auth, "client_id"));
	sjson_add_string(claims, "scope", m2m_scope_claim(auth));
	sjson_add_string(claims, "aud", token_url);
	sjson_add_int(claims, "iat", now);
	sjson_add_int(claims, "exp", now + NS_M2M_ASSERTION_S);
	return jwt_sign(header, claims, sjson_get_string(auth, "private_key"),
					psprintf("connection \"%s\": auth.private_key", conn->name));
}

/* expires_in: a number, or (NetSuite 2025.2) a string of digits; -1 if neither. */
static int64
m2m_expires_in(SJson *v)
{
	const char *s = sjson_string(v);

	if (s != NULL)
	{
		char	   *end;
		long		n;

		errno = 0;
		n = strtol(s, &end, 10);
		if (errno != 0 || end == s || *end != '\0' || n < 0 || n > INT_MAX)
			return -1;
		return n;
	}
	if (sjson_type(v) == SJSON_INT || sjson_type(v) == SJSON_DOUBLE)
		return sjson_int(v, -1);
	return -1;
}

/* What to check for each OAuth error of the token endpoint. */
static const char *
m2m_hint(const char *code)
{
	if (code && strcmp(code, "invalid_grant") == 0)
		return "Check that the certificate made from this private key is uploaded under Setup > Integration > "
			"OAuth 2.0 Client Credentials (M2M) Setup for this integration record and role, that "
			"auth.certificate_id is the certificate ID shown there and the certificate has not expired, "
			"that auth.algorithm fits the key, and that this server's clock is right.";
	if (code && strcmp(code, "invalid_client") == 0)
		return "Check auth.client_id: the client ID of the integration record, which must have "
			"the Client Credentials (Machine to Machine) grant enabled.";
	if (code && strcmp(code, "invalid_scope") == 0)
		return "Check auth.scope against the scopes enabled on the integration record "
			"(rest_webservices for records and SuiteQL, restlets for RESTlets).";
	if (code && (strcmp(code, "unsupported_grant_type") == 0 || strcmp(code, "unauthorized_client") == 0))
		return "Enable the Client Credentials (Machine to Machine) grant on the integration record, "
			"and OAuth 2.0 under Setup > Company > Enable Features > SuiteCloud > Manage Authentication.";
	return "Check the connection's auth options (auth.client_id, auth.certificate_id, auth.algorithm "
		"and the private key) against NetSuite's OAuth 2.0 Client Credentials (M2M) Setup; "
		"NetSuite's Login Audit Trail may say more.  Change them with sync.alter_connection().";
}

static void
m2m_token(SyncConnection *conn, SJson *auth)
{
	char	   *url = ns_token_url(conn);
	char	   *assertion = m2m_assertion(conn, auth, url);
	StringInfoData form;
	HttpRequest *req;
	TimestampTz sent;
	SJson	   *resp;
	const char *token;
	int64		ttl;

	initStringInfo(&form);
	appendStringInfo(&form, "grant_type=client_credentials&client_assertion_type=%s&client_assertion=%s",
					 http_url_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
					 http_url_encode(assertion));
	explicit_bzero(assertion, strlen(assertion));
	req = ns_request(conn, "POST", url, form.data, "application/x-www-form-urlencoded");
	req->body_is_secret = true;
	sent = GetCurrentTimestamp();
	http_run_one(req);
	explicit_bzero(form.data, form.len);

	if (req->outcome != HTTP_DONE)
		conn_error_from_response(conn, "NetSuite authentication (OAuth 2.0 token request)", req, NULL);
	if (req->status != 200)
	{
		char	   *code = NULL;
		char	   *msg = ns_error_text(req, &code, NULL);

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("connection \"%s\": NetSuite refused the OAuth 2.0 client credentials (M2M) grant: %s",
						conn->name, msg ? msg : "no reason given"),
				 code ? errdetail("OAuth error \"%s\", HTTP %ld from %s.", code, req->status,
								  http_redact_url(url)) :
				 errdetail("HTTP %ld from %s.", req->status, http_redact_url(url)),
				 errhint("%s", m2m_hint(code))));
	}
	resp = provider_response_json(req);
	token = sjson_get_string(resp, "access_token");
	if (token == NULL || *token == '\0')
		provider_bad_response(conn, "NetSuite", "obtaining an OAuth 2.0 access token", req,
							  "no \"access_token\"");
	ttl = m2m_expires_in(sjson_get(resp, "expires_in"));
	conn->access_token = MemoryContextStrdup(conn->cxt, token);

	/*
	 * Renew a minute early (a quarter early for short lives); a 401 before
	 * that makes a new assertion anyway.  No or nonsense expires_in: learn
	 * of the expiry by that 401.
	 */
	if (ttl > 0 && ttl <= 86400)
		conn->token_expires = TimestampTzPlusMilliseconds(sent,
														  (ttl - (ttl >= 240 ? 60 : ttl / 4)) * 1000);
	else
		conn->token_expires = 0;
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
