/* http.c — placeholder until the HTTP module lands (see http.h). */
#include "postgres.h"

#include "http.h"

int			sync_http_timeout_ms = 30000;
int			sync_http_connect_timeout_ms = 10000;
int			sync_http_max_in_flight = 8;
int			sync_http_max_response_bytes = 64 * 1024 * 1024;

void
http_define_gucs(void)
{
}
