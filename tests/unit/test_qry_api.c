/*
 * test_qry_api.c — kcqrs-query's LMDB side and wire forms: a real LMDB read
 * model in a temporary directory (filled through lib/kq_rm.h the way the
 * projector lays it out), the query routes served in-process on 127.0.0.1:0
 * and driven with libcurl. PostgreSQL routes are only checked for their
 * parameter validation and their 503 without a database.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_resp.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kq_time_table.h"
#include "kq_token.h"
#include "kq_auth.h"
#include "kq_err.h"
#include "kq_http.h"
#include "kq_log.h"
#include "kq_rm.h"
#include "qry_api.h"
#include "qry_text.h"

#define NRES 50
#define TOPIC "kcqrs.resource.events"

static char tmpdir[256], rmdir_[300];
static MDB_env *wenv; /* the "projector" side */
static kq_config cfg;
static qry_api api;
static qry_rm *rm;
static qry_snap *snaps;
static qry_wait *waiter;
static kq_http_server *srv;
static unsigned port;
static kq_auth_keys *keys;
static char key_admin[64], key_writer[64], key_reader[64], key_auditor[64];

/* ------------------------------------------------------------------ the read model */

static void put_offset(int32_t partition, int64_t next)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k, v;
    char key[128];
    int kl = kq_rm_offset_key(TOPIC, partition, key, sizeof key);

    assert_int_equal(mdb_txn_begin(wenv, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, KQ_RM_DB_OFFSETS, MDB_CREATE, &dbi), 0);
    k.mv_data = key;
    k.mv_size = (size_t)kl;
    v.mv_data = &next;
    v.mv_size = sizeof next;
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

