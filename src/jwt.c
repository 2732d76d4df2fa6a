/*
 * jwt.c — JWTs signed with RS256, PS256/384/512 or ES256/384/512 (see
 * jwt.h), with OpenSSL's EVP interface.
 *
 * OpenSSL's objects are not palloc'd: each function frees them in a
 * PG_FINALLY, so an ERROR (a bad key, out of memory) leaks nothing, and
 * leaves OpenSSL's error queue empty for the next user of the library
 * (libcurl shares it).
 */
#include "postgres.h"

#include <openssl/bn.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "jwt.h"

typedef enum JwtKind
{
	JWT_RSA_PKCS1,				/* RS* */
	JWT_RSA_PSS,				/* PS* */
	JWT_ECDSA					/* ES* */
} JwtKind;

typedef struct JwtAlg
{
	const char *name;
	JwtKind		kind;
	const EVP_MD *(*md) (void);
	int			curve;			/* ES: the curve's NID */
	const char *curve_name;		/* ES: as RFC 7518 names it */
	int			coord_len;		/* ES: bytes of r and of s */
} JwtAlg;

static const JwtAlg jwt_algs[] = {
	{"RS256", JWT_RSA_PKCS1, EVP_sha256, 0, NULL, 0},
	{"PS256", JWT_RSA_PSS, EVP_sha256, 0, NULL, 0},
	{"PS384", JWT_RSA_PSS, EVP_sha384, 0, NULL, 0},
	{"PS512", JWT_RSA_PSS, EVP_sha512, 0, NULL, 0},
	{"ES256", JWT_ECDSA, EVP_sha256, NID_X9_62_prime256v1, "P-256", 32},
	{"ES384", JWT_ECDSA, EVP_sha384, NID_secp384r1, "P-384", 48},
	{"ES512", JWT_ECDSA, EVP_sha512, NID_secp521r1, "P-521", 66},
};

/* RFC 7518 §3.5: "A key of size 2048 bits or larger MUST be used" (PS*) */
#define JWT_MIN_RSA_BITS 2048

static const JwtAlg *
find_alg(const char *name)
{
	int			i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < lengthof(jwt_algs); i++)
		if (strcmp(jwt_algs[i].name, name) == 0)
			return &jwt_algs[i];
	return NULL;
}

bool
jwt_alg_supported(const char *name)
{
	return find_alg(name) != NULL;
}

char *
jwt_base64url(const unsigned char *data, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char	   *out = palloc((len + 2) / 3 * 4 + 1);
	char	   *p = out;
	size_t		i;

	for (i = 0; i + 2 < len; i += 3)
	{
		uint32		v = ((uint32) data[i] << 16) | ((uint32) data[i + 1] << 8) | data[i + 2];

		*p++ = alphabet[(v >> 18) & 63];
		*p++ = alphabet[(v >> 12) & 63];
		*p++ = alphabet[(v >> 6) & 63];
		*p++ = alphabet[v & 63];
	}
	if (len - i == 1)
	{
		uint32		v = (uint32) data[i] << 16;

		*p++ = alphabet[(v >> 18) & 63];
		*p++ = alphabet[(v >> 12) & 63];
	}
	else if (len - i == 2)
	{
		uint32		v = ((uint32) data[i] << 16) | ((uint32) data[i + 1] << 8);

		*p++ = alphabet[(v >> 18) & 63];
		*p++ = alphabet[(v >> 12) & 63];
		*p++ = alphabet[(v >> 6) & 63];
	}
	*p = '\0';
	return out;
}

/* OpenSSL's reason for the last failure ("bad base64 decode"), or NULL. */
static const char *
openssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r ? pstrdup(r) : NULL;
}

/* Never ask for a passphrase (OpenSSL's default would read the terminal). */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

static void
bad_key(const char *what, const char *problem, const char *hint) pg_attribute_noreturn();

