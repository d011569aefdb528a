/*
 * kq_service.h — the start and the stop every HTTP service main shares.
 *
 * What it is for
 *   The long-running services (kcqrs-commands, kcqrs-query, and
 *   kcqrs-projector and kcqrs-worker with their admin servers) begin alike: --help and the
 * configuration table, no positional arguments (unless the main takes its own: KQ_SERVICE_ARGS),
 * the configuration from the environment and the log set up from it, the API keys file (for a
 *   public API: KQ_SERVICE_KEYS), the trace exporter (kq_trace.h) when
 *   KCQRS_OTLP_ENDPOINT is set, SIGPIPE ignored and SIGTERM/SIGINT blocked
 *   in every thread so the main can wait for them (a main that needs another
 *   signal adds it to `signals` and blocks it too); and end alike: the HTTP
 *   server stopped, the trace exporter flushed and stopped, keys and
 *   configuration freed. A main calls
 *   kq_service_begin, starts its own modules, kq_service_http_start,
 *   kq_service_wait, stops its modules (those that answer waiting requests
 *   first), kq_service_end.
 *
 * What it owns: the loaded configuration, the keys and the HTTP server (all
 * in the struct, borrowed by the caller's modules until kq_service_end).
 *
 * Threads: the main thread's. kq_service_begin must run before any thread
 * exists (the signal mask is inherited).
 */
#ifndef KQ_SERVICE_H
#define KQ_SERVICE_H

#include <signal.h>

#include "kq_auth.h"
#include "kq_config.h"
#include "kq_http.h"

#define KQ_SERVICE_KEYS                                                                            \
    1u /* load the API keys of KCQRS_KEYS_FILE, followed per KCQRS_KEYS_RELOAD_MS (else NULL) */
#define KQ_SERVICE_ARGS 2u /* the main parses arguments itself: they are not refused */

typedef struct kq_service {
    const char *prog;
    kq_config cfg;         /* loaded by kq_service_begin */
    kq_auth_keys *keys;    /* KCQRS_KEYS_FILE */
    kq_http_server *srv;   /* kq_service_http_start */
    sigset_t signals;      /* SIGTERM, SIGINT: blocked, taken by kq_service_wait */
    const char *http_what; /* set by the main: prefix of the HTTP start error logged, or NULL */
    int loaded;            /* cfg needs freeing */
} kq_service;

/*
 * --help (prints `usage` and the configuration table), refuse any argument
 * (without KQ_SERVICE_ARGS), load the configuration and the log, load the
 * API keys (with KQ_SERVICE_KEYS), block the signals. Returns 0 to go on, or
 * 1 when the main must return *status at once (0 after --help; 2 for a
 * usage, configuration or keys error, already printed or logged). After 1
 * there is nothing to end.
 */
int kq_service_begin(kq_service *s, const char *prog, const char *usage, unsigned flags, int argc,
                     char **argv, int *status);

/*
 * Start the HTTP server with `o` (its keys are set to the service's; NULL
 * without KQ_SERVICE_KEYS: public routes only; HTTPS and the trusted proxies
 * from KCQRS_HTTP_TLS_CERT/KEY and KCQRS_HTTP_TRUSTED_PROXIES unless `o` sets
 * them). 0, or the kq_http_start error (logged, after "<http_what>: " when
 * the main set http_what).
 */
int kq_service_http_start(kq_service *s, kq_http_options *o);

/*
 * Block until one of `signals` (SIGTERM, SIGINT and what the main added);
 * returns the signal (0 if sigwait failed). Any thread may wait (the worker's
 * signal thread does).
 */
int kq_service_wait(kq_service *s);

/* Stop the HTTP server if it runs (NULL afterwards); idempotent. */
void kq_service_http_stop(kq_service *s);

/* Stop the HTTP server if it still runs, free keys and configuration. */
void kq_service_end(kq_service *s);

#endif