/* Resources r000..r049: status i % 3, version i % 5 + 1; ids inserted in reverse. */
static int fill_model(void)
{
    MDB_txn *txn;
    MDB_dbi meta, offs, vers, res, bys;
    char err[256];

    if (kq_rm_env_open(rmdir_, 64u << 20, 1, &wenv, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (mdb_txn_begin(wenv, NULL, 0, &txn) != 0 ||
        mdb_dbi_open(txn, KQ_RM_DB_META, MDB_CREATE, &meta) != 0 ||
        mdb_dbi_open(txn, KQ_RM_DB_OFFSETS, MDB_CREATE, &offs) != 0 ||
        mdb_dbi_open(txn, KQ_RM_DB_VERSIONS, MDB_CREATE, &vers) != 0 ||
        mdb_dbi_open(txn, KQ_RM_DB_RESOURCES, MDB_CREATE, &res) != 0 ||
        mdb_dbi_open(txn, KQ_RM_DB_RES_BY_STATUS, MDB_CREATE, &bys) != 0)
        return -1;
    for (int i = NRES - 1; i >= 0; i--) {
        char id[16], name[32], desc[32];
        uint8_t rec[256], sk[32];
        kq_rm_resource r;
        MDB_val k, v;
        int skl;

        snprintf(id, sizeof id, "r%03d", i);
        snprintf(name, sizeof name, "name %d", i);
        snprintf(desc, sizeof desc, i % 2 ? "desc \"%d\"" : "", i);
        memset(&r, 0, sizeof r);
        r.version = i % 5 + 1;
        r.created_at_us = 1700000000000000LL + i;
        r.updated_at_us = 1700000000123456LL + i * 1000000LL;
        r.status = (uint8_t)(i % 3);
        r.name = name;
        r.name_len = (uint32_t)strlen(name);
        r.description = desc;
        r.description_len = (uint32_t)strlen(desc);
        kq_rm_resource_encode(&r, rec);
        k.mv_data = id;
        k.mv_size = strlen(id);
        v.mv_data = rec;
        v.mv_size = kq_rm_resource_size(&r);
        if (mdb_put(txn, res, &k, &v, 0) != 0)
            return -1;
        skl = kq_rm_prefixed_key(r.status, id, strlen(id), sk, sizeof sk);
        k.mv_data = sk;
        k.mv_size = (size_t)skl;
        v.mv_data = "";
        v.mv_size = 0;
        if (mdb_put(txn, bys, &k, &v, 0) != 0)
            return -1;
    }
    return mdb_txn_commit(txn) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ fixture */

static int add_key(char *key, const char *name, const char *roles, char *text, size_t cap)
{
    char hex[65], err[128];
    if (kq_auth_generate_key(key, 64, err, sizeof err) != 0)
        return -1;
    kq_auth_hash_hex(key, strlen(key), hex);
    snprintf(text + strlen(text), cap - strlen(text), "%s %s %s\n", name, roles, hex);
    return 0;
}

static int setup(void **state)
{
    char text[1024] = "", err[256];
    kq_http_route routes[QRY_API_NROUTES];
    kq_http_options o;
    qry_wait_options wo;

    (void)state;
    kq_log_init("test_qry_api", getenv("TEST_QRY_LOG") ? KQ_LOG_INFO : KQ_LOG_ERROR, KQ_LOG_HUMAN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_qry_XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(rmdir_, sizeof rmdir_, "%s/%s", tmpdir, KQ_RM_SUBDIR);
    if (fill_model() != 0)
        return -1;
    if (add_key(key_admin, "root", "admin", text, sizeof text) ||
        add_key(key_writer, "writer1", "writer", text, sizeof text) ||
        add_key(key_reader, "reader1", "reader", text, sizeof text) ||
        add_key(key_auditor, "aud1", "auditor", text, sizeof text) ||
        kq_auth_parse(text, strlen(text), "keys", &keys, err, sizeof err) != 0)
        return -1;
    memset(&cfg, 0, sizeof cfg);
    cfg.topic_prefix = "kcqrs";
    cfg.partitions = 3;
    cfg.query_wait_ms = 400;
    cfg.query_ready_lag = 100000;
    cfg.pg_schema = "kcqrs";
    if (qry_api_init(&api, &cfg) != 0 || qry_rm_new(rmdir_, 64u << 20, 0, &rm) != 0 ||
        qry_snap_new(tmpdir, 8u << 20, &snaps) != 0)
        return -1;
    api.rm = rm;
    api.snaps = snaps;
    memset(&wo, 0, sizeof wo);
    wo.lmdb_data_path = qry_rm_data_path(rm);
    wo.fallback_ms = 1000; /* long: the inotify wake-up must do the work */
    wo.load = qry_api_wait_load;
    wo.done = qry_api_wait_done;
    wo.arg = &api;
    if (qry_wait_start(&wo, &waiter, err, sizeof err) != 0)
        return -1;
    api.wait = waiter;
    qry_api_routes(&api, routes);
    memset(&o, 0, sizeof o);
    o.addr = "127.0.0.1:0";
    o.limits = kq_http_limits_default();
    o.routes = routes;
    o.nroutes = QRY_API_NROUTES;
    o.keys = keys;
    o.metrics = qry_api_metrics;
    o.metrics_arg = &api;
    if (kq_http_start(&o, &srv, err, sizeof err) != 0) {
        fprintf(stderr, "start: %s\n", err);
        return -1;
    }
    port = kq_http_port(srv);
    return 0;
}

static int teardown(void **state)
{
    char cmd[400];
    (void)state;
    qry_wait_stop(waiter);
    kq_http_stop(srv);
    qry_wait_free(waiter);
    qry_snap_free(snaps);
    qry_rm_free(rm);
    mdb_env_close(wenv);
    kq_auth_free(keys);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        return -1;
    curl_global_cleanup();
    return 0;
}

/* ------------------------------------------------------------------ client */

/* GET path with key (may be NULL) and one extra header line (may be NULL). */
static void get_h(const char *path, const char *key, const char *extra, resp *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[1024], line[256];
    struct timespec t0, t1;

    memset(r, 0, sizeof *r);
    assert_non_null(c);
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (key != NULL) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, line);
    }
    if (extra != NULL)
        h = curl_slist_append(h, extra);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (curl_easy_perform(c) != CURLE_OK)
        fail_msg("GET %s failed", path);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r->secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r->body != NULL)
        r->json = json_loads(r->body, 0, NULL);
}

static void get(const char *path, const char *key, resp *r)
{
    get_h(path, key, NULL, r);
}

static json_t *details(const resp *r)
{
    return json_object_get(r->json, "errors");
}

/* 1 when some detail names `field`. */
static int detail_for(const resp *r, const char *field)
{
    size_t i;
    json_t *d;
    json_array_foreach(details(r), i, d) if (strcmp(json_string_value(json_object_get(d, "field")),
                                                    field) == 0) return 1;
    return 0;
}

static void expect_400(const char *path, const char *key, const char *field)
{
    resp r;
    get(path, key, &r);
    if (r.status != 400 || !detail_for(&r, field))
        fail_msg("%s: status %ld body %s (want 400 naming %s)", path, r.status,
                 r.body ? r.body : "", field);
    assert_string_equal(err_code(&r), "validation_failed");
    resp_free(&r);
}

/* ------------------------------------------------------------------ tests */

static void test_text(void **state)
{
    char cur[QRY_CURSOR_MAX], err[128];
    qry_cursor c, d;
    int limit;

    (void)state;
    /* times and UUIDs: lib's (test_kq_time.c, its table also run by test_time_params below;
     * test_kq_codec.c) */
    memset(&c, 0, sizeof c);
    c.kind = QRY_CURSOR_BY_STATUS;
    c.status = 2;
    strcpy(c.id, "abc.DEF-9_");
    assert_int_equal(qry_cursor_encode(&c, cur), 0);
    assert_int_equal(qry_cursor_decode(cur, QRY_CURSOR_BY_STATUS, 2, &d, err, sizeof err), 0);
    assert_string_equal(d.id, "abc.DEF-9_");
    assert_int_equal(qry_cursor_decode(cur, QRY_CURSOR_BY_STATUS, 1, &d, err, sizeof err),
                     KQ_EINVAL);
    assert_int_equal(qry_cursor_decode(cur, QRY_CURSOR_RESOURCES, 0, &d, err, sizeof err),
                     KQ_EINVAL);
    /* workflows and runs: the filter byte must match, and the kind */
    memset(&c, 0, sizeof c);
    c.kind = QRY_CURSOR_RUNS;
    c.status = 4;
    strcpy(c.id, "run-1");
    assert_int_equal(qry_cursor_encode(&c, cur), 0);
    assert_int_equal(qry_cursor_decode(cur, QRY_CURSOR_RUNS, 4, &d, err, sizeof err), 0);
    assert_string_equal(d.id, "run-1");
    assert_int_equal(qry_cursor_decode(cur, QRY_CURSOR_RUNS, 0, &d, err, sizeof err), KQ_EINVAL);
    assert_int_equal(qry_cursor_decode(cur, QRY_CURSOR_WORKFLOWS, 4, &d, err, sizeof err),
                     KQ_EINVAL);
    c.kind = QRY_CURSOR_WORKFLOWS;
    c.status = 1;
    assert_int_equal(qry_cursor_encode(&c, cur), 0);
    assert_int_equal(qry_cursor_decode(cur, QRY_CURSOR_WORKFLOWS, 1, &d, err, sizeof err), 0);
    assert_int_equal(qry_cursor_decode(cur, QRY_CURSOR_WORKFLOWS, 2, &d, err, sizeof err),
                     KQ_EINVAL);
    assert_int_equal(qry_cursor_decode(cur, QRY_CURSOR_BY_STATUS, 1, &d, err, sizeof err),
                     KQ_EINVAL);
    memset(&c, 0, sizeof c);
    c.kind = QRY_CURSOR_AUDIT;
    c.num = 1700000000123456LL;
    memset(c.uuid, 0xab, 16);
    assert_int_equal(qry_cursor_encode(&c, cur), 0);
    assert_int_equal(qry_cursor_decode(cur, QRY_CURSOR_AUDIT, 0, &d, err, sizeof err), 0);
    assert_int_equal(d.num, c.num);
    assert_memory_equal(d.uuid, c.uuid, 16);
    assert_int_equal(qry_cursor_decode("", QRY_CURSOR_AUDIT, 0, &d, err, sizeof err), KQ_EINVAL);
    assert_int_equal(qry_cursor_decode("!!!!", QRY_CURSOR_AUDIT, 0, &d, err, sizeof err),
                     KQ_EINVAL);
    cur[strlen(cur) - 1] = '\0'; /* truncated */
    assert_int_equal(qry_cursor_decode(cur, QRY_CURSOR_AUDIT, 0, &d, err, sizeof err), KQ_EINVAL);

    assert_int_equal(qry_limit_parse(NULL, &limit), 0);
    assert_int_equal(limit, 100);
    assert_int_equal(qry_limit_parse("1000", &limit), 0);
    assert_int_equal(qry_limit_parse("1001", &limit), KQ_EINVAL);
    assert_int_equal(qry_limit_parse("0", &limit), KQ_EINVAL);
    assert_int_equal(qry_limit_parse("", &limit), KQ_EINVAL);
    assert_int_equal(qry_limit_parse("-5", &limit), KQ_EINVAL);

    assert_true(qry_etag_match("\"3\"", "\"3\""));
    assert_true(qry_etag_match("\"1\", W/\"3\"", "\"3\""));
    assert_true(qry_etag_match("*", "\"3\""));
    assert_false(qry_etag_match("\"33\"", "\"3\""));
    assert_false(qry_etag_match("", "\"3\""));
}

static void test_point_read(void **state)
{
    resp r;
    (void)state;

    get("/api/v1/resources/r007", key_reader, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(r.json);
    assert_string_equal(json_string_value(json_object_get(r.json, "id")), "r007");
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "name 7");
    assert_string_equal(json_string_value(json_object_get(r.json, "description")), "desc \"7\"");
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "inactive");
    assert_int_equal(json_integer_value(json_object_get(r.json, "version")), 3);
    assert_string_equal(json_string_value(json_object_get(r.json, "created_at")),
                        "2023-11-14T22:13:20.000007Z");
    assert_string_equal(json_string_value(json_object_get(r.json, "updated_at")),
                        "2023-11-14T22:13:27.123456Z");
    assert_int_equal(json_object_size(r.json), 7);
    assert_non_null(strstr(r.headers, "ETag: \"3\""));
    resp_free(&r);

    /* admin passes too; empty description is "" */
    get("/api/v1/resources/r008", key_admin, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "description")), "");
    resp_free(&r);

    get("/api/v1/resources/nope", key_reader, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(err_code(&r), "not_found");
    resp_free(&r);

    expect_400("/api/v1/resources/bad%20id", key_reader, "id");
    expect_400("/api/v1/resources/"
               "a12345678901234567890123456789012345678901234567890123456789012345",
               key_reader, "id");
}

