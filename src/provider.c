/*
 * provider.c — the registry of providers.
 */
#include "postgres.h"

#include <ctype.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "provider.h"

static const SyncProvider *const providers[] = {
	&salesforce_provider,
	&hubspot_provider,
	&netsuite_provider,
};

const char *
provider_names(void)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < lengthof(providers); i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", providers[i]->name);
	return buf.data;
}

const SyncProvider *
provider_lookup(const char *name, bool missing_ok)
{
	int			i;

	for (i = 0; i < lengthof(providers); i++)
		if (strcmp(providers[i]->name, name) == 0)
			return providers[i];
	if (!missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown provider \"%s\"", name),
				 errhint("Known providers: %s.", provider_names())));
	return NULL;
}

/* ---------------------------------------------------------------------
 * helpers shared by the providers
 * --------------------------------------------------------------------- */

void
provider_bad_option(const char *provider, const char *key, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s connection option \"%s\": %s", provider, key, why)));
}

/*
 * Is a URL option acceptable?  The same rule, by the same parser, as the
 * requests themselves obey (http.c): https, or plain http to a loopback
 * host (the emulator) — so http://127.evil.example is refused when the
 * option is set, not only later when a request would go.
 */
bool
provider_url_ok(const char *url)
{
	return http_url_refusal(url) == NULL;
}

void
provider_appendf_va(StringInfo buf, const char *fmt, va_list ap)
{
	for (;;)
	{
		va_list		copy;
		int			needed;

		va_copy(copy, ap);
		needed = appendStringInfoVA(buf, fmt, copy);
		va_end(copy);
		if (needed == 0)
			break;
		enlargeStringInfo(buf, needed);
	}
}

SJson *
provider_response_json(const HttpRequest *req)
{
	char	   *err;

	if (req->outcome != HTTP_DONE || req->response.len == 0)
		return NULL;
	return sjson_parse(req->response.data, req->response.len, &err);
}

/* The connection's access token as a bearer token (replacing a stale one). */
void
provider_sign_bearer(SyncConnection *conn, HttpRequest *req)
{
	ListCell   *lc;

	foreach(lc, req->headers)
	{
		HttpHeader *h = (HttpHeader *) lfirst(lc);

		if (pg_strcasecmp(h->name, "Authorization") == 0)
		{
			h->value = psprintf("Bearer %s", conn->access_token);
			return;
		}
	}
	http_add_header(req, "Authorization", psprintf("Bearer %s", conn->access_token));
}

/* A multi-select value "a;b" -> the array literal {"a","b"} ("" -> {}) */
char *
provider_list_array(const char *v)
{
	StringInfoData s;
	const char *p;

	if (*v == '\0')
		return pstrdup("{}");
	initStringInfo(&s);
	appendStringInfoString(&s, "{\"");
	for (p = v; *p; p++)
	{
		if (*p == ';')
			appendStringInfoString(&s, "\",\"");
		else
		{
			if (*p == '"' || *p == '\\')
				appendStringInfoChar(&s, '\\');
			appendStringInfoChar(&s, *p);
		}
	}
	appendStringInfoString(&s, "\"}");
	return s.data;
}

/*
 * The start of a response body that is not the JSON we expected (an HTML
 * error page, a proxy's text), fit for an error message: at most `max`
 * bytes, cut at a character boundary, invalid UTF-8 and control characters
 * shown as '?', runs of white space as one space.  NULL for an empty body.
 */
