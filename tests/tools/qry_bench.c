/*
 * qry_bench.c — load generator and fixture for the query benchmark
 * (bench/bench_query.sh).
 *
 *   qry_bench fill DIR N
 *       Create the LMDB read model in DIR (…/readmodel) the way the projector
 *       lays it out (lib/kq_rm.h) with N resources "b-000000".., each with a
 *       30-character name and a 61-character description.
 *   qry_bench get --url BASE --key KEY --ids N --rate R --seconds S [--connections C]
 *       Open loop: GET BASE/api/v1/resources/b-<i mod N> due at t0 + i/R, at
 *       most C in flight on keep-alive connections; latency counts from the
 *       due time (no coordinated omission, as bench/bench_rate.c). Anything
 *       but 200 is an error. Prints
 *         RESULT name=query.get_rate.p50 unit=ms value=... rate= achieved= ...
 *         RESULT name=query.get_rate.p99 unit=ms value=... target=<=2
 *   qry_bench lag --cmd CMDBASE --url QRYBASE --wkey KEY --key KEY --rate R --seconds S
 *       Command-to-visible lag: POST CMDBASE/api/v1/resources (unique ids) due
 *       at R per second; as soon as one answers 201, GET its resource from
 *       the query API with its X-Consistency-Token on the same connection slot.
 *       lag = from the 201 to the query's 200 (what a client that reads its
 *       own write waits); also end-to-end from the POST's due time.
 *         RESULT name=query.visible_lag.p50 unit=ms value=...
 *         RESULT name=query.visible_lag.p99 unit=ms value=...
 *         RESULT name=query.write_to_read.p99 unit=ms value=...
 *       --read events reads GET .../resources/{id}/events instead (served from
 *       PostgreSQL: the PostgreSQL read model's lag); --name N prints N.p50,
 *       N.p99, N.write_to_read.p50/.p99 instead of the names above (and no target).
 * Exit status 0 when every answer was as expected and the achieved rate is
 * within 5% of R, 1 otherwise, 2 usage. One thread (curl multi).
 */
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../bench/bench_util.h"
#include "kq_rm.h"

#define PROG "qry_bench"

/* ------------------------------------------------------------------ fill */

static int fill(const char *dir, long n)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi meta, offs, vers, res, bys;
    char err[256];
    int rc;

    if (kq_rm_env_open(dir, (size_t)1 << 30, 1, &env, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        return 1;
    }
    if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_META, MDB_CREATE, &meta)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_OFFSETS, MDB_CREATE, &offs)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_VERSIONS, MDB_CREATE, &vers)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_RESOURCES, MDB_CREATE, &res)) != 0 ||
        (rc = mdb_dbi_open(txn, KQ_RM_DB_RES_BY_STATUS, MDB_CREATE, &bys)) != 0)
        goto fail;
    {
        MDB_val k = {sizeof "format" - 1, (void *)"format"},
                v = {sizeof KQ_RM_FORMAT - 1, (void *)KQ_RM_FORMAT};
        if ((rc = mdb_put(txn, meta, &k, &v, 0)) != 0)
            goto fail;
    }
    for (long i = 0; i < n; i++) {
        char id[32], name[40];
        const char *desc = "created by the kcqrs benchmark; unique id, typical field sizes";
        uint8_t rec[256], sk[40];
        kq_rm_resource r;
        MDB_val k, v;
        int skl;

        snprintf(id, sizeof id, "b-%06ld", i);
        snprintf(name, sizeof name, "benchmark resource %011ld", i);
        memset(&r, 0, sizeof r);
        r.version = 1;
        r.created_at_us = r.updated_at_us = 1760000000000000LL + i;
        r.name = name;
        r.name_len = (uint32_t)strlen(name);
        r.description = desc;
        r.description_len = (uint32_t)strlen(desc);
        kq_rm_resource_encode(&r, rec);
        k.mv_data = id;
        k.mv_size = strlen(id);
        v.mv_data = rec;
        v.mv_size = kq_rm_resource_size(&r);
        if ((rc = mdb_put(txn, res, &k, &v, 0)) != 0)
            goto fail;
        skl = kq_rm_prefixed_key(r.status, id, strlen(id), sk, sizeof sk);
        k.mv_data = sk;
        k.mv_size = (size_t)skl;
        v.mv_data = "";
        v.mv_size = 0;
        if ((rc = mdb_put(txn, bys, &k, &v, 0)) != 0)
            goto fail;
    }
    if ((rc = mdb_txn_commit(txn)) != 0) {
        txn = NULL;
        goto fail;
    }
    mdb_env_close(env);
    return 0;