static void test_etag_304(void **state)
{
    resp r;
    (void)state;

    get_h("/api/v1/resources/r004", key_reader, "If-None-Match: \"5\"", &r);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.len, 0);
    assert_non_null(strstr(r.headers, "ETag: \"5\""));
    resp_free(&r);
    get_h("/api/v1/resources/r004", key_reader, "If-None-Match: \"4\"", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "version")), 5);
    resp_free(&r);
}

/* Walk every page of `query` (with limit) and return the ids in order, comma-joined. */
static void walk(const char *query, int limit, char *ids, size_t cap, int *pages)
{
    char path[512], cursor[QRY_CURSOR_MAX] = "";
    ids[0] = '\0';
    *pages = 0;
    for (;;) {
        resp r;
        json_t *items, *it, *next;
        size_t i;

        snprintf(path, sizeof path, "/api/v1/resources?%slimit=%d%s%s", query, limit,
                 cursor[0] ? "&cursor=" : "", cursor);
        get(path, key_reader, &r);
        assert_int_equal(r.status, 200);
        items = json_object_get(r.json, "items");
        assert_true(json_array_size(items) <= (size_t)limit);
        json_array_foreach(items, i, it)
        {
            snprintf(ids + strlen(ids), cap - strlen(ids), "%s,",
                     json_string_value(json_object_get(it, "id")));
        }
        (*pages)++;
        next = json_object_get(r.json, "next_cursor");
        assert_non_null(next);
        if (json_is_null(next)) {
            resp_free(&r);
            break;
        }
        assert_int_equal(json_array_size(items), limit);
        snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        resp_free(&r);
        assert_true(*pages < 100);
    }
}

