/*
 * bench_worker.c — the worker engine (wk_http) against libcurl alone.
 *
 * A tiny receiver runs in this process (libmicrohttpd, one poll() thread on
 * 127.0.0.1, answering every request 200 with an empty body; not epoll:
 * libmicrohttpd 0.9.75's epoll loop stops reading some connections when
 * about 128 or more are open at once). The same
 * requests — POST of a 120-byte JSON body with the X-Kcqrs-Delivery and
 * X-Kcqrs-Signature headers, keep-alive, `--concurrency` in flight — are sent
 *   curl    by a plain libcurl multi loop: one easy handle per slot, set up
 *           once, re-added after each completion; the signature is computed
 *           once beforehand (the cheapest possible client)
 *   engine  through wk_engine_submit_http: every request validated, copied,
 *           signed (HMAC-SHA256 per request), guarded (URL check, socket
 *           callback), with an outcome callback that submits the next one
 * in alternating slices (10 per run, each client with fresh connections), so a
 * slow patch of the machine hits both alike; `--runs` runs.
 *
 * Usage: bench_worker [--requests N] [--concurrency C] [--runs R]
 *        bench_worker --curl-only URL [--requests N] [--concurrency C]
 * --curl-only: only the plain libcurl client, once, against an outside
 * receiver at URL (bench/bench_worker_runs.sh's baseline: the same receiver
 * the worker service sends to); prints "CURL_RATE <req/s>".
 * Prints each run, then the medians as bench/run.sh reads them:
 *   RESULT name=worker.curl_alone unit=req/s value=<median>
 *   RESULT name=worker.engine unit=req/s value=<median> baseline=worker.curl_alone target=>=0.5x
 * and "ratio <engine median / curl median>". The target: the engine
 * at >= 0.5 x libcurl alone. run.sh, which takes its own medians, would call
 * it with --runs 1.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "kq_log.h"
#include "kq_util.h"
#include "wk_hmac.h"
#include "wk_http.h"

static const char body[] = "{\"run_id\":\"3f0e8a2c-9c1d-4b7e-8f21-0c9a7d5e6b11\",\"step\":0,"
                           "\"payload\":{\"order\":\"o-12345\",\"total\":99.5,\"ok\":true}}";
static const char secret[] = "bench-workflow-secret";
#define SLICES 10 /* alternating slices per run */
static struct MHD_Response *ok_resp;
static atomic_uint_fast64_t served;

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **req_cls)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload;
    if (*req_cls == NULL) {
        *req_cls = (void *)&served;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        *upload_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&served, 1);
    return MHD_queue_response(c, 200, ok_resp);
}

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return sz * n;
}

/* ------------------------------------------------------------------ libcurl alone */

