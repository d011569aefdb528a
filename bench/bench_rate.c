/*
 * bench_rate.c — fixed-rate load for the latency target of issue #3 ("p99
 * latency at half the maximum rate at most 20 ms"), which wrk cannot measure
 * (wrk runs closed-loop as fast as it can; wrk2 is not packaged in Debian).
 *
 * Open-loop: request i is due at t0 + i / R. At most --connections requests
 * are in flight, each on its own keep-alive connection (libcurl multi, one
 * easy handle per connection, reused). A request that finds no free connection
 * at its due time waits, and that wait counts: latency is measured from the
 * due time to the end of the answer (as wrk2 does, so a stalled server cannot
 * hide behind a stalled client: no coordinated omission).
 *
 * Each request is POST <url> with Authorization: Bearer <key>, Content-Type:
 * application/json and a body creating a resource with a unique id
 * ("<tag>-<n>", typical field sizes). Anything but 201 counts as an error.
 *
 * Usage: bench_rate --url URL --key KEY --rate R --seconds S
 *                   [--connections N] [--tag T] [--name NAME]
 * Prints (NAME defaults to commands.rate):
 *   RESULT name=NAME.p50 unit=ms value=... rate=R achieved=... requests=... errors=...
 *   RESULT name=NAME.p99 unit=ms value=... [target=<=20]
 * Exit status: 0 when every request answered 201 and the achieved rate is
 * within 5% of R; 1 otherwise (errors, or the client could not keep up); 2 usage.
 * Threads: one (curl multi).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "bench_util.h"

#define PROG "bench_rate"

typedef struct rt_conn {
    CURL *h;
    struct curl_slist *hdrs;
    char body[512];
    double due;
    int busy;
} rt_conn;

static size_t rt_discard(char *ptr, size_t size, size_t nmemb, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * nmemb;
}

static void rt_start(CURLM *m, rt_conn *c, const char *tag, long seq, double due)
{
    snprintf(c->body, sizeof c->body,
             "{\"id\":\"%s-%ld\",\"name\":\"benchmark resource %012ld\","
             "\"description\":\"created by the kcqrs benchmark; unique id, typical field "
             "sizes\",\"status\":\"active\"}",
             tag, seq, seq);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body));
    c->due = due;
    c->busy = 1;
    curl_multi_add_handle(m, c->h);
}

int main(int argc, char **argv)
{
    const char *url = NULL, *key = NULL, *tag = "rate", *name = "commands.rate";
    double rate = 0, seconds = 0, t0, end, next_due, *lat = NULL;
    long conns = 64, seq = 0, done = 0, errors = 0, nlat = 0, caplat;
    long first_status = 0;
    char auth[512];
    rt_conn *cs = NULL;
    CURLM *m = NULL;
    int rc = 1, running;

    for (int i = 1; i < argc; i++) {
        char *e = NULL;
        if (i + 1 >= argc)
            goto usage;
        if (strcmp(argv[i], "--url") == 0)
            url = argv[++i];
        else if (strcmp(argv[i], "--key") == 0)
            key = argv[++i];
        else if (strcmp(argv[i], "--tag") == 0)
            tag = argv[++i];
        else if (strcmp(argv[i], "--name") == 0)
            name = argv[++i];
        else if (strcmp(argv[i], "--rate") == 0) {
            rate = strtod(argv[++i], &e);
            if (*e || !(rate > 0 && rate < 1e7))
                goto usage;
        } else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = strtod(argv[++i], &e);
            if (*e || !(seconds > 0 && seconds <= 3600))
                goto usage;
        } else if (strcmp(argv[i], "--connections") == 0) {
            conns = strtol(argv[++i], &e, 10);
            if (*e || conns < 1 || conns > 10000)
                goto usage;
        } else
            goto usage;
    }
    if (url == NULL || key == NULL || rate <= 0 || seconds <= 0)
        goto usage;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "%s: curl_global_init failed\n", PROG);
        return 1;
    }
    caplat = (long)(rate * seconds) + 16;
    lat = calloc((size_t)caplat, sizeof *lat);
    cs = calloc((size_t)conns, sizeof *cs);
    m = curl_multi_init();
    if (lat == NULL || cs == NULL || m == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        goto out;
    }
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, conns);
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    for (long i = 0; i < conns; i++) {
        rt_conn *c = &cs[i];
        if ((c->h = curl_easy_init()) == NULL) {
            fprintf(stderr, "%s: curl_easy_init failed\n", PROG);
            goto out;
        }
        c->hdrs = curl_slist_append(NULL, auth);
        c->hdrs = curl_slist_append(c->hdrs, "Content-Type: application/json");
        c->hdrs = curl_slist_append(c->hdrs, "Expect:"); /* no 100-continue round trip */
        curl_easy_setopt(c->h, CURLOPT_URL, url);
        curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdrs);
        curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, rt_discard);
        curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt(c->h, CURLOPT_PRIVATE, c);
        curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    }

    t0 = bench_now_s();
    end = t0 + seconds;
    next_due = t0;
    for (;;) {
        double now = bench_now_s(), wait_s;
        CURLMsg *msg;
        int left;

        /* Start every request that is due, as far as connections allow. */
        while (next_due <= now && next_due < end) {
            rt_conn *free_c = NULL;
            for (long i = 0; i < conns; i++)
                if (!cs[i].busy) {
                    free_c = &cs[i];
                    break;
                }
            if (free_c == NULL)
                break; /* it waits; its latency counts from next_due */
            rt_start(m, free_c, tag, seq++, next_due);
            next_due = t0 + (double)seq / rate;
        }
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            rt_conn *c = NULL;
            long status = 0;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK || status != 201) {
                if (errors++ == 0) {
                    first_status = status;
                    fprintf(stderr, "%s: first error: status %ld, %s\n", PROG, status,
                            curl_easy_strerror(msg->data.result));
                }
            }
            if (nlat < caplat)
                lat[nlat++] = bench_now_s() - c->due;
            done++;
            curl_multi_remove_handle(m, c->h);
            c->busy = 0;
        }
        if (next_due >= end && running == 0) {
            int busy = 0;
            for (long i = 0; i < conns; i++)
                busy |= cs[i].busy;
            if (!busy)
                break;
        }
        if (bench_now_s() > end + 60) {
            fprintf(stderr, "%s: requests still open 60 s after the end\n", PROG);
            goto out;
        }
        /* Sleep in poll until the next due time or socket activity. */
        wait_s = next_due < end ? next_due - bench_now_s() : 0.01;
        if (wait_s > 0.01)
            wait_s = 0.01;
        if (wait_s > 0)
            curl_multi_poll(m, NULL, 0, (int)ceil(wait_s * 1000), NULL);
    }
    {
        double elapsed = bench_now_s() - t0, achieved = (double)done / seconds;
        qsort(lat, (size_t)nlat, sizeof *lat, bench_cmp_double);
        printf("RESULT name=%s.p50 unit=ms value=%.3f rate=%.1f achieved=%.1f requests=%ld "
               "errors=%ld connections=%ld seconds=%.1f elapsed=%.2f max_ms=%.3f\n",
               name, bench_pct_double(lat, (size_t)nlat, 50) * 1e3, rate, achieved, done, errors,
               conns, seconds, elapsed, nlat ? lat[nlat - 1] * 1e3 : 0.0);
        printf("RESULT name=%s.p99 unit=ms value=%.3f target=<=20\n", name,
               bench_pct_double(lat, (size_t)nlat, 99) * 1e3);
        fflush(stdout);
        if (errors > 0) {
            fprintf(stderr, "%s: %ld of %ld requests were not answered 201 (first: %ld)\n", PROG,
                    errors, done, first_status);
            goto out;
        }
        if (fabs(achieved - rate) > 0.05 * rate) {
            fprintf(stderr, "%s: achieved %.1f requests/s instead of %.1f\n", PROG, achieved, rate);
            goto out;
        }
    }
    rc = 0;
out:
    for (long i = 0; cs != NULL && i < conns; i++) {
        if (cs[i].h != NULL) {
            if (cs[i].busy)
                curl_multi_remove_handle(m, cs[i].h);
            curl_easy_cleanup(cs[i].h);
        }
        curl_slist_free_all(cs[i].hdrs);
    }
    if (m != NULL)
        curl_multi_cleanup(m);
    free(cs);
    free(lat);
    curl_global_cleanup();
    return rc;

usage:
    fprintf(stderr,
            "usage: %s --url URL --key KEY --rate R --seconds S [--connections N] [--tag T] "
            "[--name NAME]\n",
            argv[0]);
    return 2;
}