char *
provider_body_excerpt(const HttpRequest *req, int max)
{
	StringInfoData out;
	const char *s = req->response.data;
	int			len = req->response.len;
	int			i = 0;

	if (req->outcome != HTTP_DONE || len == 0 || s == NULL)
		return NULL;
	if (req->body_is_secret)
		return psprintf("(%d bytes, not shown: the request carried credentials, which a proxy may echo)", len);
	initStringInfo(&out);
	while (i < len && out.len < max)
	{
		unsigned char c = (unsigned char) s[i];
		int			l = pg_utf_mblen((const unsigned char *) s + i);

		if (c >= 0x80)
		{
			if (i + l <= len && pg_utf8_islegal((const unsigned char *) s + i, l))
			{
				if (out.len + l > max)
					break;
				appendBinaryStringInfo(&out, s + i, l);
				i += l;
			}
			else
			{
				appendStringInfoChar(&out, '?');
				i++;
			}
			continue;
		}
		if (isspace(c))
		{
			if (out.len > 0 && out.data[out.len - 1] != ' ')
				appendStringInfoChar(&out, ' ');
		}
		else
			appendStringInfoChar(&out, (c < 0x20 || c == 0x7f) ? '?' : (char) c);
		i++;
	}
	if (i < len)
		appendStringInfoString(&out, "...");
	return out.data;
}

static bool
digits(const char *s, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (!isdigit((unsigned char) s[i]))
			return false;
	return true;
}

/*
 * Is this a timestamp PostgreSQL's timestamptz_in takes without an error:
 * YYYY-MM-DD[T ]HH:MM:SS, an optional fraction, and Z, +hh, +hhmm or
 * +hh:mm (or nothing)?  Remote stamps become cursors: a malformed one
 * must be refused before it can be stored and fail every later pull.
 */
bool
provider_valid_stamp(const char *s)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int			y,
				mo,
				d;
	const char *p;

	if (s == NULL || strlen(s) < 19 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) ||
		s[7] != '-' || !digits(s + 8, 2) || (s[10] != 'T' && s[10] != ' ') ||
		!digits(s + 11, 2) || s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' ||
		!digits(s + 17, 2))
		return false;
	y = atoi(s);
	mo = atoi(s + 5);
	d = atoi(s + 8);
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
		(mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) ||
		atoi(s + 11) > 23 || atoi(s + 14) > 59 || atoi(s + 17) > 59)
		return false;
	p = s + 19;
	if (*p == '.')
	{
		p++;
		if (!isdigit((unsigned char) *p))
			return false;
		while (isdigit((unsigned char) *p))
			p++;
	}
	if (*p == '\0' || (p[0] == 'Z' && p[1] == '\0'))
		return true;
	if ((*p != '+' && *p != '-') || !digits(p + 1, 2) || atoi(p + 1) > 14)
		return false;
	p += 3;
	if (*p == ':')
		p++;
	if (*p == '\0')
		return true;
	return digits(p, 2) && atoi(p) < 60 && p[2] == '\0';
}

/* A remote value for an error message: at most 40 bytes, whole characters. */
char *
provider_quote_value(const char *v)
{
	int			len;

	if (v == NULL)
		return pstrdup("(none)");
	len = strlen(v);
	if (len <= 40)
		return psprintf("\"%s\"", v);
	return psprintf("\"%.*s...\"", pg_mbcliplen(v, len, 40), v);
}

/* ERROR for a response that arrived but is not what the API documents. */
void
provider_bad_response(SyncConnection *conn, const char *remote, const char *what,
					  const HttpRequest *req, const char *why)
{
	char	   *excerpt = provider_body_excerpt(req, 200);

	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("connection \"%s\": %s sent an unusable response while %s: %s",
					conn->name, remote, what, why),
			 excerpt ? errdetail("HTTP %ld; the response began: %s", req->status, excerpt) :
			 errdetail("HTTP %ld with an empty body.", req->status),
			 errhint("Nothing was applied from this response; the next attempt asks again.")));
}

/* SyncRecord.invalid for a string value the remote sent broken. */
char *
provider_broken_value(const char *field)
{
	return psprintf("the remote's value of %s is not valid UTF-8 or holds a NUL character (\\u0000), "
					"which PostgreSQL text cannot hold; fix it in the remote and call sync.retry()",
					field);
}