static void test_list(void **state)
{
    char ids[2048], want[2048] = "";
    int pages;
    resp r;
    (void)state;

    for (int i = 0; i < NRES; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "r%03d,", i);
    walk("", 7, ids, sizeof ids, &pages);
    assert_string_equal(ids, want);
    assert_int_equal(pages, 8);
    walk("", 50, ids, sizeof ids, &pages); /* exactly one full page: no next page */
    assert_string_equal(ids, want);
    assert_int_equal(pages, 1);
    walk("", 1000, ids, sizeof ids, &pages);
    assert_string_equal(ids, want);

    /* default limit 100 */
    get("/api/v1/resources", key_reader, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), NRES);
    assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
    resp_free(&r);

    /* status filter: i % 3 == 1 are inactive */
    want[0] = '\0';
    for (int i = 1; i < NRES; i += 3)
        snprintf(want + strlen(want), sizeof want - strlen(want), "r%03d,", i);
    walk("status=inactive&", 4, ids, sizeof ids, &pages);
    assert_string_equal(ids, want);
    assert_int_equal(pages, 5); /* 17 items */
    get("/api/v1/resources?status=archived&limit=1000", key_reader, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 16);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(r.json, "items"), 0), "status")),
                        "archived");
    resp_free(&r);
}

static void test_list_errors(void **state)
{
    resp r;
    char path[512], cur[QRY_CURSOR_MAX];
    (void)state;

    expect_400("/api/v1/resources?limit=0", key_reader, "limit");
    expect_400("/api/v1/resources?limit=1001", key_reader, "limit");
    expect_400("/api/v1/resources?limit=abc", key_reader, "limit");
    expect_400("/api/v1/resources?limit=", key_reader, "limit");
    expect_400("/api/v1/resources?status=gone", key_reader, "status");
    expect_400("/api/v1/resources?status=", key_reader, "status");
    expect_400("/api/v1/resources?cursor=%21%21", key_reader, "cursor");
    expect_400("/api/v1/resources?cursor=AAAA", key_reader, "cursor");

    /* both bad: one detail each */
    get("/api/v1/resources?limit=0&status=x", key_reader, &r);
    assert_int_equal(r.status, 400);
    assert_int_equal(json_array_size(details(&r)), 2);
    resp_free(&r);

    /* a cursor of the active listing is refused by the inactive one and the plain one */
    get("/api/v1/resources?status=active&limit=2", key_reader, &r);
    assert_int_equal(r.status, 200);
    snprintf(cur, sizeof cur, "%s", json_string_value(json_object_get(r.json, "next_cursor")));
    resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/resources?status=inactive&cursor=%s", cur);
    expect_400(path, key_reader, "cursor");
    snprintf(path, sizeof path, "/api/v1/resources?cursor=%s", cur);
    expect_400(path, key_reader, "cursor");
    snprintf(path, sizeof path, "/api/v1/resources?status=active&cursor=%s", cur);
    get(path, key_reader, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);

    /* audit and events validation happens before PostgreSQL is needed */
    expect_400("/api/v1/audit?aggregate_type=thing", key_auditor, "aggregate_type");
    expect_400("/api/v1/audit?event_type=ResourceExploded", key_auditor, "event_type");
    expect_400("/api/v1/audit?since=yesterday", key_auditor, "since");
    expect_400("/api/v1/audit?until=2026-13-01T00:00:00Z", key_auditor, "until");
    expect_400("/api/v1/audit?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", key_auditor,
               "since");
    expect_400("/api/v1/audit?limit=5000", key_auditor, "limit");
    expect_400("/api/v1/audit?actor=a%20b", key_auditor, "actor");
    expect_400("/api/v1/audit?aggregate_id=", key_auditor, "aggregate_id");
    expect_400("/api/v1/audit?cursor=xyz", key_auditor, "cursor");
    expect_400("/api/v1/resources/r001/events?limit=-1", key_reader, "limit");
    get("/api/v1/audit?aggregate_type=thing&since=x&limit=0", key_auditor, &r);
    assert_int_equal(json_array_size(details(&r)), 3);
    resp_free(&r);

    /* no PostgreSQL here: 503 with Retry-After, LMDB routes unaffected */
    get("/api/v1/audit?aggregate_type=resource", key_auditor, &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(err_code(&r), "unavailable");
    assert_non_null(strstr(r.headers, "Retry-After:"));
    resp_free(&r);
}

/* ?since= and ?until= take what kq_time_parse takes (the table kcqrs-audit's
 * and kcqrs-replay's tests run too): accepted ones reach the PostgreSQL
 * stage (503 here, no database), refused ones are a 400 naming the field. */
static void test_time_params(void **state)
{
    static const char *const fields[] = {"since", "until"};
    char path[512];
    resp r;

    (void)state;
    for (size_t i = 0; i < kq_time_cases_n; i++) {
        const kq_time_case *c = &kq_time_cases[i];
        char *enc = curl_easy_escape(NULL, c->in, 0);
        assert_non_null(enc);
        for (int f = 0; f < 2; f++) {
            snprintf(path, sizeof path, "/api/v1/audit?%s=%s", fields[f], enc);
            get(path, key_auditor, &r);
            if (c->ok ? r.status != 503 : (r.status != 400 || !detail_for(&r, fields[f])))
                fail_msg("%s: status %ld body %s (want %s)", path, r.status, r.body ? r.body : "",
                         c->ok ? "accepted" : "400");
            resp_free(&r);
        }
        curl_free(enc);
    }
}

static void test_unknown_params(void **state)
{
    resp r;
    (void)state;
    expect_400("/api/v1/resources?limt=5", key_reader, "limt");
    expect_400("/api/v1/resources/r001?x=1", key_reader, "x");
    get("/api/v1/resources?status=active&foo=1&bar=2", key_reader, &r);
    assert_int_equal(r.status, 400);
    assert_int_equal(json_array_size(details(&r)), 2);
    resp_free(&r);
    get("/api/v1/resources?limit=5&limit=1000", key_reader, &r);
    assert_int_equal(r.status, 400); /* which one would we honour? */
    assert_int_equal(json_array_size(details(&r)), 1);
    resp_free(&r);
    get("/api/v1/resources?status=active&consistent_with=", key_reader, &r);
    assert_int_equal(r.status, 400); /* known, but an empty token is malformed */
    resp_free(&r);
}

static void test_auth(void **state)
{
    resp r;
    (void)state;

    get("/api/v1/resources/r001", NULL, &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    get("/api/v1/resources/r001", "kq_not-a-valid-key", &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    get("/api/v1/resources/r001", key_writer, &r);
    assert_int_equal(r.status, 403);
    resp_free(&r);
    get("/api/v1/resources", key_auditor, &r);
    assert_int_equal(r.status, 403);
    resp_free(&r);
    get("/api/v1/audit", key_reader, &r);
    assert_int_equal(r.status, 403);
    resp_free(&r);
    get("/api/v1/status", key_writer, &r);
    assert_int_equal(r.status, 403);
    resp_free(&r);
    get("/api/v1/status", key_reader, &r);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(
        json_object_get(json_object_get(r.json, "read_models"), "lmdb"), "available")));
    resp_free(&r);
}

typedef struct later {
    int ms;
    int32_t partition;
    int64_t next;
    struct timespec committed; /* when the commit returned */
} later;

static void *apply_later(void *arg)
{
    later *l = arg;
    usleep((useconds_t)l->ms * 1000);
    put_offset(l->partition, l->next);
    clock_gettime(CLOCK_MONOTONIC, &l->committed);
    return NULL;
}

/* The watcher's wake-ups of one cause so far (kcqrs_query_waiter_wakeups_total{cause=...}). */
static long long wakeups(const char *cause)
{
    char *text = NULL, want[96];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    const char *at;
    long long n = -1;

    assert_non_null(f);
    qry_wait_metrics(waiter, f);
    fclose(f);
    snprintf(want, sizeof want, "kcqrs_query_waiter_wakeups_total{cause=\"%s\"} ", cause);
    if ((at = strstr(text, want)) != NULL)
        n = strtoll(at + strlen(want), NULL, 10);
    free(text);
    assert_true(n >= 0);
    return n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/*
 * What waiting costs: from the "projector's" commit returning to the waiting
 * client holding its answer (inotify wake-up, sweep, the read, resuming the
 * connection, the HTTP answer). The fixture's fallback timeout is 1 s. That
 * every answer came from an inotify wake-up is read from the watcher's own
 * counters, not inferred from the latency (a loaded machine may delay a woken
 * thread by more than any fixed bound): no fallback sweep ran while the 40
 * requests waited, and the watch fired.
 */
static void test_wake_latency(void **state)
{
    enum { N = 40 };
    double lat[N];
    char tok[KQ_TOKEN_MAX], path[KQ_TOKEN_MAX + 64];
    long long timeouts = wakeups("timeout"), inotify = wakeups("inotify");
    (void)state;

    for (int i = 0; i < N; i++) {
        later l = {20, 2, 100 + i + 1, {0, 0}};
        struct timespec done;
        pthread_t th;
        resp r;

        assert_true(kq_token_encode(TOPIC, 2, 100 + i, tok, sizeof tok) > 0);
        snprintf(path, sizeof path, "/api/v1/resources/r001?consistent_with=%s", tok);
        assert_int_equal(pthread_create(&th, NULL, apply_later, &l), 0);
        get(path, key_reader, &r);
        clock_gettime(CLOCK_MONOTONIC, &done);
        pthread_join(th, NULL);
        assert_int_equal(r.status, 200);
        resp_free(&r);
        lat[i] = (double)(done.tv_sec - l.committed.tv_sec) * 1e3 +
                 (double)(done.tv_nsec - l.committed.tv_nsec) / 1e6;
    }
    qsort(lat, N, sizeof lat[0], cmp_double);
    fprintf(stderr, "wake latency (commit -> answer), %d waits: p50 %.3f ms, max %.3f ms\n", N,
            lat[N / 2], lat[N - 1]);
    assert_int_equal(wakeups("timeout"), timeouts); /* never the fallback */
    assert_true(wakeups("inotify") > inotify);      /* the commits woke the watcher */
    assert_true(lat[N - 1] < 1000.0);               /* so every answer beat the fallback */
}

static void test_consistency(void **state)
{
    char tok[KQ_TOKEN_MAX], hdr[KQ_TOKEN_MAX + 64], path[KQ_TOKEN_MAX + 64];
    later l = {150, 1, 11, {0, 0}};
    pthread_t th;
    resp r;
    (void)state;

    put_offset(0, 10); /* partition 0 has applied offsets 0..9 */
    assert_true(kq_token_encode(TOPIC, 0, 9, tok, sizeof tok) > 0);
    snprintf(hdr, sizeof hdr, "X-Consistency-Token: %s", tok);
    get_h("/api/v1/resources/r001", key_reader, hdr, &r);
    assert_int_equal(r.status, 200);
    assert_true(r.secs < 0.1);
    resp_free(&r);

    /* malformed or foreign tokens */
    get_h("/api/v1/resources/r001", key_reader, "X-Consistency-Token: v1.garbage", &r);
    assert_int_equal(r.status, 400);
    assert_true(detail_for(&r, "X-Consistency-Token"));
    resp_free(&r);
    expect_400("/api/v1/resources?consistent_with=nope", key_reader, "consistent_with");
    assert_true(kq_token_encode("other.topic", 0, 1, tok, sizeof tok) > 0);
    snprintf(path, sizeof path, "/api/v1/resources?consistent_with=%s", tok);
    expect_400(path, key_reader, "consistent_with");
    assert_true(kq_token_encode(TOPIC, 3, 1, tok, sizeof tok) > 0); /* 3 partitions: 0..2 */
    snprintf(path, sizeof path, "/api/v1/resources?consistent_with=%s", tok);
    expect_400(path, key_reader, "consistent_with");

    /* not applied yet: the request waits until the projector's commit (inotify wake-up;
     * the fallback timeout is 1 s in this fixture, so a fast answer proves the watch) */
    assert_true(kq_token_encode(TOPIC, 1, 10, tok, sizeof tok) > 0);
    snprintf(path, sizeof path, "/api/v1/resources?limit=1&consistent_with=%s", tok);
    assert_int_equal(pthread_create(&th, NULL, apply_later, &l), 0);
    get(path, key_reader, &r);
    pthread_join(th, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_true(r.secs >= 0.14);
    if (r.secs > 0.4)
        fail_msg("waited %.3f s: the inotify wake-up did not work", r.secs);
    resp_free(&r);

    /* never applied: 503 projection_behind after query_wait_ms (400 ms) */
    assert_true(kq_token_encode(TOPIC, 2, 5, tok, sizeof tok) > 0);
    snprintf(hdr, sizeof hdr, "X-Consistency-Token: %s", tok);
    get_h("/api/v1/resources/r001", key_reader, hdr, &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(err_code(&r), "projection_behind");
    assert_non_null(strstr(r.headers, "Retry-After:"));
    assert_true(r.secs >= 0.38 && r.secs < 2.0);
    resp_free(&r);

    /* PostgreSQL endpoints wait on PostgreSQL: none here -> 503 unavailable */
    snprintf(path, sizeof path, "/api/v1/audit?consistent_with=%s", tok);
    get(path, key_admin, &r);
    assert_int_equal(r.status, 503);
    resp_free(&r);
}

static void test_metrics(void **state)
{
    resp r;
    (void)state;
    get("/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    if (getenv("TEST_QRY_LOG"))
        fprintf(stderr, "%s", r.body);
    assert_non_null(strstr(r.body, "kcqrs_query_waits_total 2"));
    assert_non_null(strstr(r.body, "kcqrs_query_waits_expired_total 1"));
    assert_non_null(strstr(r.body, "kcqrs_query_projection_behind_total 1"));
    resp_free(&r);
}

/* The point read's hand-rendered JSON says exactly what jansson says (the
 * list's rendering) for strings that need escaping, and refuses what jansson
 * would refuse (invalid UTF-8). */
static void test_resource_text(void **state)
{
    static const char *const names[] = {
        "plain", "quote \" and \\ backslash", "ctl \x01\x1f\n\r\t\b\f end",
        "\xe2\x82\xac \xf0\x9f\x98\x80 \xe4\xb8\xad", "/slash </script>"};
    uint8_t rec[512];
    (void)state;

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        kq_rm_resource r = {(int64_t)i + 1,
                            1700000000123456,
                            1700000009000001,
                            (uint8_t)(i % 3),
                            names[i],
                            (uint32_t)strlen(names[i]),
                            names[names[i][0] == 'p'],
                            (uint32_t)strlen(names[names[i][0] == 'p'])};
        size_t n = kq_rm_resource_size(&r), len = 0;
        char *text;
        json_t *want, *got;
        json_error_t je;

        assert_true(n <= sizeof rec);
        kq_rm_resource_encode(&r, rec);
        want = qry_rm_resource_json("r-1", 3, rec, n);
        assert_non_null(want);
        text = qry_rm_resource_text("r-1", 3, rec, n, &len);
        assert_non_null(text);
        assert_int_equal(strlen(text), len); /* NUL-terminated, no raw NUL inside */
        got = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        assert_non_null(got);
        assert_true(json_equal(want, got));
        json_decref(want);
        json_decref(got);
        free(text);
    }
    {
        kq_rm_resource r = {1, 1, 1, 0, "bad \xff utf8", 10, "", 0};
        size_t len = 0;
        kq_rm_resource_encode(&r, rec);
        assert_null(qry_rm_resource_text("r-1", 3, rec, kq_rm_resource_size(&r), &len));
        assert_null(qry_rm_resource_json("r-1", 3, rec, kq_rm_resource_size(&r)));
    }
}

/* snapshots/NAME with one resource r001 named "as it was" (the environment is closed
 * again: LMDB must not have it open twice in one process). */
static void make_snapshot(const char *name)
{
    char dir[512], err[256];
    MDB_env *env = NULL;
    MDB_txn *txn;
    MDB_dbi meta, offs, vers, res, bys;
    MDB_val k, v;
    uint8_t rec[256], sk[16];
    kq_rm_resource r = {1, 1700000000000000LL, 1700000000000000LL, 1, "as it was", 9, "", 0};
    int skl;

    snprintf(dir, sizeof dir, "%s/snapshots/%s", tmpdir, name);
    if (kq_rm_env_open(dir, 8u << 20, 1, &env, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, KQ_RM_DB_META, MDB_CREATE, &meta), 0);
    assert_int_equal(mdb_dbi_open(txn, KQ_RM_DB_OFFSETS, MDB_CREATE, &offs), 0);
    assert_int_equal(mdb_dbi_open(txn, KQ_RM_DB_VERSIONS, MDB_CREATE, &vers), 0);
    assert_int_equal(mdb_dbi_open(txn, KQ_RM_DB_RESOURCES, MDB_CREATE, &res), 0);
    assert_int_equal(mdb_dbi_open(txn, KQ_RM_DB_RES_BY_STATUS, MDB_CREATE, &bys), 0);
    kq_rm_resource_encode(&r, rec);
    k.mv_data = "r001";
    k.mv_size = 4;
    v.mv_data = rec;
    v.mv_size = kq_rm_resource_size(&r);
    assert_int_equal(mdb_put(txn, res, &k, &v, 0), 0);
    skl = kq_rm_prefixed_key(r.status, "r001", 4, sk, sizeof sk);
    k.mv_data = sk;
    k.mv_size = (size_t)skl;
    v.mv_data = "";
    v.mv_size = 0;
    assert_int_equal(mdb_put(txn, bys, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* ?snapshot=NAME: the named model answers the LMDB routes; unknown -> 404
 * snapshot_not_found; a bad name, a repeated one or one with a consistency token -> 400. */
static void test_snapshot(void **state)
{
    char tok[KQ_TOKEN_MAX], path[KQ_TOKEN_MAX + 96], hdr[KQ_TOKEN_MAX + 64];
    resp r;
    (void)state;

    make_snapshot("before_x");
    get("/api/v1/resources/r001?snapshot=before_x", key_reader, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "as it was");
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "inactive");
    resp_free(&r);
    get("/api/v1/resources/r001", key_reader, &r); /* the live model is untouched */
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "name 1");
    resp_free(&r);
    get("/api/v1/resources?snapshot=before_x", key_reader, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    resp_free(&r);
    get("/api/v1/resources?snapshot=before_x&status=inactive&limit=1", key_reader, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
    resp_free(&r);
    get("/api/v1/resources/r002?snapshot=before_x", key_reader, &r); /* not in it */
    assert_int_equal(r.status, 404);
    assert_string_equal(err_code(&r), "not_found");
    resp_free(&r);

    get("/api/v1/resources/r001?snapshot=nosuch", key_reader, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(err_code(&r), "snapshot_not_found");
    resp_free(&r);
    get("/api/v1/resources?snapshot=nosuch", key_reader, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(err_code(&r), "snapshot_not_found");
    resp_free(&r);

    expect_400("/api/v1/resources/r001?snapshot=Before", key_reader, "snapshot");
    expect_400("/api/v1/resources?snapshot=", key_reader, "snapshot");
    expect_400("/api/v1/resources?snapshot=..%2Freadmodel", key_reader, "snapshot");
    expect_400("/api/v1/resources?snapshot=abcdefghijabcdefghijabcdefghijabc", key_reader,
               "snapshot");
    expect_400("/api/v1/resources/r001/events?snapshot=a-b", key_reader, "snapshot");
    expect_400("/api/v1/audit?snapshot=a%3Bb", key_auditor, "snapshot");
    get("/api/v1/resources?snapshot=before_x&snapshot=before_x", key_reader, &r);
    assert_int_equal(r.status, 400);
    assert_true(detail_for(&r, "snapshot"));
    resp_free(&r);

    /* a snapshot does not move: no consistency token with it (header or parameter) */
    assert_true(kq_token_encode(TOPIC, 0, 1, tok, sizeof tok) > 0);
    snprintf(path, sizeof path, "/api/v1/resources?snapshot=before_x&consistent_with=%s", tok);
    expect_400(path, key_reader, "snapshot");
    snprintf(hdr, sizeof hdr, "X-Consistency-Token: %s", tok);
    get_h("/api/v1/resources/r001?snapshot=before_x", key_reader, hdr, &r);
    assert_int_equal(r.status, 400);
    assert_true(detail_for(&r, "snapshot"));
    resp_free(&r);

    /* PostgreSQL routes check the name before needing the database (none here: 503) */
    get("/api/v1/audit?snapshot=before_x", key_auditor, &r);
    assert_int_equal(r.status, 503);
    resp_free(&r);
}

static void test_not_ready(void **state)
{
    qry_rm *missing = NULL;
    qry_rm_view *v = NULL;
    char err[256], dir[400];
    (void)state;

    snprintf(dir, sizeof dir, "%s/nothing-here", tmpdir);
    assert_int_equal(qry_rm_new(dir, 1u << 20, 0, &missing), 0);
    assert_int_equal(qry_rm_acquire(missing, &v, err, sizeof err), KQ_ENOTFOUND);
    assert_null(v);
    assert_false(qry_rm_is_open(missing));
    qry_rm_free(missing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),        cmocka_unit_test(test_resource_text),
        cmocka_unit_test(test_point_read),  cmocka_unit_test(test_etag_304),
        cmocka_unit_test(test_list),        cmocka_unit_test(test_list_errors),
        cmocka_unit_test(test_auth),        cmocka_unit_test(test_consistency),
        cmocka_unit_test(test_metrics),     cmocka_unit_test(test_wake_latency),
        cmocka_unit_test(test_not_ready),   cmocka_unit_test(test_unknown_params),
        cmocka_unit_test(test_time_params), cmocka_unit_test(test_snapshot),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