fail:
    fprintf(stderr, "%s: LMDB: %s\n", PROG, mdb_strerror(rc));
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(env);
    return 1;
}

/* ------------------------------------------------------------------ load */

typedef struct conn {
    CURL *h;
    struct curl_slist *hdrs;
    char url[512];
    char body[512];
    char *resp;
    size_t resp_len;
    double due, acked;
    int busy;
    int phase; /* 0: GET (get mode) or POST (lag mode); 1: lag mode's GET */
} conn;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    conn *c = ud;
    char *nb = realloc(c->resp, c->resp_len + sz * n + 1);
    if (nb == NULL)
        return 0;
    c->resp = nb;
    memcpy(c->resp + c->resp_len, p, sz * n);
    c->resp_len += sz * n;
    c->resp[c->resp_len] = '\0';
    return sz * n;
}

typedef struct opts {
    int lag;
    const char *url, *cmd, *key, *wkey, *tag;
    const char *suffix; /* "" (the resource from LMDB) or "/events" (PostgreSQL) */
    const char *name;   /* NULL: the query.* names */
    long ids, conns;
    double rate, seconds;
} opts;

static void start_get(CURLM *m, conn *c, const opts *o, const char *id, const char *token)
{
    char hdr[700];
    snprintf(c->url, sizeof c->url, "%s/api/v1/resources/%s%s", o->url, id,
             token != NULL ? o->suffix : "");
    curl_slist_free_all(c->hdrs);
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", o->key);
    c->hdrs = curl_slist_append(NULL, hdr);
    if (token) {
        snprintf(hdr, sizeof hdr, "X-Consistency-Token: %s", token);
        c->hdrs = curl_slist_append(c->hdrs, hdr);
    }
    curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c->h, CURLOPT_URL, c->url);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdrs);
    c->resp_len = 0;
    curl_multi_add_handle(m, c->h);
}

static void start_post(CURLM *m, conn *c, const opts *o, long seq)
{
    char hdr[700];
    snprintf(c->url, sizeof c->url, "%s/api/v1/resources", o->cmd);
    snprintf(c->body, sizeof c->body,
             "{\"id\":\"%s-%ld\",\"name\":\"benchmark resource %012ld\",\"status\":\"active\"}",
             o->tag, seq, seq);
    curl_slist_free_all(c->hdrs);
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", o->wkey);
    c->hdrs = curl_slist_append(NULL, hdr);
    c->hdrs = curl_slist_append(c->hdrs, "Content-Type: application/json");
    c->hdrs = curl_slist_append(c->hdrs, "Expect:");
    curl_easy_setopt(c->h, CURLOPT_URL, c->url);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body));
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdrs);
    c->resp_len = 0;
    curl_multi_add_handle(m, c->h);
}