static void
bad_key(const char *what, const char *problem, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s: %s", what, problem),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * What the text is, if it is plainly not an unencrypted PEM private key:
 * ERROR before OpenSSL sees it, with a message for that case.
 */
static void
check_pem_shape(const char *pem, const char *what)
{
	const char *p = pem;

	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p == '\0')
		bad_key(what, "the private key is empty",
				"Give the PEM text of the private key (-----BEGIN PRIVATE KEY----- ...).");
	if (strstr(pem, "-----BEGIN ") == NULL)
		bad_key(what, "not a PEM private key: no \"-----BEGIN ...-----\" line",
				"Give the PEM text of the private key, from its -----BEGIN PRIVATE KEY----- line "
				"to its -----END PRIVATE KEY----- line, line breaks included.");
	if (strstr(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL ||
		strstr(pem, "Proc-Type: 4,ENCRYPTED") != NULL)
		bad_key(what, "the private key is encrypted with a passphrase",
				"Give it unencrypted (openssl pkey -in KEY.pem -out PLAIN.pem) and protect it "
				"as a secret file instead (sync.secret_directory).");
	if (strstr(pem, "-----BEGIN OPENSSH PRIVATE KEY-----") != NULL)
		bad_key(what, "an OpenSSH private key, not a PEM one",
				"Convert a copy to PKCS#8 PEM: ssh-keygen -p -m PKCS8 -f COPY.");
	if (strstr(pem, "PRIVATE KEY-----") == NULL)
	{
		if (strstr(pem, "-----BEGIN CERTIFICATE-----") != NULL)
			bad_key(what, "a certificate, not a private key",
					"The certificate is what the remote holds; give the private key it was made from.");
		if (strstr(pem, "PUBLIC KEY-----") != NULL)
			bad_key(what, "a public key, not a private key",
					"Give the private key (-----BEGIN PRIVATE KEY-----).");
		bad_key(what, "PEM text without a private key in it",
				"Give the PEM text of the private key (-----BEGIN PRIVATE KEY----- ...).");
	}
}

/* The key in pem; ERROR if unreadable.  The caller frees it. */
static EVP_PKEY *
read_key(const char *pem, const char *what)
{
	BIO		   *bio;
	EVP_PKEY   *key;
	const char *reason;

	check_pem_shape(pem, what);
	ERR_clear_error();
	bio = BIO_new_mem_buf(pem, -1);
	if (bio == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory reading a private key")));
	key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (key != NULL)
		return key;
	reason = openssl_reason();
	ERR_clear_error();
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s: not a readable PEM private key", what),
			 reason ? errdetail("OpenSSL: %s.", reason) : 0,
			 errhint("Give the whole PEM text of an unencrypted RSA or EC private key, line breaks included "
					 "(openssl pkey -in KEY.pem -check tells whether a file holds one).")));
	return NULL;				/* keep the compiler quiet */
}

/* An EC key's curve (NID), or NID_undef. */
static int
ec_curve(EVP_PKEY *key)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	char		name[80];
	size_t		len = 0;
	int			nid;

	if (EVP_PKEY_get_group_name(key, name, sizeof(name), &len) != 1)
		return NID_undef;
	nid = OBJ_sn2nid(name);
	if (nid == NID_undef)
		nid = EC_curve_nist2nid(name);
	return nid;
#else
	const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
	const EC_GROUP *g = ec ? EC_KEY_get0_group(ec) : NULL;

	return g ? EC_GROUP_get_curve_name(g) : NID_undef;
#endif
}

static const char *
curve_text(int nid)
{
	const char *n = nid != NID_undef ? EC_curve_nid2nist(nid) : NULL;

	if (n == NULL && nid != NID_undef)
		n = OBJ_nid2sn(nid);
	return n ? n : "unknown";
}

/* Which algorithms a key can sign with, for a hint. */
static char *
fitting_algs(EVP_PKEY *key)
{
	int			i;

	switch (EVP_PKEY_base_id(key))
	{
		case EVP_PKEY_RSA:
			return pstrdup("An RSA key signs with PS256, PS384 or PS512 (or the older RS256).");
		case EVP_PKEY_RSA_PSS:
			return pstrdup("This RSA-PSS key signs with PS256, PS384 or PS512.");
		case EVP_PKEY_EC:
			for (i = 0; i < lengthof(jwt_algs); i++)
				if (jwt_algs[i].kind == JWT_ECDSA && jwt_algs[i].curve == ec_curve(key))
					return psprintf("An EC key on curve %s signs with %s.",
									jwt_algs[i].curve_name, jwt_algs[i].name);
			return pstrdup("Use an EC key on curve P-256, P-384 or P-521.");
		default:
			return pstrdup("Use an RSA key (PS256, PS384, PS512, RS256) or an EC key on curve "
						   "P-256, P-384 or P-521 (ES256, ES384, ES512).");
	}
}

/* ERROR unless key can sign with a. */
static void
check_fit(const JwtAlg *a, EVP_PKEY *key, const char *what)
{
	int			type = EVP_PKEY_base_id(key);
	bool		rsa = (type == EVP_PKEY_RSA || type == EVP_PKEY_RSA_PSS);
	char	   *is;

	if (rsa)
		is = psprintf("an RSA key of %d bits", EVP_PKEY_bits(key));
	else if (type == EVP_PKEY_EC)
		is = psprintf("an EC key on curve %s", curve_text(ec_curve(key)));
	else
		is = psprintf("a %s key", OBJ_nid2sn(type) ? OBJ_nid2sn(type) : "non-RSA, non-EC");

	switch (a->kind)
	{
		case JWT_RSA_PKCS1:
		case JWT_RSA_PSS:
			if (!rsa)
				bad_key(what, psprintf("the private key is %s, but algorithm %s signs with an RSA key",
									   is, a->name),
						fitting_algs(key));
			if (a->kind == JWT_RSA_PKCS1 && type == EVP_PKEY_RSA_PSS)
				bad_key(what, psprintf("the private key is an RSA-PSS key, which cannot sign with %s",
									   a->name),
						fitting_algs(key));
			if (a->kind == JWT_RSA_PSS && EVP_PKEY_bits(key) < JWT_MIN_RSA_BITS)
				bad_key(what, psprintf("the private key is %s; algorithm %s needs at least %d bits",
									   is, a->name, JWT_MIN_RSA_BITS),
						"Make a new key of 3072 or 4096 bits and its certificate.");
			break;
		case JWT_ECDSA:
			if (type != EVP_PKEY_EC)
				bad_key(what, psprintf("the private key is %s, but algorithm %s signs with an EC key on curve %s",
									   is, a->name, a->curve_name),
						fitting_algs(key));
			if (ec_curve(key) != a->curve)
				bad_key(what, psprintf("the private key is %s, but algorithm %s needs curve %s",
									   is, a->name, a->curve_name),
						fitting_algs(key));
			break;
	}
}

