/*
 * cmd_hookguard.c — limits on failed webhook attempts; see cmd_hookguard.h.
 */
#include "cmd_hookguard.h"
#include "kq_limit.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cmd_hookguard {
    kq_limit *by_client, *by_wf;
    atomic_uint_fast64_t failures, refused;
};

cmd_hookguard *cmd_hookguard_new(size_t entries, double per_min, double burst)
{
    cmd_hookguard *g = calloc(1, sizeof *g);

    if (g == NULL)
        return NULL;
    g->by_client = kq_limit_new(entries, per_min / 60.0, burst);
    g->by_wf = kq_limit_new(entries, per_min / 60.0, burst);
    if (g->by_client == NULL || g->by_wf == NULL) {
        cmd_hookguard_free(g);
        return NULL;
    }
    atomic_init(&g->failures, 0);
    atomic_init(&g->refused, 0);
    return g;
}

void cmd_hookguard_free(cmd_hookguard *g)
{
    if (g == NULL)
        return;
    kq_limit_free(g->by_client);
    kq_limit_free(g->by_wf);
    free(g);
}

/* The bucket key of a client address: an IPv6 address counts as its /64 (one
 * host usually holds a whole /64), anything else as itself. */
static const char *client_key(const char *client, char *out, size_t outlen)
{
    struct in6_addr a;
    char text[INET6_ADDRSTRLEN];

    if (client == NULL)
        return "";
    if (strchr(client, ':') == NULL || inet_pton(AF_INET6, client, &a) != 1)
        return client;
    memset(a.s6_addr + 8, 0, 8);
    if (inet_ntop(AF_INET6, &a, text, sizeof text) == NULL)
        return client;
    snprintf(out, outlen, "%s/64", text);
    return out;
}

int cmd_hookguard_check(cmd_hookguard *g, const char *client, const char *wf, int64_t now_ms,
                        int *retry_after_s)
{
    char key[INET6_ADDRSTRLEN + 8];
    int ra1 = 0, ra2 = 0;
    int ok1 = kq_limit_check(g->by_client, client_key(client, key, sizeof key), now_ms, &ra1);
    int ok2 = kq_limit_check(g->by_wf, wf ? wf : "", now_ms, &ra2);

    if (ok1 && ok2)
        return 1;
    atomic_fetch_add(&g->refused, 1);
    if (retry_after_s != NULL)
        *retry_after_s = ra1 > ra2 ? ra1 : ra2;
    return 0;
}

void cmd_hookguard_fail(cmd_hookguard *g, const char *client, const char *wf, int64_t now_ms)
{
    char key[INET6_ADDRSTRLEN + 8];

    atomic_fetch_add(&g->failures, 1);
    (void)kq_limit_take(g->by_client, client_key(client, key, sizeof key), now_ms, NULL);
    (void)kq_limit_take(g->by_wf, wf ? wf : "", now_ms, NULL);
}

uint64_t cmd_hookguard_failures(cmd_hookguard *g)
{
    return atomic_load(&g->failures);
}

uint64_t cmd_hookguard_refused(cmd_hookguard *g)
{
    return atomic_load(&g->refused);
}
