/*
 * kq_service.c — see kq_service.h.
 */
#include "kq_service.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kq_err.h"
#include "kq_log.h"
#include "kq_trace.h"

int kq_service_begin(kq_service *s, const char *prog, const char *usage, unsigned flags, int argc,
                     char **argv, int *status)
{
    char err[512];

    memset(s, 0, sizeof *s);
    s->prog = prog;
    *status = 0;
    if (kq_config_handle_flags(argc, argv, prog, usage))
        return 1;
    *status = 2;
    if (argc > 1 && !(flags & KQ_SERVICE_ARGS)) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog, argv[1]);
        return 1;
    }
    if (kq_config_load_and_init_log(&s->cfg, prog, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 1;
    }
    s->loaded = 1;
    if ((flags & KQ_SERVICE_KEYS) &&
        (kq_auth_load(s->cfg.keys_file, &s->keys, err, sizeof err) != 0 ||
         kq_auth_watch(s->keys, s->cfg.keys_file, s->cfg.keys_reload_ms, err, sizeof err) != 0)) {
        kq_log_error("API keys: %s", err);
        kq_service_end(s);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&s->signals);
    sigaddset(&s->signals, SIGTERM);
    sigaddset(&s->signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &s->signals, NULL); /* inherited by every thread */
    if (strcmp(s->cfg.otlp_endpoint, "none") != 0 &&
        kq_trace_export_start(s->cfg.otlp_endpoint, prog, (size_t)s->cfg.otlp_queue, err,
                              sizeof err) != 0) {
        kq_log_error("%s", err);
        kq_service_end(s);
        return 1;
    }
    *status = 0;
    return 0;
}

int kq_service_http_start(kq_service *s, kq_http_options *o)
{
    char err[512];
    int rc;

    o->keys = s->keys;
    if (o->tls_cert == NULL && strcmp(s->cfg.http_tls_cert, "none") != 0) {
        o->tls_cert = s->cfg.http_tls_cert;
        o->tls_key = s->cfg.http_tls_key;
    }
    if (o->trusted_proxies == NULL && strcmp(s->cfg.http_proxies, "none") != 0)
        o->trusted_proxies = s->cfg.http_proxies;
    if (o->cors_origins == NULL && strcmp(s->cfg.cors_origins, "none") != 0)
        o->cors_origins = s->cfg.cors_origins;
    if ((rc = kq_http_start(o, &s->srv, err, sizeof err)) != 0)
        kq_log_error("%s%s%s", s->http_what ? s->http_what : "", s->http_what ? ": " : "", err);
    return rc;
}

int kq_service_wait(kq_service *s)
{
    int sig = 0;

    if (sigwait(&s->signals, &sig) != 0)
        sig = 0;
    return sig;
}

void kq_service_http_stop(kq_service *s)
{
    kq_http_stop(s->srv);
    s->srv = NULL;
}

void kq_service_end(kq_service *s)
{
    kq_service_http_stop(s);
    kq_trace_export_stop(); /* after every thread that ends spans */
    kq_auth_free(s->keys);
    s->keys = NULL;
    if (s->loaded)
        kq_config_free(&s->cfg);
    s->loaded = 0;
}