void
jwt_check_key(const char *alg, const char *pem, const char *what)
{
	const JwtAlg *a = find_alg(alg);
	EVP_PKEY   *volatile key = NULL;

	if (a == NULL)
		elog(ERROR, "sync: unsupported JWS algorithm \"%s\"", alg ? alg : "(none)");
	PG_TRY();
	{
		key = read_key(pem, what);
		check_fit(a, key, what);
	}
	PG_FINALLY();
	{
		if (key)
			EVP_PKEY_free(key);
		ERR_clear_error();
	}
	PG_END_TRY();
}

/*
 * ECDSA: OpenSSL's DER ECDSA-Sig-Value -> the JOSE form in out (2 *
 * coord_len bytes): r and s as big-endian integers of coord_len bytes each
 * (RFC 7518 §3.4).
 */
static bool
der_to_jose(const JwtAlg *a, const unsigned char *der, size_t derlen, unsigned char *out)
{
	const unsigned char *p = der;
	ECDSA_SIG  *sig = d2i_ECDSA_SIG(NULL, &p, (long) derlen);
	const BIGNUM *r = NULL,
			   *s = NULL;
	bool		ok;

	if (sig == NULL)
		return false;
	ECDSA_SIG_get0(sig, &r, &s);
	ok = BN_bn2binpad(r, out, a->coord_len) == a->coord_len &&
		BN_bn2binpad(s, out + a->coord_len, a->coord_len) == a->coord_len;
	ECDSA_SIG_free(sig);
	return ok;
}

char *
jwt_sign(const SJson *header, const SJson *claims, const char *pem, const char *what)
{
	const char *algname = sjson_get_string(header, "alg");
	const JwtAlg *a = find_alg(algname);
	char	   *head = sjson_serialize(header);
	char	   *body = sjson_serialize(claims);
	char	   *input;
	char	   *result = NULL;
	EVP_PKEY   *volatile key = NULL;
	EVP_MD_CTX *volatile md = NULL;

	if (a == NULL)
		elog(ERROR, "sync: unsupported JWS algorithm \"%s\"", algname ? algname : "(none)");
	input = psprintf("%s.%s",
					 jwt_base64url((const unsigned char *) head, strlen(head)),
					 jwt_base64url((const unsigned char *) body, strlen(body)));
	PG_TRY();
	{
		EVP_PKEY_CTX *pctx = NULL;
		unsigned char *sig;
		size_t		siglen = 0;
		const char *reason = NULL;
		bool		ok;

		key = read_key(pem, what);
		check_fit(a, key, what);
		ERR_clear_error();
		md = EVP_MD_CTX_new();
		ok = md != NULL &&
			EVP_DigestSignInit(md, &pctx, a->md(), NULL, key) == 1;
		if (ok && a->kind == JWT_RSA_PSS)
			ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
				EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, a->md()) > 0 &&
				EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0;
		else if (ok && a->kind == JWT_RSA_PKCS1)
			ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0;
		ok = ok && EVP_DigestSign(md, NULL, &siglen, (const unsigned char *) input, strlen(input)) == 1;
		sig = ok ? palloc(siglen) : NULL;
		ok = ok && EVP_DigestSign(md, sig, &siglen, (const unsigned char *) input, strlen(input)) == 1;
		if (ok && a->kind == JWT_ECDSA)
		{
			unsigned char *jose = palloc(2 * a->coord_len);

			ok = der_to_jose(a, sig, siglen, jose);
			sig = jose;
			siglen = 2 * a->coord_len;
		}
		if (!ok)
		{
			reason = openssl_reason();
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("%s: could not sign a JWT with %s", what, a->name),
					 reason ? errdetail("OpenSSL: %s.", reason) : 0));
		}
		result = psprintf("%s.%s", input, jwt_base64url(sig, siglen));
	}
	PG_FINALLY();
	{
		if (md)
			EVP_MD_CTX_free(md);
		if (key)
			EVP_PKEY_free(key);
		ERR_clear_error();
	}
	PG_END_TRY();
	return result;
}
