/*
 * kq_faults — the load, the recorder and the checker of the fault campaign
 * (tests/faults/run.sh, `make test-faults`).
 *
 *   kq_faults load  --urls FILE --key KEY --ledger FILE --stop FILE
 *                   [--clients N] [--rate R] [--run TAG] [--big FILE]
 *   kq_faults isr   --out FILE --stop FILE [--interval-ms MS]
 *   kq_faults meta
 *   kq_faults check --ledger FILE --isr FILE --faults FILE --query URL --key KEY
 *                   [--min-isr N] [--verify RESULT] [--chain RESULT]
 *
 * load: N client threads (default 6, at most 256), each with its own libcurl handle, send
 *   commands to the kcqrs-commands base URLs listed in FILE (one per line,
 *   re-read every 200 ms; each request goes to the next URL in turn), at most R
 *   commands/s in all (default 200; 0: no limit), until the stop file exists.
 *   A command is a create of a new resource (id <run>-<client>-<n>) or, for
 *   70 % of them once a client owns resources, an update of one of its own
 *   resources with If-Match of the version it last saw. Every command has its
 *   own Idempotency-Key; a 503, 429, 5xx or transport error is retried with
 *   the same key and body (backoff 50 ms doubling to 1 s, at most 8 attempts),
 *   a 412 teaches the current version. While the file --big exists, updates
 *   carry 4000-byte descriptions (to fill the read model's LMDB map quickly).
 *   Every attempt is one ledger line:
 *     <t_send_ms> <t_recv_ms> <client> <url_index> <command_no> <op> <id>
 *     <status> <version|-> <token|->
 *   (wall-clock milliseconds; status 0 = no answer).
 * isr: polls the cluster's metadata every MS (default 250) and appends a line
 *   whenever a partition of the event topics (KCQRS_TOPIC_PREFIX) changes its
 *   leader or in-sync replica count:
 *     <t_ms> <topic> <partition> <leader> <isr_count> <replica_count>
 *   plus "<t_ms> - poll-failed" when no broker answers, "<t_ms> - tick" every 5 s.
 * meta: the event topics' partitions now, "<topic> <partition> <leader> <isr,...>".
 * check: after the campaign (load stopped, every fault undone), reads the event
 *   topics directly (read_committed) and the ledger, and prints the table:
 *   commands sent/acked/failed, faults by kind (from the driver's faults file:
 *   "<t_start_ms> <t_end_ms> <kind> [detail]"), lost (an acknowledged command
 *   whose record key <id>/<version> is not in the log, or whose consistency
 *   token does not point at that record), duplicates (a record key present
 *   twice), version gaps, 2xx under min ISR (an answer whose whole request lay
 *   inside a window where the metadata showed fewer than N in-sync replicas of
 *   its partition, or inside a "two_brokers_down" window of the faults file),
 *   acknowledged commands not readable from the query API (GET of every
 *   acknowledged resource with the consistency token of its newest 2xx: 200
 *   and at least that version), the longest time without any 2xx, and the
 *   longest wait for a 2xx after a fault ended (its end time in the faults
 *   file: the restart done, the process resumed) while no other fault was
 *   active or began before that 2xx, i.e. kcqrs's own recovery.
 *   --verify and --chain carry the driver's kcqrs-replay / kcqrs-audit results
 *   ("ok" or anything else) into the table. Exit 1 on any loss, duplicate,
 *   gap, 2xx under min ISR, unreadable command or a result other than ok.
 *
 * Kafka settings come from the environment like every kcqrs binary.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_map.h"
#include "kq_token.h"
#include "kq_tool_json.h"
#include "kq_util.h"

static const char usage[] =
    "usage: kq_faults load --urls FILE --key KEY --ledger FILE --stop FILE [--clients N] "
    "[--rate R] [--run TAG] [--big FILE]\n"
    "       kq_faults isr --out FILE --stop FILE [--interval-ms MS]\n"
    "       kq_faults meta\n"
    "       kq_faults check --ledger FILE --isr FILE --faults FILE --query URL --key KEY "
    "[--min-isr N] [--verify RESULT] [--chain RESULT]";

#define MAX_CLIENTS 256
#define MAX_URLS 8
#define MAX_OWNED 64
#define MAX_ATTEMPTS 8
#define MAX_BODY 8192
#define MAX_PARTS 1024

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

/* --opt value pairs into vals[] by names[]; 0, or -1 on an unknown option. */
static int parse_opts(int argc, char **argv, const char *const *names, const char **vals, int n)
{
    for (int i = 2; i < argc; i += 2) {
        int k;
        if (i + 1 >= argc)
            return -1;
        for (k = 0; k < n; k++)
            if (strcmp(argv[i] + (strncmp(argv[i], "--", 2) == 0 ? 2 : 0), names[k]) == 0)
                break;
        if (k == n)
            return -1;
        vals[k] = argv[i + 1];
    }
    return 0;
}

/* ================================================================== load */

typedef struct {
    const char *urls_file, *key, *run, *big_file;
    atomic_int big; /* the big file exists: updates carry 4000-byte descriptions */
    long clients, rate;
    const char *stop_file;
    FILE *ledger;
    pthread_mutex_t mu; /* ledger, urls */
    char urls[MAX_URLS][256];
    int nurls;
    atomic_int stop;
    atomic_long next_slot_us; /* rate limiter: the next free send time */
    atomic_long sent, acked, failed;
} load_t;

typedef struct {
    char data[MAX_BODY];
    size_t len;
} answer;

typedef struct {
    load_t *l;
    int index;
    char owned[MAX_OWNED][64];
    long long version[MAX_OWNED]; /* 0: unknown */
    int nowned;
    unsigned seed;
} client_t;

static size_t on_body(char *ptr, size_t size, size_t n, void *ud)
{
    answer *a = ud;
    size_t len = size * n, room = sizeof a->data - 1 - a->len;
    memcpy(a->data + a->len, ptr, len < room ? len : room);
    a->len += len < room ? len : room;
    a->data[a->len] = '\0';
    return len;
}