static int load(const opts *o)
{
    long cap = (long)(o->rate * o->seconds) + 16, seq = 0, done = 0, errors = 0, nlat = 0;
    double *lat = calloc((size_t)cap, sizeof *lat), *e2e = calloc((size_t)cap, sizeof *e2e);
    conn *cs = calloc((size_t)o->conns, sizeof *cs);
    CURLM *m = curl_multi_init();
    double t0, end, next_due;
    int rc = 1, running;

    if (lat == NULL || e2e == NULL || cs == NULL || m == NULL)
        goto out;
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, o->conns * (o->lag ? 2 : 1));
    for (long i = 0; i < o->conns; i++) {
        cs[i].h = curl_easy_init();
        if (cs[i].h != NULL && getenv("KCQRS_HTTP_TLS_CA") != NULL) /* https: the services' CA */
            curl_easy_setopt(cs[i].h, CURLOPT_CAINFO, getenv("KCQRS_HTTP_TLS_CA"));
        curl_easy_setopt(cs[i].h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(cs[i].h, CURLOPT_WRITEDATA, &cs[i]);
        curl_easy_setopt(cs[i].h, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(cs[i].h, CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt(cs[i].h, CURLOPT_PRIVATE, &cs[i]);
        curl_easy_setopt(cs[i].h, CURLOPT_NOSIGNAL, 1L);
    }
    t0 = bench_now_s();
    end = t0 + o->seconds;
    next_due = t0;
    for (;;) {
        double now = bench_now_s(), wait_s;
        CURLMsg *msg;
        int left, busy = 0;

        while (next_due <= now && next_due < end) {
            conn *f = NULL;
            for (long i = 0; i < o->conns && f == NULL; i++)
                if (!cs[i].busy)
                    f = &cs[i];
            if (f == NULL)
                break;
            f->busy = 1;
            f->due = next_due;
            f->phase = 0;
            if (o->lag) {
                start_post(m, f, o, seq);
            } else {
                char id[32];
                snprintf(id, sizeof id, "b-%06ld", seq % o->ids);
                start_get(m, f, o, id, NULL);
            }
            seq++;
            next_due = t0 + (double)seq / o->rate;
        }
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            conn *c = NULL;
            long status = 0;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            curl_multi_remove_handle(m, c->h);
            if (o->lag && c->phase == 0 && msg->data.result == CURLE_OK && status == 201) {
                json_t *j = json_loads(c->resp ? c->resp : "", 0, NULL);
                const char *tok = json_string_value(json_object_get(j, "consistency_token"));
                const char *id = json_string_value(json_object_get(j, "id"));
                if (tok && id) {
                    char idc[80], tokc[600];
                    snprintf(idc, sizeof idc, "%s", id);
                    snprintf(tokc, sizeof tokc, "%s", tok);
                    c->acked = bench_now_s();
                    c->phase = 1;
                    start_get(m, c, o, idc, tokc);
                    json_decref(j);
                    continue;
                }
                json_decref(j);
                status = 0;
            }
            if (msg->data.result != CURLE_OK || status != 200) {
                if (errors++ == 0)
                    fprintf(stderr, "%s: first error: status %ld (%s) %s\n", PROG, status,
                            curl_easy_strerror(msg->data.result), c->resp ? c->resp : "");
            } else if (nlat < cap) {
                double t = bench_now_s();
                lat[nlat] = o->lag ? t - c->acked : t - c->due;
                e2e[nlat++] = t - c->due;
            }
            done++;
            c->busy = 0;
        }
        for (long i = 0; i < o->conns; i++)
            busy |= cs[i].busy;
        if (next_due >= end && !busy)
            break;
        if (bench_now_s() > end + 60) {
            fprintf(stderr, "%s: requests still open 60 s after the end\n", PROG);
            goto out;
        }
        wait_s = next_due < end ? next_due - bench_now_s() : 0.01;
        if (wait_s > 0.01)
            wait_s = 0.01;
        if (wait_s > 0)
            curl_multi_poll(m, NULL, 0, (int)ceil(wait_s * 1000), NULL);
    }
    {
        const char *name = o->name ? o->name : o->lag ? "query.visible_lag" : "query.get_rate";
        const char *e2e_name = o->name ? o->name : "query";
        double achieved = (double)done / o->seconds;
        qsort(lat, (size_t)nlat, sizeof *lat, bench_cmp_double);
        qsort(e2e, (size_t)nlat, sizeof *e2e, bench_cmp_double);
        printf("RESULT name=%s.p50 unit=ms value=%.3f rate=%.1f achieved=%.1f requests=%ld "
               "errors=%ld connections=%ld max_ms=%.3f\n",
               name, bench_pct_double(lat, (size_t)nlat, 50) * 1e3, o->rate, achieved, done, errors,
               o->conns, nlat ? lat[nlat - 1] * 1e3 : 0.0);
        printf("RESULT name=%s.p99 unit=ms value=%.3f%s\n", name,
               bench_pct_double(lat, (size_t)nlat, 99) * 1e3,
               o->name  ? ""
               : o->lag ? " target=<=50"
                        : " target=<=2");
        if (o->lag)
            printf("RESULT name=%s.write_to_read.p50 unit=ms value=%.3f\n"
                   "RESULT name=%s.write_to_read.p99 unit=ms value=%.3f\n",
                   e2e_name, bench_pct_double(e2e, (size_t)nlat, 50) * 1e3, e2e_name,
                   bench_pct_double(e2e, (size_t)nlat, 99) * 1e3);
        fflush(stdout);
        if (errors > 0 || fabs(achieved - o->rate) > 0.05 * o->rate) {
            fprintf(stderr, "%s: %ld errors, achieved %.1f/s of %.1f/s\n", PROG, errors, achieved,
                    o->rate);
            goto out;
        }
    }
    rc = 0;
out:
    for (long i = 0; cs != NULL && i < o->conns; i++) {
        if (cs[i].h) {
            if (cs[i].busy)
                curl_multi_remove_handle(m, cs[i].h);
            curl_easy_cleanup(cs[i].h);
        }
        curl_slist_free_all(cs[i].hdrs);
        free(cs[i].resp);
    }
    if (m)
        curl_multi_cleanup(m);
    free(cs);
    free(lat);
    free(e2e);
    return rc;
}

int main(int argc, char **argv)
{
    opts o = {0, NULL, NULL, NULL, NULL, "lag", "", NULL, 1, 64, 0, 0};
    int rc;

    if (argc == 4 && strcmp(argv[1], "fill") == 0) {
        char *e;
        long n = strtol(argv[3], &e, 10);
        if (*e || n < 1 || n > 100000000)
            goto usage;
        mkdir(argv[2], 0700);
        return fill(argv[2], n);
    }
    if (argc < 2 || (strcmp(argv[1], "get") != 0 && strcmp(argv[1], "lag") != 0))
        goto usage;
    o.lag = strcmp(argv[1], "lag") == 0;
    for (int i = 2; i < argc; i++) {
        char *e = NULL;
        if (i + 1 >= argc)
            goto usage;
        if (strcmp(argv[i], "--url") == 0)
            o.url = argv[++i];
        else if (strcmp(argv[i], "--cmd") == 0)
            o.cmd = argv[++i];
        else if (strcmp(argv[i], "--key") == 0)
            o.key = argv[++i];
        else if (strcmp(argv[i], "--wkey") == 0)
            o.wkey = argv[++i];
        else if (strcmp(argv[i], "--tag") == 0)
            o.tag = argv[++i];
        else if (strcmp(argv[i], "--name") == 0)
            o.name = argv[++i];
        else if (strcmp(argv[i], "--read") == 0) {
            i++;
            if (strcmp(argv[i], "resource") == 0)
                o.suffix = "";
            else if (strcmp(argv[i], "events") == 0)
                o.suffix = "/events";
            else
                goto usage;
        } else if (strcmp(argv[i], "--ids") == 0) {
            o.ids = strtol(argv[++i], &e, 10);
            if (*e || o.ids < 1)
                goto usage;
        } else if (strcmp(argv[i], "--connections") == 0) {
            o.conns = strtol(argv[++i], &e, 10);
            if (*e || o.conns < 1 || o.conns > 10000)
                goto usage;
        } else if (strcmp(argv[i], "--rate") == 0) {
            o.rate = strtod(argv[++i], &e);
            if (*e || !(o.rate > 0 && o.rate < 1e7))
                goto usage;
        } else if (strcmp(argv[i], "--seconds") == 0) {
            o.seconds = strtod(argv[++i], &e);
            if (*e || !(o.seconds > 0 && o.seconds <= 3600))
                goto usage;
        } else
            goto usage;
    }
    if (o.url == NULL || o.key == NULL || o.rate <= 0 || o.seconds <= 0 ||
        (o.lag && (o.cmd == NULL || o.wkey == NULL)))
        goto usage;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    rc = load(&o);
    curl_global_cleanup();
    return rc;
usage:
    fprintf(stderr,
            "usage: %s fill DIR N\n"
            "       %s get --url BASE --key KEY --ids N --rate R --seconds S [--connections C]\n"
            "       %s lag --cmd BASE --url BASE --wkey KEY --key KEY --rate R --seconds S\n"
            "              [--connections C] [--tag T] [--read resource|events] [--name N]\n",
            PROG, PROG, PROG);
    return 2;
}
