/*
 * jwt.h — JSON Web Tokens signed with a private key, in JWS compact form
 * (RFC 7515, algorithms of RFC 7518 §3): the one signer of the project.
 *
 *	 RS256			RSASSA-PKCS1-v1_5 with SHA-256 (Salesforce's JWT bearer flow)
 *	 PS256/384/512	RSASSA-PSS, MGF1 with the same hash, salt length = hash length
 *	 ES256/384/512	ECDSA on P-256/P-384/P-521, signature as r||s of fixed length
 *
 * The key is a PEM private key given as text (PKCS#8 "PRIVATE KEY", or the
 * traditional "RSA PRIVATE KEY" / "EC PRIVATE KEY"), unencrypted.  Errors
 * say what is wrong with the key and never show it.
 */
#ifndef SYNC_JWT_H
#define SYNC_JWT_H

#include "sjson.h"

/* Is name ("RS256", "PS384", "ES512", ...) an algorithm jwt_sign() implements? */
extern bool jwt_alg_supported(const char *name);

/*
 * Check that pem is a private key that can sign with algorithm alg: RSA
 * for RS and PS (PS: at least 2048 bits, RFC 7518 §3.5), EC on the
 * algorithm's curve for ES.  ERROR (invalid parameter value) otherwise;
 * the message starts with `what` (e.g. "invalid NetSuite connection option
 * \"auth.private_key\"") and says what the key is and what was expected.
 */
extern void jwt_check_key(const char *alg, const char *pem, const char *what);

/*
 * base64url(header) "." base64url(claims) "." base64url(signature), palloc'd.
 * header is a JSON object whose "alg" names the algorithm (the caller adds
 * "typ", "kid", ...); the key is checked as jwt_check_key() does.
 */
extern char *jwt_sign(const SJson *header, const SJson *claims, const char *pem,
					  const char *what);

/* base64url without padding (RFC 7515 §2), palloc'd. */
extern char *jwt_base64url(const unsigned char *data, size_t len);

#endif							/* SYNC_JWT_H */