static void load_read_urls(load_t *l)
{
    char line[256];
    char urls[MAX_URLS][256];
    int n = 0;
    FILE *f = fopen(l->urls_file, "r");
    if (f == NULL)
        return;
    while (n < MAX_URLS && fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\r\n ")] = '\0';
        if (line[0] != '\0')
            snprintf(urls[n++], sizeof urls[0], "%s", line);
    }
    fclose(f);
    if (n == 0)
        return;
    pthread_mutex_lock(&l->mu);
    memcpy(l->urls, urls, sizeof urls);
    l->nurls = n;
    pthread_mutex_unlock(&l->mu);
}

/* The version and consistency token of a 2xx body; the current version of a 412. */
static void parse_answer(const answer *a, long status, long long *version, char *token,
                         size_t toklen)
{
    json_error_t jerr;
    json_t *root = json_loadb(a->data, a->len, 0, &jerr);
    *version = -1;
    token[0] = '\0';
    if (root == NULL)
        return;
    if (status == 412)
        *version = kq_tool_find_int(root, "current_version");
    if (*version < 0)
        *version = kq_tool_find_int(root, "version");
    if (status / 100 == 2) {
        const char *t = json_string_value(json_object_get(root, "consistency_token"));
        if (t != NULL && strlen(t) < toklen &&
            strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"
                      "klmnopqrstuvwxyz0123456789-_.") == strlen(t))
            snprintf(token, toklen, "%s", t);
    }
    json_decref(root);
}

/* Wait for the rate limiter's next slot (or the stop). */
static void load_pace(load_t *l)
{
    long now, slot, step;
    struct timespec ts;
    if (l->rate <= 0)
        return;
    step = 1000000L / l->rate;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
    slot = atomic_load(&l->next_slot_us);
    for (;;) {
        long mine = slot > now - 100000 ? slot : now; /* at most 100 ms of catching up */
        if (atomic_compare_exchange_weak(&l->next_slot_us, &slot, mine + step)) {
            if (mine > now)
                nanosleep(
                    &(struct timespec){(mine - now) / 1000000, ((mine - now) % 1000000) * 1000},
                    NULL);
            return;
        }
    }
}

static char big_text[4001];

/* A libcurl handle answering into `a`, its Authorization header line into auth. */
static CURL *client_new(answer *a, const char *key, char *auth, size_t authlen)
{
    CURL *curl = curl_easy_init();
    if (curl == NULL)
        return NULL;
    snprintf(auth, authlen, "Authorization: Bearer %s", key);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 3L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    return curl;
}

static void *load_client(void *arg)
{
    client_t *c = arg;
    load_t *l = c->l;
    char auth[512], url[512], body[4200], idem[160], ifmatch[64], id[64], token[KQ_TOKEN_MAX];
    answer *a = malloc(sizeof *a);
    CURL *curl = a != NULL ? client_new(a, l->key, auth, sizeof auth) : NULL;
    long cmd_no = 0;
    int url_turn = c->index;

    if (curl == NULL) {
        free(a);
        return NULL;
    }

    while (!atomic_load(&l->stop)) {
        int create = c->nowned == 0 || (int)(rand_r(&c->seed) % 100) < 30;
        int slot = -1, done = 0;
        long backoff = 50;
        const char *op;

        cmd_no++;
        if (create) {
            snprintf(id, sizeof id, "%s-%d-%ld", l->run, c->index, cmd_no);
            snprintf(body, sizeof body, "{\"id\":\"%s\",\"name\":\"fault load %d %ld\"}", id,
                     c->index, cmd_no);
            op = "create";
            ifmatch[0] = '\0';
        } else {
            slot = (int)(rand_r(&c->seed) % (unsigned)c->nowned);
            snprintf(id, sizeof id, "%s", c->owned[slot]);
            snprintf(body, sizeof body, "{\"description\":\"client %d command %ld%s\"}", c->index,
                     cmd_no, atomic_load(&l->big) ? big_text : "");
            op = "update";
            if (c->version[slot] > 0)
                snprintf(ifmatch, sizeof ifmatch, "If-Match: \"%lld\"", c->version[slot]);
            else
                ifmatch[0] = '\0';
        }
        snprintf(idem, sizeof idem, "Idempotency-Key: %s-%d-c%ld", l->run, c->index, cmd_no);
        atomic_fetch_add(&l->sent, 1);
        for (int attempt = 0; attempt < MAX_ATTEMPTS && !done; attempt++) {
            struct curl_slist *hdrs = NULL;
            long status = 0;
            long long version = -1;
            int uidx;
            int64_t t0, t1;

            load_pace(l);
            pthread_mutex_lock(&l->mu);
            uidx = l->nurls > 0 ? url_turn++ % l->nurls : -1;
            if (uidx >= 0)
                snprintf(url, sizeof url, "%s/api/v1/resources%s%s", l->urls[uidx],
                         create ? "" : "/", create ? "" : id);
            pthread_mutex_unlock(&l->mu);
            if (uidx < 0) {
                sleep_ms(100);
                attempt--;
                if (atomic_load(&l->stop))
                    break;
                continue;
            }
            hdrs = curl_slist_append(hdrs, auth);
            hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
            hdrs = curl_slist_append(hdrs, idem);
            if (ifmatch[0] != '\0')
                hdrs = curl_slist_append(hdrs, ifmatch);
            curl_easy_setopt(curl, CURLOPT_URL, url);
            curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, create ? "POST" : "PUT");
            curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
            a->len = 0;
            a->data[0] = '\0';
            t0 = now_ms();
            if (curl_easy_perform(curl) == CURLE_OK)
                curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
            t1 = now_ms();
            curl_slist_free_all(hdrs);
            parse_answer(a, status, &version, token, sizeof token);
            pthread_mutex_lock(&l->mu);
            fprintf(l->ledger, "%" PRId64 " %" PRId64 " %d %d %ld %s %s %ld ", t0, t1, c->index,
                    uidx, cmd_no, op, id, status);
            if (status / 100 == 2 && version > 0)
                fprintf(l->ledger, "%lld %s\n", version, token[0] ? token : "-");
            else
                fprintf(l->ledger, "- -\n");
            fflush(l->ledger);
            pthread_mutex_unlock(&l->mu);

            if (status / 100 == 2) {
                atomic_fetch_add(&l->acked, 1);
                if (create && c->nowned < MAX_OWNED) {
                    slot = c->nowned++;
                    snprintf(c->owned[slot], sizeof c->owned[0], "%s", id);
                } else if (create) {
                    slot = (int)(rand_r(&c->seed) % MAX_OWNED);
                    snprintf(c->owned[slot], sizeof c->owned[0], "%s", id);
                }
                if (slot >= 0)
                    c->version[slot] = version > 0 ? version : 0;
                done = 1;
            } else if (status == 412) {
                if (slot >= 0)
                    c->version[slot] = version > 0 ? version : 0;
                done = 1;
            } else if (status == 503 || status == 429 || status == 0 || status >= 500) {
                /* the same command again, same key: unknown outcomes resolve to one answer */
                sleep_ms(backoff);
                backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
            } else {
                done = 1; /* another 4xx: a refusal, counted by the checker */
            }
        }
        if (!done) {
            atomic_fetch_add(&l->failed, 1);
            if (slot >= 0)
                c->version[slot] = 0; /* it may or may not have been applied */
        }
    }
    curl_easy_cleanup(curl);
    free(a);
    return NULL;
}

