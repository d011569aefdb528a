/*
 * wk_policy.c — retry classification, full-jitter backoff and Retry-After
 * parsing (see wk_policy.h for the table).
 */
#include "wk_policy.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kq_err.h"
#include "kq_rand.h"

const char *wk_result_name(wk_result r)
{
    switch (r) {
    case WK_R_RESPONSE:
        return "response";
    case WK_R_CONNECT:
        return "connect";
    case WK_R_CONNECT_TIMEOUT:
        return "connect_timeout";
    case WK_R_TIMEOUT:
        return "timeout";
    case WK_R_TRANSPORT:
        return "transport";
    case WK_R_REFUSED:
        return "refused";
    case WK_R_TOO_LARGE:
        return "too_large";
    case WK_R_ABORTED:
        return "aborted";
    }
    return "unknown";
}

void wk_policy_defaults(wk_policy *p)
{
    p->base_ms = WK_POLICY_DEFAULT_BASE_MS;
    p->factor = WK_POLICY_DEFAULT_FACTOR;
    p->cap_ms = WK_POLICY_DEFAULT_CAP_MS;
    p->max_attempts = WK_POLICY_DEFAULT_MAX_ATTEMPTS;
}

int wk_policy_validate(const wk_policy *p, char *errstr, size_t errlen)
{
    if (p->base_ms <= 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "retry base %ld ms: must be > 0", p->base_ms);
    if (p->factor < 1)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "retry factor %u: must be >= 1", p->factor);
    if (p->cap_ms < p->base_ms)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "retry cap %ld ms: must be >= base %ld ms",
                         p->cap_ms, p->base_ms);
    if (p->max_attempts < 1)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "max attempts %u: must be >= 1",
                         p->max_attempts);
    return 0;
}

void wk_rng_seed(wk_rng *r)
{
    uint64_t s = 0;
    if (kq_rand_bytes(&s, sizeof s) != 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)r;
    }
    r->s = s ? s : 0x9E3779B97F4A7C15u;
}

uint64_t wk_rng_next(void *arg)
{
    /* xorshift64* (Vigna): fine for jitter, not for secrets. */
    wk_rng *r = arg;
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Du;
}

wk_verdict wk_policy_classify(const wk_outcome *o, const char **reason)
{
    const char *why = "";
    wk_verdict v = WK_VERDICT_FAIL;
    switch (o->result) {
    case WK_R_RESPONSE: {
        int s = o->status_code;
        if (o->proto == WK_PROTO_SMTP) {
            if (s >= 200 && s < 400) {
                v = WK_VERDICT_SUCCESS;
                why = "smtp accepted";
            } else if (s >= 400 && s < 500) {
                v = WK_VERDICT_RETRY;
                why = "smtp transient reply";
            } else {
                why = "smtp permanent reply";
            }
            break;
        }
        if (s >= 200 && s < 300) {
            v = WK_VERDICT_SUCCESS;
            why = "2xx";
        } else if (s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504) {
            v = WK_VERDICT_RETRY;
            why = "retryable status";
        } else if (s >= 300 && s < 400) {
            why = "redirect not followed";
        } else {
            why = "non-retryable status";
        }
        break;
    }
    case WK_R_CONNECT:
    case WK_R_CONNECT_TIMEOUT:
    case WK_R_TIMEOUT:
    case WK_R_TRANSPORT:
        v = WK_VERDICT_RETRY;
        why = "transport error";
        break;
    case WK_R_REFUSED:
        why = "refused by outbound guard";
        break;
    case WK_R_TOO_LARGE:
        why = "response over the size cap";
        break;
    case WK_R_ABORTED:
        v = WK_VERDICT_RETRY;
        why = "aborted";
        break;
    }
    if (reason != NULL)
        *reason = why;
    return v;
}

long wk_policy_backoff_ms(const wk_policy *p, unsigned attempt, wk_rng_fn rng, void *rng_arg)
{
    long bound = p->base_ms;
    for (unsigned i = 1; i < attempt && bound < p->cap_ms; i++) {
        if (bound > p->cap_ms / (long)p->factor) {
            bound = p->cap_ms;
            break;
        }
        bound *= (long)p->factor;
    }
    if (bound > p->cap_ms)
        bound = p->cap_ms;
    if (bound <= 0)
        return 0;
    return (long)(rng(rng_arg) % ((uint64_t)bound + 1));
}

wk_decision wk_policy_decide(const wk_policy *p, const wk_outcome *o, unsigned attempt,
                             wk_rng_fn rng, void *rng_arg)
{
    wk_decision d = {WK_VERDICT_FAIL, -1, ""};
    d.verdict = wk_policy_classify(o, &d.reason);
    if (d.verdict != WK_VERDICT_RETRY)
        return d;
    if (attempt >= p->max_attempts) {
        d.verdict = WK_VERDICT_FAIL;
        d.reason = "attempts exhausted";
        return d;
    }
    if (o->result == WK_R_RESPONSE && o->retry_after_s >= 0) {
        d.delay_ms = o->retry_after_s > p->cap_ms / 1000 ? p->cap_ms : o->retry_after_s * 1000;
        if (d.delay_ms > p->cap_ms)
            d.delay_ms = p->cap_ms;
        d.reason = "retry-after";
        return d;
    }
    d.delay_ms = wk_policy_backoff_ms(p, attempt, rng, rng_arg);
    return d;
}

long wk_policy_parse_retry_after(const char *v, time_t now)
{
    char buf[128];
    size_t n;
    if (v == NULL)
        return -1;
    while (*v == ' ' || *v == '\t')
        v++;
    n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n'))
        n--;
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, v, n);
    buf[n] = '\0';
    if (isdigit((unsigned char)buf[0])) {
        long secs = 0;
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)buf[i]))
                return -1;
            if (secs > (LONG_MAX - 9) / 10)
                secs = LONG_MAX / 10; /* saturate: the cap applies anyway */
            else
                secs = secs * 10 + (buf[i] - '0');
        }
        return secs;
    }
    /* An HTTP-date starts with a day name; curl_getdate knows all three forms. */
    if (!isalpha((unsigned char)buf[0]))
        return -1;
    time_t t = curl_getdate(buf, NULL);
    if (t == (time_t)-1)
        return -1;
    return t > now ? (long)(t - now) : 0;
}

int wk_policy_is_destination_failure(const wk_outcome *o)
{
    switch (o->result) {
    case WK_R_CONNECT:
    case WK_R_CONNECT_TIMEOUT:
    case WK_R_TIMEOUT:
    case WK_R_TRANSPORT:
        return 1;
    case WK_R_RESPONSE:
        if (o->proto == WK_PROTO_SMTP)
            return o->status_code >= 400 && o->status_code < 500;
        return o->status_code >= 500 || o->status_code == 408 || o->status_code == 429;
    default:
        return 0;
    }
}
