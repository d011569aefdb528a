/*
 * cmd_hookguard.h — limits on failed webhook attempts.
 *
 * What it is for
 *   POST /hooks/{workflow_id} is public: anyone may try secrets. Every
 *   failed attempt (401 invalid_webhook_secret: no credential, a wrong secret
 *   or signature, an unknown workflow) takes a token from two buckets, the
 *   client address's (kq_http_req_client: the TCP peer, or X-Forwarded-For
 *   from a trusted proxy; an IPv6 address counts as its /64) and the
 *   workflow id's. A webhook whose address or
 *   workflow has no token left is answered 429 rate_limited with
 *   Retry-After before anything else is looked at. Buckets hold `burst`
 *   failures and regain `per_min` per minute (KCQRS_HOOK_FAIL_BURST,
 *   KCQRS_HOOK_FAIL_PER_MIN); successes take nothing.
 *
 *   The workflow's bucket stops a guesser spread over many addresses, at a
 *   price: while it is empty, the workflow's rightful caller is refused too
 *   (429, and its sender retries later). That is the trade of every lockout.
 *
 * What it owns: two kq_limit tables of `entries` buckets each (bounded, least
 *   recently used evicted), per process.
 *
 * Threads: any (kq_limit locks).
 */
#ifndef CMD_HOOKGUARD_H
#define CMD_HOOKGUARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct cmd_hookguard cmd_hookguard;

/* A guard; NULL when out of memory or on a bad argument (all > 0). Owned by
 * the caller (cmd_hookguard_free). */
cmd_hookguard *cmd_hookguard_new(size_t entries, double per_min, double burst);
void cmd_hookguard_free(cmd_hookguard *g);

/* 1 when a webhook from `client` for workflow `wf` may be tried at now_ms;
 * else 0 and *retry_after_s (>= 1) says when. NULL strings count as "". */
int cmd_hookguard_check(cmd_hookguard *g, const char *client, const char *wf, int64_t now_ms,
                        int *retry_after_s);

/* Count a failed attempt against both buckets. */
void cmd_hookguard_fail(cmd_hookguard *g, const char *client, const char *wf, int64_t now_ms);

/* Failed attempts counted and webhooks refused 429, since start (metrics). */
uint64_t cmd_hookguard_failures(cmd_hookguard *g);
uint64_t cmd_hookguard_refused(cmd_hookguard *g);

#endif