static int cmd_load(int argc, char **argv)
{
    static const char *const names[] = {"urls",    "key",  "ledger", "stop",
                                        "clients", "rate", "run",    "big"};
    const char *v[8] = {0};
    static load_t l;
    static client_t cs[MAX_CLIENTS];
    pthread_t th[MAX_CLIENTS];
    long n;

    if (parse_opts(argc, argv, names, v, 8) != 0 || v[0] == NULL || v[1] == NULL || v[2] == NULL ||
        v[3] == NULL) {
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    l.urls_file = v[0];
    l.key = v[1];
    l.stop_file = v[3];
    l.run = v[6] != NULL ? v[6] : "f";
    l.big_file = v[7];
    l.clients = 6;
    l.rate = 200;
    if ((v[4] != NULL && kq_parse_long(v[4], 1, MAX_CLIENTS, &l.clients) != 0) ||
        (v[5] != NULL && kq_parse_long(v[5], 0, 1000000, &l.rate) != 0)) {
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    if ((l.ledger = fopen(v[2], "a")) == NULL) {
        fprintf(stderr, "kq_faults: %s: %s\n", v[2], strerror(errno));
        return 1;
    }
    pthread_mutex_init(&l.mu, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    load_read_urls(&l);
    for (n = 0; n < l.clients; n++) {
        cs[n].l = &l;
        cs[n].index = (int)n;
        cs[n].seed = (unsigned)(time(NULL) ^ (n * 7919));
        if (pthread_create(&th[n], NULL, load_client, &cs[n]) != 0) {
            fprintf(stderr, "kq_faults: pthread_create failed\n");
            return 1;
        }
    }
    memset(big_text, 'x', sizeof big_text - 1);
    while (access(l.stop_file, F_OK) != 0) {
        sleep_ms(200);
        load_read_urls(&l);
        atomic_store(&l.big, l.big_file != NULL && access(l.big_file, F_OK) == 0);
    }
    atomic_store(&l.stop, 1);
    for (long i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    fclose(l.ledger);
    printf("load: commands %ld acked %ld failed %ld\n", atomic_load(&l.sent), atomic_load(&l.acked),
           atomic_load(&l.failed));
    curl_global_cleanup();
    return 0;
}

/* ================================================================== metadata */

static rd_kafka_t *meta_client(kq_config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    if (kq_config_load_and_init_log(cfg, "kq_faults", err, errlen) != 0)
        return NULL;
    if ((conf = kq_kafka_conf_new(cfg, "kq_faults", err, errlen)) == NULL)
        return NULL;
    if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen)) == NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* Is `topic` one of the event topics of prefix `p`? */
static int event_topic(const char *topic, const char *p)
{
    size_t n = strlen(p);
    return strncmp(topic, p, n) == 0 && topic[n] == '.' && strstr(topic + n, ".events") != NULL &&
           strcmp(topic + strlen(topic) - 7, ".events") == 0;
}

typedef struct {
    char topic[KQ_KAFKA_TOPIC_MAX];
    int partition, leader, nisr, nrep;
} part_state;

static int cmd_isr(int argc, char **argv)
{
    static const char *const names[] = {"out", "stop", "interval-ms"};
    const char *v[3] = {0};
    char err[512];
    kq_config cfg;
    rd_kafka_t *rk;
    FILE *out;
    long interval = 250;
    static part_state last[MAX_PARTS];
    int nlast = 0;
    int64_t last_tick = 0;

    if (parse_opts(argc, argv, names, v, 3) != 0 || v[0] == NULL || v[1] == NULL ||
        (v[2] != NULL && kq_parse_long(v[2], 10, 60000, &interval) != 0)) {
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    if ((rk = meta_client(&cfg, err, sizeof err)) == NULL) {
        fprintf(stderr, "kq_faults: %s\n", err);
        return 1;
    }
    if ((out = fopen(v[0], "a")) == NULL) {
        fprintf(stderr, "kq_faults: %s: %s\n", v[0], strerror(errno));
        return 1;
    }
    while (access(v[1], F_OK) != 0) {
        const struct rd_kafka_metadata *md = NULL;
        int64_t t = now_ms();
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, 2000);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(out, "%" PRId64 " - poll-failed %s\n", t, rd_kafka_err2name(e));
        } else {
            t = now_ms(); /* the answer's time: metadata describe the state before it */
            for (int i = 0; i < md->topic_cnt; i++) {
                const rd_kafka_metadata_topic_t *mt = &md->topics[i];
                if (!event_topic(mt->topic, cfg.topic_prefix))
                    continue;
                for (int j = 0; j < mt->partition_cnt; j++) {
                    const rd_kafka_metadata_partition_t *mp = &mt->partitions[j];
                    int k;
                    for (k = 0; k < nlast; k++)
                        if (last[k].partition == mp->id && strcmp(last[k].topic, mt->topic) == 0)
                            break;
                    if (k == nlast) {
                        if (nlast == MAX_PARTS)
                            continue;
                        nlast++;
                        snprintf(last[k].topic, sizeof last[k].topic, "%s", mt->topic);
                        last[k].partition = mp->id;
                        last[k].leader = -2;
                    }
                    if (last[k].leader != mp->leader || last[k].nisr != mp->isr_cnt ||
                        last[k].nrep != mp->replica_cnt) {
                        last[k].leader = mp->leader;
                        last[k].nisr = mp->isr_cnt;
                        last[k].nrep = mp->replica_cnt;
                        fprintf(out, "%" PRId64 " %s %d %d %d %d\n", t, mt->topic, mp->id,
                                mp->leader, mp->isr_cnt, mp->replica_cnt);
                    }
                }
            }
            rd_kafka_metadata_destroy(md);
        }
        if (t - last_tick >= 5000) {
            fprintf(out, "%" PRId64 " - tick\n", t);
            last_tick = t;
        }
        fflush(out);
        sleep_ms(interval);
    }
    fclose(out);
    rd_kafka_destroy(rk);
    kq_config_free(&cfg);
    return 0;
}

static int cmd_meta(void)
{
    char err[512];
    kq_config cfg;
    rd_kafka_t *rk;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e;

    if ((rk = meta_client(&cfg, err, sizeof err)) == NULL) {
        fprintf(stderr, "kq_faults: %s\n", err);
        return 1;
    }
    if ((e = rd_kafka_metadata(rk, 1, NULL, &md, cfg.kafka_timeout_ms)) != 0) {
        fprintf(stderr, "kq_faults: metadata: %s\n", rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        kq_config_free(&cfg);
        return 1;
    }
    for (int i = 0; i < md->topic_cnt; i++) {
        const rd_kafka_metadata_topic_t *mt = &md->topics[i];
        if (!event_topic(mt->topic, cfg.topic_prefix))
            continue;
        for (int j = 0; j < mt->partition_cnt; j++) {
            const rd_kafka_metadata_partition_t *mp = &mt->partitions[j];
            printf("%s %d %d ", mt->topic, mp->id, mp->leader);
            for (int k = 0; k < mp->isr_cnt; k++)
                printf("%s%d", k ? "," : "", mp->isrs[k]);
            printf("%s\n", mp->isr_cnt == 0 ? "-" : "");
        }
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    kq_config_free(&cfg);
    return 0;
}

/* ================================================================== check */

typedef struct {
    int64_t t_send, t_recv;
    int client, url;
    long cmd_no;
    long status;
    long long version;
    char id[64];
    char token[KQ_TOKEN_MAX];
} attempt;

typedef struct {
    attempt *a;
    size_t n, cap;
} attempts;

typedef struct {
    int64_t from, to;
    char topic[KQ_KAFKA_TOPIC_MAX]; /* "" = every partition */
    int partition;
} window;

typedef struct {
    window *w;
    size_t n, cap;
} windows;

static int win_add(windows *ws, int64_t from, int64_t to, const char *topic, int partition)
{
    if (ws->n == ws->cap) {
        size_t cap = ws->cap ? ws->cap * 2 : 64;
        window *w = realloc(ws->w, cap * sizeof *w);
        if (w == NULL)
            return -1;
        ws->w = w;
        ws->cap = cap;
    }
    ws->w[ws->n].from = from;
    ws->w[ws->n].to = to;
    snprintf(ws->w[ws->n].topic, sizeof ws->w[0].topic, "%s", topic);
    ws->w[ws->n].partition = partition;
    ws->n++;
    return 0;
}

static int read_ledger(const char *path, attempts *out)
{
    char line[1024];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "kq_faults: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        attempt x;
        char op[16], ver[32];
        memset(&x, 0, sizeof x);
        if (sscanf(line, "%" SCNd64 " %" SCNd64 " %d %d %ld %15s %63s %ld %31s %511s", &x.t_send,
                   &x.t_recv, &x.client, &x.url, &x.cmd_no, op, x.id, &x.status, ver,
                   x.token) != 10)
            continue; /* a line cut by a kill */
        x.version = strcmp(ver, "-") == 0 ? -1 : strtoll(ver, NULL, 10);
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 4096;
            attempt *a = realloc(out->a, cap * sizeof *a);
            if (a == NULL) {
                fclose(f);
                return -1;
            }
            out->a = a;
            out->cap = cap;
        }
        out->a[out->n++] = x;
    }
    fclose(f);
    return 0;
}

/* The ISR file into windows where a partition had fewer than min_isr in sync. */
static int read_isr(const char *path, int min_isr, windows *low, long *polls_failed)
{
    char line[512];
    FILE *f = fopen(path, "r");
    typedef struct {
        char topic[KQ_KAFKA_TOPIC_MAX];
        int partition;
        int64_t low_since; /* -1: in sync */
    } st;
    static st s[MAX_PARTS];
    int ns = 0;

    if (f == NULL) {
        fprintf(stderr, "kq_faults: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        int64_t t;
        char topic[KQ_KAFKA_TOPIC_MAX], what[64];
        int p, leader, nisr, nrep, k;
        if (sscanf(line, "%" SCNd64 " %248s %d %d %d %d", &t, topic, &p, &leader, &nisr, &nrep) !=
            6) {
            if (sscanf(line, "%" SCNd64 " - %63s", &t, what) == 2 &&
                strcmp(what, "poll-failed") == 0)
                (*polls_failed)++;
            continue;
        }
        for (k = 0; k < ns; k++)
            if (s[k].partition == p && strcmp(s[k].topic, topic) == 0)
                break;
        if (k == ns) {
            if (ns == MAX_PARTS)
                continue;
            ns++;
            snprintf(s[k].topic, sizeof s[k].topic, "%s", topic);
            s[k].partition = p;
            s[k].low_since = -1;
        }
        /* a partition without a leader takes no writes at all: count it as low too */
        if ((nisr < min_isr || leader < 0) && s[k].low_since < 0) {
            s[k].low_since = t;
        } else if (nisr >= min_isr && leader >= 0 && s[k].low_since >= 0) {
            if (win_add(low, s[k].low_since, t, topic, p) != 0) {
                fclose(f);
                return -1;
            }
            s[k].low_since = -1;
        }
    }
    fclose(f);
    for (int k = 0; k < ns; k++)
        if (s[k].low_since >= 0 &&
            win_add(low, s[k].low_since, INT64_MAX, s[k].topic, s[k].partition) != 0)
            return -1;
    return 0;
}

typedef struct {
    char kind[64];
    long count;
    int64_t total_ms;
} fault_kind;

/* The faults file: counts by kind, the two-brokers-down windows, the load's start
 * and stop, and every fault's end (ends: from = to = end, topic = kind). */
static int read_faults(const char *path, fault_kind *kinds, int *nkinds, int maxkinds,
                       windows *down, windows *ends, int64_t *first_ms, int64_t *last_ms)
{
    char line[1024];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "kq_faults: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        int64_t a, b;
        char kind[64];
        int k;
        if (sscanf(line, "%" SCNd64 " %" SCNd64 " %63s", &a, &b, kind) != 3)
            continue;
        if (strcmp(kind, "two_brokers_down") == 0) { /* a window, not a fault of its own */
            if (win_add(down, a, b, "", -1) != 0) {
                fclose(f);
                return -1;
            }
            continue;
        }
        if (strcmp(kind, "load_start") == 0) {
            *first_ms = a;
            continue;
        }
        if (strcmp(kind, "load_stop") == 0) {
            *last_ms = a;
            continue;
        }
        for (k = 0; k < *nkinds; k++)
            if (strcmp(kinds[k].kind, kind) == 0)
                break;
        if (k == *nkinds) {
            if (k == maxkinds)
                continue;
            (*nkinds)++;
            snprintf(kinds[k].kind, sizeof kinds[k].kind, "%s", kind);
        }
        kinds[k].count++;
        kinds[k].total_ms += b - a;
        if (win_add(ends, a, b, kind, -1) != 0) {
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

/* --- the log */

typedef struct {
    int count;
} key_seen;

typedef struct {
    kq_map *keys;    /* record key -> key_seen */
    kq_map *offsets; /* "topic:partition:offset" -> record key (char[]) */
    long records;
} logview;

#define KEY_MAX 128

static int read_topic(rd_kafka_t *c, rd_kafka_t *u, const char *topic, int timeout_ms, logview *lv,
                      char *err, size_t errlen)
{
    int np = 0;
    int64_t high[MAX_PARTS];
    char done[MAX_PARTS];
    int remaining = 0, rc = 0;
    int64_t deadline = now_ms() + 120000;
    rd_kafka_topic_partition_list_t *tp;

    /* settle: no transaction open (the last stable offset equals the high watermark) */
    for (;;) {
        int same = 1;
        if ((rc = kq_kafka_topic_partitions(u, topic, timeout_ms, &np, NULL, err, errlen)) != 0)
            return rc;
        if (np < 1 || np > MAX_PARTS)
            return kq_seterr(err, errlen, KQ_ERANGE, "%s: %d partitions", topic, np);
        for (int p = 0; p < np; p++) {
            int64_t lo, hi, lo2, lso;
            if (rd_kafka_query_watermark_offsets(u, topic, p, &lo, &hi, timeout_ms) != 0 ||
                rd_kafka_query_watermark_offsets(c, topic, p, &lo2, &lso, timeout_ms) != 0)
                return kq_seterr(err, errlen, KQ_EKAFKA, "watermarks of %s [%d]", topic, p);
            high[p] = hi;
            if (lso != hi)
                same = 0;
        }
        if (same)
            break;
        if (now_ms() > deadline)
            return kq_seterr(err, errlen, KQ_ETIMEDOUT, "%s: a transaction stays open", topic);
        sleep_ms(100);
    }
    tp = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++) {
        rd_kafka_topic_partition_list_add(tp, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        done[p] = high[p] == 0;
        remaining += !done[p];
    }
    if (rd_kafka_assign(c, tp) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_partition_list_destroy(tp);
        return kq_seterr(err, errlen, KQ_EKAFKA, "assign %s failed", topic);
    }
    while (remaining > 0) {
        rd_kafka_message_t *m;
        if (now_ms() > deadline) {
            rc = kq_seterr(err, errlen, KQ_ETIMEDOUT, "did not reach the end of %s", topic);
            break;
        }
        if ((m = rd_kafka_consumer_poll(c, 200)) == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            int p = m->partition;
            if (p >= 0 && p < np && !done[p] && m->offset >= high[p]) {
                done[p] = 1;
                remaining--;
            }
        } else if (m->err) {
            rc = kq_seterr(err, errlen, KQ_EKAFKA, "consume %s: %s", topic,
                           rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            break;
        } else if (m->key != NULL && m->key_len > 0 && m->key_len < KEY_MAX) {
            char okey[KQ_KAFKA_TOPIC_MAX + 48];
            char *kv;
            key_seen *ks = kq_map_putb(lv->keys, m->key, m->key_len, NULL);
            snprintf(okey, sizeof okey, "%s:%d:%" PRId64, topic, (int)m->partition, m->offset);
            kv = kq_map_put(lv->offsets, okey, NULL);
            if (ks == NULL || kv == NULL) {
                rd_kafka_message_destroy(m);
                rc = kq_seterr(err, errlen, KQ_ENOMEM, "out of memory");
                break;
            }
            ks->count++;
            memcpy(kv, m->key, m->key_len);
            kv[m->key_len] = '\0';
            lv->records++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(c, NULL);
    rd_kafka_topic_partition_list_destroy(tp);
    return rc;
}

static int read_log(logview *lv, char *err, size_t errlen)
{
    kq_config cfg;
    rd_kafka_conf_t *conf = NULL, *uconf = NULL;
    rd_kafka_t *c = NULL, *u = NULL;
    char names[KQ_KAFKA_NTOPICS][KQ_KAFKA_TOPIC_MAX];
    char group[64];
    int rc = -1, nt;

    if (kq_config_load_and_init_log(&cfg, "kq_faults", err, errlen) != 0)
        return -1;
    snprintf(group, sizeof group, "kq_faults-%ld", (long)getpid());
    if ((conf = kq_kafka_conf_new(&cfg, "kq_faults", err, errlen)) == NULL ||
        kq_kafka_conf_set(conf, "fetch.wait.max.ms", "10", err, errlen) != 0 ||
        (c = kq_kafka_consumer_new(&cfg, group, conf, err, errlen)) == NULL)
        goto out;
    conf = NULL;
    if ((uconf = kq_kafka_conf_new(&cfg, "kq_faults", err, errlen)) == NULL ||
        kq_kafka_conf_set(uconf, "isolation.level", "read_uncommitted", err, errlen) != 0 ||
        kq_kafka_conf_set(uconf, "group.id", group, err, errlen) != 0 ||
        (u = rd_kafka_new(RD_KAFKA_CONSUMER, uconf, err, errlen)) == NULL)
        goto out;
    uconf = NULL;
    nt = kq_kafka_topic_names(&cfg, names);
    for (int i = 0; i < nt; i++) {
        if (!event_topic(names[i], cfg.topic_prefix))
            continue; /* the DLQ holds copies by design */
        if (read_topic(c, u, names[i], cfg.kafka_timeout_ms, lv, err, errlen) != 0)
            goto out;
    }
    rc = 0;
out:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (uconf != NULL)
        rd_kafka_conf_destroy(uconf);
    if (u != NULL)
        rd_kafka_destroy(u);
    if (c != NULL) {
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
    }
    kq_config_free(&cfg);
    return rc;
}

/* --- per-aggregate checks of the log: duplicates and gaps */

typedef struct {
    long long maxv;
    long count;
} agg_versions;

typedef struct {
    kq_map *aggs;
    long dups;
    char first_dup[KEY_MAX];
} dupscan;

static int scan_key(void *arg, const char *key, size_t keylen, void *val)
{
    dupscan *d = arg;
    key_seen *ks = val;
    size_t idlen;
    int64_t v;
    agg_versions *av;
    if (ks->count > 1) {
        d->dups += ks->count - 1;
        if (d->first_dup[0] == '\0')
            snprintf(d->first_dup, sizeof d->first_dup, "%.*s", (int)keylen, key);
    }
    if (kq_kafka_record_key_parse(key, keylen, &idlen, &v) != 0)
        return 0;
    if ((av = kq_map_putb(d->aggs, key, idlen, NULL)) == NULL)
        return -1;
    av->count++;
    if (v > av->maxv)
        av->maxv = v;
    return 0;
}

typedef struct {
    long gaps;
    char first_gap[80];
} gapscan;

static int scan_agg(void *arg, const char *key, size_t keylen, void *val)
{
    gapscan *g = arg;
    agg_versions *av = val;
    if (av->count != av->maxv) { /* versions 1..max, each once (duplicates counted apart) */
        g->gaps++;
        if (g->first_gap[0] == '\0')
            snprintf(g->first_gap, sizeof g->first_gap, "%.*s", (int)(keylen < 60 ? keylen : 60),
                     key);
    }
    return 0;
}

/* --- the query API */

typedef struct {
    char id[64];
    long long version;
    char token[KQ_TOKEN_MAX];
} newest;

typedef struct {
    newest *items;
    size_t n;
    atomic_size_t next;
    const char *url, *key;
    atomic_long missing, checked;
    pthread_mutex_t mu;
    char first[512];
} qcheck;

static void *query_worker(void *arg)
{
    qcheck *q = arg;
    char auth[512], url[512], tok[KQ_TOKEN_MAX + 64];
    answer *a = malloc(sizeof *a);
    CURL *curl = a != NULL ? client_new(a, q->key, auth, sizeof auth) : NULL;
    size_t i;

    if (curl == NULL) {
        free(a);
        return NULL;
    }
    while ((i = atomic_fetch_add(&q->next, 1)) < q->n) {
        newest *e = &q->items[i];
        long status = 0;
        long long v = -1;
        char token[KQ_TOKEN_MAX];
        for (int try = 0; try < 5; try++) {
            struct curl_slist *hdrs = NULL;
            hdrs = curl_slist_append(hdrs, auth);
            snprintf(tok, sizeof tok, "X-Consistency-Token: %s", e->token);
            if (e->token[0] != '\0' && strcmp(e->token, "-") != 0)
                hdrs = curl_slist_append(hdrs, tok);
            snprintf(url, sizeof url, "%s/api/v1/resources/%s", q->url, e->id);
            curl_easy_setopt(curl, CURLOPT_URL, url);
            curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
            a->len = 0;
            a->data[0] = '\0';
            status = 0;
            if (curl_easy_perform(curl) == CURLE_OK)
                curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
            curl_slist_free_all(hdrs);
            if (status != 503 && status != 0)
                break;
            sleep_ms(500);
        }
        parse_answer(a, status, &v, token, sizeof token);
        atomic_fetch_add(&q->checked, 1);
        if (status != 200 || v < e->version) {
            atomic_fetch_add(&q->missing, 1);
            pthread_mutex_lock(&q->mu);
            if (q->first[0] == '\0')
                snprintf(q->first, sizeof q->first, "%s version %lld: %ld %.300s", e->id,
                         e->version, status, a->data);
            pthread_mutex_unlock(&q->mu);
        }
    }
    curl_easy_cleanup(curl);
    free(a);
    return NULL;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

static int in_window(const windows *ws, const attempt *x, const char *topic, int partition)
{
    for (size_t i = 0; i < ws->n; i++) {
        const window *w = &ws->w[i];
        if (w->topic[0] != '\0' && (w->partition != partition || strcmp(w->topic, topic) != 0))
            continue;
        if (x->t_send >= w->from && x->t_recv <= w->to)
            return 1;
    }
    return 0;
}

typedef struct {
    newest *dst;
    size_t n;
} copy_ctx;

static int copy_one(void *arg, const char *k, size_t kl, void *val)
{
    copy_ctx *cc = arg;
    (void)k;
    (void)kl;
    cc->dst[cc->n++] = *(newest *)val;
    return 0;
}

typedef struct {
    const char *ledger, *isr, *faults, *query, *key, *verify, *chain;
    long min_isr;
} check_args;

static int cmd_check(int argc, char **argv)
{
    static const char *const names[] = {"ledger", "isr",     "faults", "query",
                                        "key",    "min-isr", "verify", "chain"};
    const char *v[8] = {0};
    check_args ca;
    attempts at = {0};
    windows low = {0}, down = {0}, ends = {0};
    int64_t recovery = 0;
    char recovery_kind[64] = "";
    fault_kind kinds[32];
    int nkinds = 0;
    long polls_failed = 0;
    int64_t load_from = 0, load_to = 0;
    logview lv;
    char err[512];
    kq_map *cmds = NULL, *newest_of = NULL;
    long sent = 0, acked = 0, refused = 0, failed = 0, lost = 0, badtok = 0, under = 0;
    long statuses[6] = {0}; /* 0 none, 2xx..5xx */
    long answers503 = 0;
    char first_lost[1024] = "", first_under[1024] = "";
    int64_t *oks = NULL;
    size_t nok = 0;
    int64_t gap = 0, gap_at = 0;
    dupscan ds = {0};
    gapscan gs = {0};
    qcheck q;
    pthread_t qth[8];
    long total_faults = 0;
    int bad;

    memset(kinds, 0, sizeof kinds);
    memset(&q, 0, sizeof q);
    if (parse_opts(argc, argv, names, v, 8) != 0 || v[0] == NULL || v[1] == NULL || v[2] == NULL ||
        v[3] == NULL || v[4] == NULL) {
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    ca.ledger = v[0];
    ca.isr = v[1];
    ca.faults = v[2];
    ca.query = v[3];
    ca.key = v[4];
    ca.min_isr = 2;
    ca.verify = v[6] != NULL ? v[6] : "not run";
    ca.chain = v[7] != NULL ? v[7] : "not run";
    if (v[5] != NULL && kq_parse_long(v[5], 1, 32, &ca.min_isr) != 0) {
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    if (read_ledger(ca.ledger, &at) != 0 ||
        read_isr(ca.isr, (int)ca.min_isr, &low, &polls_failed) != 0 ||
        read_faults(ca.faults, kinds, &nkinds, 32, &down, &ends, &load_from, &load_to) != 0)
        return 1;
    lv.keys = kq_map_new(sizeof(key_seen), NULL);
    lv.offsets = kq_map_new(KEY_MAX, NULL);
    lv.records = 0;
    cmds = kq_map_new(sizeof(int), NULL);         /* "client/cmd_no" -> 1 when acked, 2 refused */
    newest_of = kq_map_new(sizeof(newest), NULL); /* resource id -> newest acked version */
    ds.aggs = kq_map_new(sizeof(agg_versions), NULL);
    oks = malloc((at.n + 1) * sizeof *oks);
    if (lv.keys == NULL || lv.offsets == NULL || cmds == NULL || newest_of == NULL ||
        ds.aggs == NULL || oks == NULL) {
        fprintf(stderr, "kq_faults: out of memory\n");
        return 1;
    }
    if (read_log(&lv, err, sizeof err) != 0) {
        fprintf(stderr, "kq_faults: reading the log: %s\n", err);
        return 1;
    }

    for (size_t i = 0; i < at.n; i++) {
        const attempt *x = &at.a[i];
        char ck[64], key[KEY_MAX];
        int created = 0, *state;
        snprintf(ck, sizeof ck, "%d/%ld", x->client, x->cmd_no);
        if ((state = kq_map_put(cmds, ck, &created)) == NULL)
            return 1;
        if (created)
            sent++;
        statuses[x->status >= 200 && x->status < 600 ? x->status / 100 : 0]++;
        answers503 += x->status == 503;
        if (x->status / 100 == 2) {
            char topic[KQ_KAFKA_TOPIC_MAX], okey[KQ_KAFKA_TOPIC_MAX + 48];
            int32_t part = -1;
            int64_t off = -1;
            const key_seen *ks;
            const char *at_off;
            newest *ne;
            if (*state != 1)
                acked++;
            if (*state == 2)
                refused--;
            *state = 1;
            oks[nok++] = x->t_recv;
            if (x->version < 1 || kq_kafka_record_key(x->id, x->version, key, sizeof key) < 0) {
                lost++;
                if (first_lost[0] == '\0')
                    snprintf(first_lost, sizeof first_lost, "%s: 2xx without a version", x->id);
                continue;
            }
            ks = kq_map_get(lv.keys, key);
            if (ks == NULL) {
                lost++;
                if (first_lost[0] == '\0')
                    snprintf(first_lost, sizeof first_lost,
                             "%s acked at %" PRId64 " (client %d command %ld) is not in the log",
                             key, x->t_recv, x->client, x->cmd_no);
            }
            if (kq_token_parse(x->token, topic, sizeof topic, &part, &off) != 0) {
                badtok++;
                if (first_lost[0] == '\0')
                    snprintf(first_lost, sizeof first_lost, "%s: unreadable token %s", key,
                             x->token);
            } else {
                snprintf(okey, sizeof okey, "%s:%d:%" PRId64, topic, (int)part, off);
                at_off = kq_map_get(lv.offsets, okey);
                if (at_off == NULL || strcmp(at_off, key) != 0) {
                    badtok++;
                    if (first_lost[0] == '\0')
                        snprintf(first_lost, sizeof first_lost,
                                 "%s: its token points at %s holding %s", key, okey,
                                 at_off ? at_off : "nothing");
                }
                if (in_window(&low, x, topic, part) || in_window(&down, x, topic, part)) {
                    under++;
                    if (first_under[0] == '\0')
                        snprintf(first_under, sizeof first_under,
                                 "%s sent %" PRId64 " answered %" PRId64 " on %s [%d]", key,
                                 x->t_send, x->t_recv, topic, (int)part);
                }
            }
            if ((ne = kq_map_put(newest_of, x->id, NULL)) == NULL)
                return 1;
            if (x->version > ne->version) {
                snprintf(ne->id, sizeof ne->id, "%s", x->id);
                ne->version = x->version;
                snprintf(ne->token, sizeof ne->token, "%s", x->token);
            }
        } else if (x->status / 100 == 4 && *state == 0) {
            *state = 2;
            refused++;
        }
    }
    failed = sent - acked - refused;

    /* the log: every key once, versions 1..n per aggregate */
    if (kq_map_each(lv.keys, scan_key, &ds) != 0 || kq_map_each(ds.aggs, scan_agg, &gs) != 0)
        return 1;

    /* longest time without a 2xx while the load ran */
    qsort(oks, nok, sizeof *oks, cmp_i64);
    {
        int64_t prev = load_from > 0 ? load_from : (nok > 0 ? oks[0] : 0);
        for (size_t i = 0; i < nok; i++) {
            if (oks[i] - prev > gap) {
                gap = oks[i] - prev;
                gap_at = prev;
            }
            prev = oks[i] > prev ? oks[i] : prev;
        }
        if (load_to > prev && load_to - prev > gap) {
            gap = load_to - prev;
            gap_at = prev;
        }
    }

    /* the longest wait for a 2xx after a fault was undone (restart done, resumed) */
    for (size_t i = 0; i < ends.n; i++) {
        int64_t e = ends.w[i].to;
        size_t lo = 0, hi = nok, j;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (oks[mid] < e)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == nok)
            continue;
        /* only a wait that no other fault explains: none active at the end, none
         * begun before the first 2xx after it */
        for (j = 0; j < ends.n; j++)
            if (j != i && ends.w[j].from < oks[lo] && ends.w[j].to > e)
                break;
        if (j == ends.n && oks[lo] - e > recovery) {
            recovery = oks[lo] - e;
            snprintf(recovery_kind, sizeof recovery_kind, "%.60s", ends.w[i].topic);
        }
    }

    /* the query API */
    q.n = kq_map_count(newest_of);
    q.items = calloc(q.n + 1, sizeof *q.items);
    q.url = ca.query;
    q.key = ca.key;
    pthread_mutex_init(&q.mu, NULL);
    {
        copy_ctx cc = {q.items, 0};
        if (q.items == NULL || kq_map_each(newest_of, copy_one, &cc) != 0)
            return 1;
        q.n = cc.n;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (int i = 0; i < 8; i++)
        pthread_create(&qth[i], NULL, query_worker, &q);
    for (int i = 0; i < 8; i++)
        pthread_join(qth[i], NULL);

    for (int k = 0; k < nkinds; k++)
        total_faults += kinds[k].count;

    printf("\n== fault campaign: results\n");
    printf("| %-44s | %12s |\n", "what", "value");
    printf("|%s|%s|\n", "----------------------------------------------", "--------------");
    printf("| %-44s | %12ld |\n", "commands sent", sent);
    printf("| %-44s | %12ld |\n", "commands acked (2xx)", acked);
    printf("| %-44s | %12ld |\n", "commands refused (4xx, e.g. 412)", refused);
    printf("| %-44s | %12ld |\n", "commands failed (no answer or 5xx, retried)", failed);
    printf("| %-44s | %12zu |\n", "HTTP attempts", at.n);
    printf("| %-44s | %12ld |\n", "attempts answered 503", answers503);
    printf("| %-44s | %12ld |\n", "attempts without an answer", statuses[0]);
    for (int k = 0; k < nkinds; k++) {
        char label[80];
        snprintf(label, sizeof label, "faults: %.60s", kinds[k].kind);
        printf("| %-44s | %12ld |\n", label, kinds[k].count);
    }
    printf("| %-44s | %12ld |\n", "faults in all", total_faults);
    printf("| %-44s | %12ld |\n", "records in the event topics", lv.records);
    printf("| %-44s | %12ld |\n", "lost (acked, not in the log)", lost);
    printf("| %-44s | %12ld |\n", "tokens not pointing at their record", badtok);
    printf("| %-44s | %12ld |\n", "duplicates (a record key twice)", ds.dups);
    printf("| %-44s | %12ld |\n", "aggregates with a version gap", gs.gaps);
    printf("| %-44s | %12ld |\n", "2xx under min ISR", under);
    printf("| %-44s | %12zu |\n", "ISR windows below min ISR (metadata)", low.n);
    printf("| %-44s | %12zu |\n", "windows with two brokers down", down.n);
    printf("| %-44s | %12ld |\n", "metadata polls failed", polls_failed);
    printf("| %-44s | %12ld |\n", "acked resources checked on the query API",
           atomic_load(&q.checked));
    printf("| %-44s | %12ld |\n", "acked, not readable from the query API",
           atomic_load(&q.missing));
    printf("| %-44s | %10.1f s |\n", "longest window without a 2xx", (double)gap / 1000.0);
    printf("| %-44s | %10.1f s |\n", "longest wait for a 2xx after a fault ended",
           (double)recovery / 1000.0);
    printf("| %-44s | %12s |\n", "kcqrs-replay verify --target all", ca.verify);
    printf("| %-44s | %12s |\n", "kcqrs-audit verify-chain", ca.chain);
    if (first_lost[0])
        printf("first lost/bad token: %s\n", first_lost);
    if (ds.first_dup[0])
        printf("first duplicate: %s\n", ds.first_dup);
    if (gs.first_gap[0])
        printf("first aggregate with a gap: %s\n", gs.first_gap);
    if (first_under[0])
        printf("first 2xx under min ISR: %s\n", first_under);
    if (q.first[0])
        printf("first not readable: %s\n", q.first);
    if (recovery > 0)
        printf("longest wait for a 2xx after a fault ended: after %s\n", recovery_kind);
    if (gap > 0)
        printf("longest window without a 2xx began at %" PRId64 " (%.1f s after the load began)\n",
               gap_at, load_from > 0 ? (double)(gap_at - load_from) / 1000.0 : 0.0);

    bad = lost != 0 || badtok != 0 || ds.dups != 0 || gs.gaps != 0 || under != 0 ||
          atomic_load(&q.missing) != 0 || acked == 0 || strcmp(ca.verify, "ok") != 0 ||
          strcmp(ca.chain, "ok") != 0;
    printf("fault campaign: %s\n", bad ? "FAILED" : "passed");
    free(q.items);
    free(oks);
    free(at.a);
    free(low.w);
    free(down.w);
    free(ends.w);
    kq_map_free(lv.keys);
    kq_map_free(lv.offsets);
    kq_map_free(cmds);
    kq_map_free(newest_of);
    kq_map_free(ds.aggs);
    curl_global_cleanup();
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (kq_config_handle_help(argc, argv, usage))
        return 0;
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && strcmp(argv[1], "load") == 0)
        return cmd_load(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "isr") == 0)
        return cmd_isr(argc, argv);
    if (argc == 2 && strcmp(argv[1], "meta") == 0)
        return cmd_meta();
    if (argc >= 2 && strcmp(argv[1], "check") == 0)
        return cmd_check(argc, argv);
    fprintf(stderr, "%s\n", usage);
    return 2;
}