/* Send `total` requests, `conc` in flight; the seconds it took, or -1 if any failed. */
static double run_curl(const char *url, long total, long conc)
{
    CURLM *m = curl_multi_init();
    CURL **hs = calloc((size_t)conc, sizeof *hs);
    struct curl_slist *hdrs = NULL;
    char sig[WK_HMAC_SIG_LEN + 1], line[128];
    long started = 0, done = 0, fails = 0;
    wk_hmac_sign(secret, strlen(secret), body, strlen(body), sig, NULL, 0);
    snprintf(line, sizeof line, "%s: %s", WK_HMAC_HEADER, sig);
    hdrs = curl_slist_append(hdrs, line);
    hdrs = curl_slist_append(hdrs, WK_DELIVERY_HEADER ": bench-delivery-1");
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    double t0 = bench_now_s();
    for (long i = 0; i < conc && started < total; i++, started++) {
        hs[i] = curl_easy_init();
        curl_easy_setopt(hs[i], CURLOPT_URL, url);
        curl_easy_setopt(hs[i], CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(hs[i], CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(hs[i], CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(hs[i], CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(hs[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(hs[i], CURLOPT_TIMEOUT_MS, (long)WK_DEFAULT_TOTAL_TIMEOUT_MS);
        curl_multi_add_handle(m, hs[i]);
    }
    while (done < total) {
        int running, q;
        CURLMsg *msg;
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &q)) != NULL) {
            long code = 0;
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *h = msg->easy_handle;
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
            if (msg->data.result != CURLE_OK || code != 200)
                fails++;
            done++;
            curl_multi_remove_handle(m, h);
            if (started < total) {
                started++;
                curl_multi_add_handle(m, h);
            }
        }
        if (done < total)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    double secs = bench_now_s() - t0;
    for (long i = 0; i < conc; i++)
        if (hs[i] != NULL)
            curl_easy_cleanup(hs[i]);
    free(hs);
    curl_slist_free_all(hdrs);
    curl_multi_cleanup(m);
    if (fails > 0)
        fprintf(stderr, "bench_worker: curl: %ld failed requests\n", fails);
    return fails ? -1 : secs;
}

/* ------------------------------------------------------------------ the engine */

typedef struct eng_run {
    wk_engine *e;
    const char *url;
    long total, started, done, fails;
} eng_run;

static void submit_one(eng_run *r);

static void on_done(void *arg, const wk_outcome *o)
{
    eng_run *r = arg;
    r->done++;
    if (o->result != WK_R_RESPONSE || o->status_code != 200)
        r->fails++;
    if (r->started < r->total)
        submit_one(r);
}

static void submit_one(eng_run *r)
{
    char err[256];
    static const wk_header hs[] = {{"Content-Type", "application/json"}};
    wk_http_request q = {.method = "POST",
                         .url = r->url,
                         .headers = hs,
                         .n_headers = 1,
                         .body = body,
                         .body_len = sizeof body - 1,
                         .delivery_id = "bench-delivery-1",
                         .secret = secret,
                         .secret_len = sizeof secret - 1};
    r->started++;
    if (wk_engine_submit_http(r->e, &q, on_done, r, err, sizeof err) != 0) {
        fprintf(stderr, "bench_worker: submit: %s\n", err);
        r->done++;
        r->fails++;
    }
}

/* The same through the engine; seconds or -1. */
static double run_engine(const char *url, long total, long conc)
{
    wk_settings s;
    char err[256];
    wk_settings_defaults(&s);
    s.allow_private = 1; /* the receiver is on 127.0.0.1 */
    eng_run r = {wk_engine_new(&s, err, sizeof err), url, total, 0, 0, 0};
    if (r.e == NULL) {
        fprintf(stderr, "bench_worker: %s\n", err);
        return -1;
    }
    double t0 = bench_now_s();
    for (long i = 0; i < conc && r.started < total; i++)
        submit_one(&r);
    while (r.done < total)
        if (wk_engine_run(r.e, 100) < 0)
            break;
    double secs = bench_now_s() - t0;
    wk_engine_free(r.e);
    if (r.fails > 0)
        fprintf(stderr, "bench_worker: engine: %ld failed requests\n", r.fails);
    return r.fails || r.done < total ? -1 : secs;
}

int main(int argc, char **argv)
{
    long total = 20000, conc = 32, runs = 5;
    const char *only_url = NULL;
    for (int i = 1; i < argc; i++) {
        long *dst = NULL, lo = 1, hi = 0;
        if (strcmp(argv[i], "--curl-only") == 0 && i + 1 < argc) {
            only_url = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--requests") == 0)
            dst = &total, lo = SLICES, hi = 10000000;
        else if (strcmp(argv[i], "--concurrency") == 0)
            dst = &conc, hi = 1000;
        else if (strcmp(argv[i], "--runs") == 0)
            dst = &runs, hi = 99;
        if (dst == NULL || i + 1 >= argc || kq_parse_long(argv[++i], lo, hi, dst) != 0) {
            fprintf(stderr,
                    "usage: bench_worker [--requests N] [--concurrency C] [--runs R]\n"
                    "       bench_worker --curl-only URL [--requests N] [--concurrency C]\n");
            return 2;
        }
    }
    kq_log_init("bench_worker", KQ_LOG_ERROR, KQ_LOG_HUMAN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (only_url != NULL) {
        if (strncmp(only_url, "http://", 7) != 0) {
            fprintf(stderr, "bench_worker: --curl-only needs an http:// URL\n");
            return 2;
        }
        double secs = run_curl(only_url, total, conc);
        curl_global_cleanup();
        if (secs <= 0)
            return 1;
        printf("CURL_RATE %.1f requests=%ld concurrency=%ld seconds=%.3f\n", (double)total / secs,
               total, conc, secs);
        return 0;
    }
    ok_resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_POLL_INTERNAL_THREAD, 0, NULL, NULL, answer, NULL, MHD_OPTION_SOCK_ADDR, &sa,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)2000, MHD_OPTION_END);
    if (d == NULL || ok_resp == NULL) {
        fprintf(stderr, "bench_worker: cannot start the receiver\n");
        return 1;
    }
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/hook",
             MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
    double *c = calloc((size_t)runs, sizeof *c), *e = calloc((size_t)runs, sizeof *e);
    /* warm-up: connections, page faults */
    run_curl(url, total / 10 + 1, conc);
    run_engine(url, total / 10 + 1, conc);
    /* Each run alternates SLICES slices of each client, so load from outside
     * the benchmark (2 shared cores) hits both alike. */
    long per = total / SLICES;
    for (long i = 0; i < runs; i++) {
        double tc = 0, te = 0;
        int bad = 0;
        for (int k = 0; k < SLICES && !bad; k++) {
            double a = run_curl(url, per, conc), b = run_engine(url, per, conc);
            bad = a < 0 || b < 0;
            tc += a;
            te += b;
        }
        c[i] = bad ? 0 : (double)(per * SLICES) / tc;
        e[i] = bad ? 0 : (double)(per * SLICES) / te;
        printf("run %ld: curl %.0f req/s, engine %.0f req/s (%.2fx)\n", i + 1, c[i], e[i],
               c[i] > 0 ? e[i] / c[i] : 0);
        fflush(stdout);
    }
    qsort(c, (size_t)runs, sizeof *c, bench_cmp_double);
    qsort(e, (size_t)runs, sizeof *e, bench_cmp_double);
    double cm = c[runs / 2], em = e[runs / 2];
    printf("RESULT name=worker.curl_alone unit=req/s value=%.0f\n", cm);
    printf("RESULT name=worker.engine unit=req/s value=%.0f baseline=worker.curl_alone "
           "target=>=0.5x requests=%ld concurrency=%ld runs=%ld\n",
           em, total, conc, runs);
    printf("ratio %.3f\n", cm > 0 ? em / cm : 0);
    printf("served %llu requests\n", (unsigned long long)atomic_load(&served));
    free(c);
    free(e);
    MHD_stop_daemon(d);
    MHD_destroy_response(ok_resp);
    curl_global_cleanup();
    return cm > 0 && em > 0 ? 0 : 1;
}
