/*
 * kcqrs_audit.c — `kcqrs-audit`: who did what, when, and whether anybody
 * tampered with the log (DESIGN.md section 9, replay/README.md).
 *
 * Both commands read the event topics straight from Kafka (aud_read.h:
 * read_committed, up to the end offsets seen at start), so they work with
 * PostgreSQL and LMDB gone.
 *
 *   query         filters (aud_filter.h) over the chosen topic-partitions:
 *                 --aggregate-id reads only that id's partition and decodes
 *                 only its keys, --event-type skips other records by their
 *                 event_type header, --since seeks every partition by time,
 *                 --until ends a partition at its first later event. Matches
 *                 are sorted by (occurred_at, topic, partition, offset) and
 *                 printed up to --limit, as JSON lines or an aligned table.
 *                 Records that are tombstones or do not decode are named on
 *                 stderr and skipped.
 *   verify-chain  every partition of the three event topics through
 *                 aud_chain.h; one line per partition with its head hash,
 *                 then a summary line (or one JSON document with --json).
 *
 * stdout carries results only; logs and skipped records go to stderr.
 * Exit status: 0 success / chain intact, 1 chain broken, 2 usage or
 * configuration error, 3 Kafka failure (or out of memory).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aud_chain.h"
#include "aud_filter.h"
#include "aud_read.h"
#include "ev_codec.h"
#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "kq_rand.h"
#include "kq_time.h"

#define PROG "kcqrs-audit"
#define NTOPICS 3
#define MAX_EXPECT 1024

static const char usage[] =
    "usage: " PROG " query [--aggregate-type T] [--aggregate-id ID] [--actor A]\n"
    "                   [--event-type E] [--since TIME] [--until TIME]\n"
    "                   [--format json|table] [--limit N]\n"
    "       " PROG " verify-chain [--json] [--expect-head TOPIC:PARTITION=HEX ...]\n"
    "\n"
    "Reads the event topics straight from Kafka (read_committed, up to the end\n"
    "offsets seen at start): works with every database gone.\n"
    "\n"
    "query: the events that pass every filter, oldest first (occurred_at, then\n"
    "topic, partition, offset).\n"
    "  --aggregate-type T  resource, workflow or run (reads only that topic)\n"
    "  --aggregate-id ID   one aggregate (reads only its partition and keys)\n"
    "  --actor A           events whose actor (API key name) is A\n"
    "  --event-type E      e.g. ResourceCreated (matched on the record header)\n"
    "  --since TIME        occurred_at >= TIME (seeks each partition by time)\n"
    "  --until TIME        occurred_at <= TIME\n"
    "  --format F          json (default: one object per line, the envelope as\n"
    "                      kcqrs-events decode prints it plus topic, partition,\n"
    "                      offset) or table (time, type, id, version, event, actor)\n"
    "  --limit N           at most N events (the oldest)\n"
    "  TIME is RFC 3339 (2026-11-22T10:00:00Z) or @<microseconds since the epoch>.\n"
    "\n"
    "verify-chain: checks the hash chain of every partition (each event's\n"
    "prev_hash is the SHA-256 of the previous record of its partition) and\n"
    "prints one line per partition, TOPIC:PARTITION=HEAD records=N and intact or\n"
    "the first break, then a summary. Store the heads outside Kafka and pass\n"
    "them back with --expect-head: a stored head must still be the hash of a\n"
    "record of its partition.\n"
    "  --json              one JSON document instead of lines\n"
    "\n"
    "Exit status: 0 success (chain intact), 1 chain broken, 2 usage or\n"
    "configuration error, 3 Kafka failure.\n";

typedef struct topics {
    char name[NTOPICS][KQ_KAFKA_TOPIC_MAX];
    const char *agg[NTOPICS];
    int n;
} topics;

/* The event topics, all three or the one of `only`. */
static void event_topics(const kq_config *cfg, ev_aggregate_type only, topics *t)
{
    static const ev_aggregate_type all[NTOPICS] = {EV_AGG_RESOURCE, EV_AGG_WORKFLOW, EV_AGG_RUN};

    t->n = 0;
    for (int i = 0; i < NTOPICS; i++) {
        if (only != EV_AGG_UNKNOWN && all[i] != only)
            continue;
        t->agg[t->n] = aud_aggregate_type_topic(all[i]);
        kq_config_topic(cfg, t->agg[t->n], t->name[t->n], KQ_KAFKA_TOPIC_MAX);
        t->n++;
    }
}

/*
 * The partitions to read: every partition of each topic, or (id != NULL)
 * the one that holds id. A topic that does not exist is skipped with a note.
 * *out is malloc'd. 0, or KQ_EKAFKA / KQ_ENOMEM with errstr.
 */
static int plan(const kq_config *cfg, const topics *t, const char *id, aud_part **out, size_t *n,
                char *errstr, size_t errlen)
{
    aud_part *parts = NULL;
    size_t cnt = 0;

    for (int i = 0; i < t->n; i++) {
        int np = 0, rc;
        aud_part *grown;
        if ((rc = aud_read_partitions(cfg, t->name[i], &np, errstr, errlen)) == KQ_ENOTFOUND) {
            kq_log_warn("topic %s does not exist: nothing to read there", t->name[i]);
            continue;
        }
        if (rc != 0) {
            free(parts);
            return rc;
        }
        grown = realloc(parts, (cnt + (size_t)np) * sizeof *parts);
        if (grown == NULL) {
            free(parts);
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        }
        parts = grown;
        for (int p = 0; p < np; p++) {
            if (id != NULL && kq_kafka_partition_for(id, strlen(id), np) != p)
                continue;
            memset(&parts[cnt], 0, sizeof parts[cnt]);
            snprintf(parts[cnt].topic, sizeof parts[cnt].topic, "%s", t->name[i]);
            parts[cnt].partition = p;
            cnt++;
        }
    }
    *out = parts;
    *n = cnt;
    return 0;
}

/* ------------------------------------------------------------------ query */

typedef struct row {
    int64_t at;
    int topic; /* index in topics */
    int32_t partition;
    int64_t offset;
    char *json;               /* --format json */
    char *id, *actor;         /* --format table */
    const char *type, *event; /* static names */
    int64_t version;
} row;

typedef struct query {
    aud_filter f;
    const topics *t;
    int table;
    row *rows;
    size_t n, cap;
    uint64_t skipped;
    int oom;
} query;

static int topic_index(const topics *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->name[i], name) == 0)
            return i;
    return 0;
}

static char *dup_str(ev_str s)
{
    return strndup(s.ptr != NULL ? s.ptr : "", s.ptr != NULL ? s.len : 0);
}

static int on_query_record(void *arg, aud_part *p, const rd_kafka_message_t *m)
{
    query *q = arg;
    rd_kafka_headers_t *hdrs = NULL;
    const void *hv = NULL;
    size_t hl = 0;
    ev_envelope e;
    char es[256];
    aud_verdict v;
    row r;

    if (m->payload == NULL) {
        fprintf(stderr,
                "%s: %s [%" PRId32 "] offset %" PRId64
                ": tombstone (an erased event, key %.*s), skipped\n",
                PROG, p->topic, p->partition, m->offset, (int)(m->key_len > 200 ? 200 : m->key_len),
                m->key != NULL ? (const char *)m->key : "");
        q->skipped++;
        return 0;
    }
    if (!aud_filter_key(&q->f, m->key, m->key_len))
        return 0;
    if (rd_kafka_message_headers((rd_kafka_message_t *)m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, KQ_KAFKA_HEADER_EVENT_TYPE, &hv, &hl) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        !aud_filter_type_header(&q->f, hv, hl))
        return 0;
    if (ev_envelope_decode(m->payload, m->len, &e, es, sizeof es) != 0) {
        fprintf(stderr,
                "%s: %s [%" PRId32 "] offset %" PRId64 ": not a valid envelope (%s), skipped\n",
                PROG, p->topic, p->partition, m->offset, es);
        q->skipped++;
        return 0;
    }
    v = aud_filter_envelope(&q->f, &e);
    if (v == AUD_STOP)
        return 1;
    if (v == AUD_SKIP)
        return 0;
    memset(&r, 0, sizeof r);
    r.at = e.occurred_at_us;
    r.topic = topic_index(q->t, p->topic);
    r.partition = p->partition;
    r.offset = m->offset;
    if (q->table) {
        const char *tn = aud_aggregate_type_topic(e.aggregate_type);
        r.type = tn != NULL ? tn : "?";
        r.event = ev_event_type_name(e.payload_type);
        if (r.event == NULL)
            r.event = "?";
        r.version = e.version;
        r.id = dup_str(e.aggregate_id);
        r.actor = dup_str(e.actor);
        if (r.id == NULL || r.actor == NULL) {
            free(r.id);
            free(r.actor);
            q->oom = 1;
            return KQ_ENOMEM;
        }
    } else {
        size_t jl;
        int rc = aud_json_line(m->payload, m->len, p->topic, p->partition, m->offset, &r.json, &jl,
                               es, sizeof es);
        if (rc == KQ_ENOMEM) {
            q->oom = 1;
            return rc;
        }
        if (rc != 0) {
            fprintf(stderr, "%s: %s [%" PRId32 "] offset %" PRId64 ": %s, skipped\n", PROG,
                    p->topic, p->partition, m->offset, es);
            q->skipped++;
            return 0;
        }
    }
    if (q->n == q->cap) {
        size_t nc = q->cap ? 2 * q->cap : 256;
        row *g = realloc(q->rows, nc * sizeof *g);
        if (g == NULL) {
            free(r.json);
            free(r.id);
            free(r.actor);
            q->oom = 1;
            return KQ_ENOMEM;
        }
        q->rows = g;
        q->cap = nc;
    }
    q->rows[q->n++] = r;
    return 0;
}

static int row_cmp(const void *a, const void *b)
{
    const row *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    if (x->topic != y->topic)
        return x->topic < y->topic ? -1 : 1;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return 0;
}

static void print_table(const row *rows, size_t n)
{
    int wt = 4, wy = 4, wi = 2, wv = 7, we = 10, wa = 5;
    char tb[KQ_TIME_MAX], vb[32];

    for (size_t i = 0; i < n; i++) {
        int l;
        kq_time_format(rows[i].at, tb);
        if ((l = (int)strlen(tb)) > wt)
            wt = l;
        if ((l = (int)strlen(rows[i].type)) > wy)
            wy = l;
        if ((l = (int)strlen(rows[i].id)) > wi)
            wi = l;
        if ((l = snprintf(vb, sizeof vb, "%" PRId64, rows[i].version)) > wv)
            wv = l;
        if ((l = (int)strlen(rows[i].event)) > we)
            we = l;
        if ((l = (int)strlen(rows[i].actor)) > wa)
            wa = l;
    }
    printf("%-*s  %-*s  %-*s  %*s  %-*s  %s\n", wt, "time", wy, "type", wi, "id", wv, "version", we,
           "event type", "actor");
    for (size_t i = 0; i < n; i++) {
        kq_time_format(rows[i].at, tb);
        printf("%-*s  %-*s  %-*s  %*" PRId64 "  %-*s  %s\n", wt, tb, wy, rows[i].type, wi,
               rows[i].id, wv, rows[i].version, we, rows[i].event, rows[i].actor);
    }
}

static int valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > EV_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* "--name value" or "--name=value": the value, advancing *i; NULL if not this option. */
static const char *opt(int argc, char **argv, int *i, const char *name, int *missing)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

static int cmd_query(int argc, char **argv)
{
    kq_config cfg;
    query q;
    topics t;
    aud_part *parts = NULL;
    size_t nparts = 0;
    const char *format = "json", *v;
    size_t shown;
    long long limit = -1;
    char err[512];
    int rc, missing = 0, ret = 3;

    memset(&q, 0, sizeof q);
    aud_filter_init(&q.f);
    for (int i = 2; i < argc; i++) {
        if ((v = opt(argc, argv, &i, "--aggregate-type", &missing)) != NULL) {
            if ((q.f.agg = aud_aggregate_type_parse(v)) == EV_AGG_UNKNOWN) {
                fprintf(stderr,
                        "%s: --aggregate-type must be resource, workflow or run, not '%s'\n", PROG,
                        v);
                return 2;
            }
        } else if ((v = opt(argc, argv, &i, "--aggregate-id", &missing)) != NULL) {
            if (!valid_id(v)) {
                fprintf(stderr, "%s: --aggregate-id must match [A-Za-z0-9._-]{1,64}\n", PROG);
                return 2;
            }
            q.f.aggregate_id = v;
        } else if ((v = opt(argc, argv, &i, "--actor", &missing)) != NULL) {
            if (*v == '\0' || strlen(v) > 255) {
                fprintf(stderr, "%s: --actor must be 1..255 bytes\n", PROG);
                return 2;
            }
            q.f.actor = v;
        } else if ((v = opt(argc, argv, &i, "--event-type", &missing)) != NULL) {
            if ((q.f.event_type = ev_event_type_from_name(v, strlen(v))) == EV_EVENT_NONE) {
                fprintf(stderr, "%s: unknown --event-type '%s' (e.g. ResourceCreated)\n", PROG, v);
                return 2;
            }
        } else if ((v = opt(argc, argv, &i, "--since", &missing)) != NULL) {
            if (kq_time_parse_err(v, &q.f.since_us, err, sizeof err) != 0) {
                fprintf(stderr, "%s: --since: %s\n", PROG, err);
                return 2;
            }
        } else if ((v = opt(argc, argv, &i, "--until", &missing)) != NULL) {
            if (kq_time_parse_err(v, &q.f.until_us, err, sizeof err) != 0) {
                fprintf(stderr, "%s: --until: %s\n", PROG, err);
                return 2;
            }
        } else if ((v = opt(argc, argv, &i, "--format", &missing)) != NULL) {
            if (strcmp(v, "json") != 0 && strcmp(v, "table") != 0) {
                fprintf(stderr, "%s: --format must be json or table, not '%s'\n", PROG, v);
                return 2;
            }
            format = v;
        } else if ((v = opt(argc, argv, &i, "--limit", &missing)) != NULL) {
            char *end;
            errno = 0;
            limit = strtoll(v, &end, 10);
            if (errno != 0 || *end != '\0' || *v < '0' || *v > '9' || limit < 1) {
                fprintf(stderr, "%s: --limit must be a positive integer, not '%s'\n", PROG, v);
                return 2;
            }
        } else {
            fprintf(stderr, "%s: %s '%s' (see --help)\n", PROG,
                    missing ? "missing value for" : "unexpected argument", argv[i]);
            return 2;
        }
    }
    if (q.f.since_us != INT64_MIN && q.f.until_us != INT64_MAX && q.f.since_us > q.f.until_us) {
        fprintf(stderr, "%s: --since is after --until\n", PROG);
        return 2;
    }
    if (q.f.agg != EV_AGG_UNKNOWN && q.f.event_type != EV_EVENT_NONE &&
        ev_event_aggregate_type(q.f.event_type) != q.f.agg)
        kq_log_warn("--event-type %s is not an event of --aggregate-type %s: nothing can match",
                    ev_event_type_name(q.f.event_type), aud_aggregate_type_topic(q.f.agg));
    q.table = strcmp(format, "table") == 0;
    if (kq_config_load_and_init_log(&cfg, PROG, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        return 2;
    }
    /* an event type names its topic */
    event_topics(&cfg,
                 q.f.agg != EV_AGG_UNKNOWN         ? q.f.agg
                 : q.f.event_type != EV_EVENT_NONE ? ev_event_aggregate_type(q.f.event_type)
                                                   : EV_AGG_UNKNOWN,
                 &t);
    q.t = &t;
    if ((rc = plan(&cfg, &t, q.f.aggregate_id, &parts, &nparts, err, sizeof err)) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        goto out;
    }
    if ((rc = aud_read_run(&cfg, "kcqrs.audit.query", parts, nparts,
                           q.f.since_us != INT64_MIN ? q.f.since_us : -1, on_query_record, &q, err,
                           sizeof err)) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, q.oom ? "out of memory" : err);
        goto out;
    }
    if (q.n > 0)
        qsort(q.rows, q.n, sizeof *q.rows, row_cmp);
    shown = q.n;
    if (limit > 0 && (unsigned long long)limit < shown)
        shown = (size_t)limit;
    if (q.table) {
        print_table(q.rows, shown);
    } else {
        for (size_t i = 0; i < shown; i++) {
            fputs(q.rows[i].json, stdout);
            fputc('\n', stdout);
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: writing the output: %s\n", PROG, strerror(errno));
        goto out;
    }
    if (q.skipped > 0)
        kq_log_warn("%" PRIu64 " records skipped (see above)", q.skipped);
    ret = 0;
out:
    for (size_t i = 0; i < q.n; i++) {
        free(q.rows[i].json);
        free(q.rows[i].id);
        free(q.rows[i].actor);
    }
    free(q.rows);
    free(parts);
    kq_config_free(&cfg);
    return ret;
}

/* ------------------------------------------------------------------ verify-chain */

typedef struct expect {
    char topic[KQ_KAFKA_TOPIC_MAX];
    int32_t partition;
    uint8_t hash[AUD_HASH_LEN];
    int used;
} expect;

/* "TOPIC:PARTITION=HEX" */
static int parse_expect(const char *s, expect *e)
{
    const char *eq = strrchr(s, '='), *colon;
    char *end;
    long p;
    size_t tl;

    if (eq == NULL)
        return KQ_EINVAL;
    for (colon = eq; colon > s && *colon != ':'; colon--)
        ;
    if (*colon != ':' || colon == s)
        return KQ_EINVAL;
    tl = (size_t)(colon - s);
    if (tl >= sizeof e->topic)
        return KQ_EINVAL;
    memcpy(e->topic, s, tl);
    e->topic[tl] = '\0';
    if (colon[1] < '0' || colon[1] > '9')
        return KQ_EINVAL;
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno != 0 || end != eq || p < 0 || p > INT32_MAX)
        return KQ_EINVAL;
    e->partition = (int32_t)p;
    e->used = 0;
    return aud_hex_parse(eq + 1, e->hash);
}

static int on_chain_record(void *arg, aud_part *p, const rd_kafka_message_t *m)
{
    (void)arg;
    return aud_chain_add(p->user, m->offset, m->payload, m->len);
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int cmd_verify_chain(int argc, char **argv)
{
    kq_config cfg;
    topics t;
    aud_part *parts = NULL;
    aud_chain *chains = NULL;
    expect *ex = NULL;
    size_t nparts = 0, nex = 0, broken = 0;
    uint64_t records = 0;
    int as_json = 0, missing = 0, ret = 3, rc;
    const char *v;
    char err[512], hx[AUD_HEX_LEN + 1];

    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if ((v = opt(argc, argv, &i, "--expect-head", &missing)) != NULL) {
            expect *g;
            if (nex >= MAX_EXPECT) {
                fprintf(stderr, "%s: more than %d --expect-head\n", PROG, MAX_EXPECT);
                free(ex);
                return 2;
            }
            if ((g = realloc(ex, (nex + 1) * sizeof *ex)) == NULL) {
                fprintf(stderr, "%s: out of memory\n", PROG);
                free(ex);
                return 3;
            }
            ex = g;
            if (parse_expect(v, &ex[nex]) != 0) {
                fprintf(stderr,
                        "%s: --expect-head '%s' is not TOPIC:PARTITION=HEX (64 hex digits)\n", PROG,
                        v);
                free(ex);
                return 2;
            }
            nex++;
        } else {
            fprintf(stderr, "%s: %s '%s' (see --help)\n", PROG,
                    missing ? "missing value for" : "unexpected argument", argv[i]);
            free(ex);
            return 2;
        }
    }
    if (kq_config_load_and_init_log(&cfg, PROG, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        free(ex);
        return 2;
    }
    event_topics(&cfg, EV_AGG_UNKNOWN, &t);
    if ((rc = plan(&cfg, &t, NULL, &parts, &nparts, err, sizeof err)) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        goto out;
    }
    if ((chains = calloc(nparts > 0 ? nparts : 1, sizeof *chains)) == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        goto out;
    }
    for (size_t i = 0; i < nparts; i++) {
        aud_chain_init(&chains[i]);
        parts[i].user = &chains[i];
        for (size_t k = 0; k < nex; k++)
            if (ex[k].partition == parts[i].partition && strcmp(ex[k].topic, parts[i].topic) == 0) {
                aud_chain_expect(&chains[i], ex[k].hash);
                ex[k].used = 1;
            }
    }
    for (size_t k = 0; k < nex; k++)
        if (!ex[k].used) {
            fprintf(stderr,
                    "%s: --expect-head: %s:%" PRId32 " is no partition of the event topics\n", PROG,
                    ex[k].topic, ex[k].partition);
            ret = 2;
            goto out;
        }
    if ((rc = aud_read_run(&cfg, "kcqrs.audit.chain", parts, nparts, -1, on_chain_record, NULL, err,
                           sizeof err)) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        goto out;
    }
    for (size_t i = 0; i < nparts; i++) {
        aud_chain_finish(&chains[i]);
        records += chains[i].records;
        broken += chains[i].brk != AUD_INTACT;
    }
    if (as_json) {
        printf("{\"intact\":%s,\"records\":%" PRIu64 ",\"partitions\":[", broken ? "false" : "true",
               records);
        for (size_t i = 0; i < nparts; i++) {
            const aud_chain *c = &chains[i];
            printf("%s{\"topic\":", i ? "," : "");
            json_str(parts[i].topic);
            printf(",\"partition\":%" PRId32 ",\"records\":%" PRIu64 ",\"end_offset\":%" PRId64,
                   parts[i].partition, c->records, parts[i].end);
            if (c->has_head) {
                kq_hex_encode(c->head, AUD_HASH_LEN, hx);
                printf(",\"head\":\"%s\",\"head_offset\":%" PRId64, hx, c->head_offset);
            } else {
                printf(",\"head\":null,\"head_offset\":null");
            }
            if (c->brk == AUD_INTACT) {
                printf(",\"intact\":true,\"break\":null}");
            } else {
                printf(",\"intact\":false,\"break\":{\"kind\":\"%s\",\"offset\":%" PRId64
                       ",\"message\":",
                       aud_break_name(c->brk), c->brk_offset);
                json_str(c->brk_msg);
                printf("}}");
            }
        }
        printf("]}\n");
    } else {
        for (size_t i = 0; i < nparts; i++) {
            const aud_chain *c = &chains[i];
            if (c->has_head)
                kq_hex_encode(c->head, AUD_HASH_LEN, hx);
            printf("%s:%" PRId32 "=%s records=%" PRIu64, parts[i].topic, parts[i].partition,
                   c->has_head ? hx : "none", c->records);
            if (c->brk == AUD_INTACT)
                printf(" intact\n");
            else
                printf(" BROKEN %s at offset %" PRId64 ": %s\n", aud_break_name(c->brk),
                       c->brk_offset, c->brk_msg);
        }
        if (broken == 0) {
            printf("chain intact: %zu partitions, %" PRIu64 " records\n", nparts, records);
        } else {
            for (size_t i = 0; i < nparts; i++)
                if (chains[i].brk != AUD_INTACT) {
                    printf("chain BROKEN: %zu of %zu partitions; first: %s:%" PRId32
                           " offset %" PRId64 "\n",
                           broken, nparts, parts[i].topic, parts[i].partition,
                           chains[i].brk_offset);
                    break;
                }
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: writing the output: %s\n", PROG, strerror(errno));
        goto out;
    }
    ret = broken ? 1 : 0;
out:
    free(chains);
    free(parts);
    free(ex);
    kq_config_free(&cfg);
    return ret;
}

int main(int argc, char **argv)
{
    if (kq_config_handle_help(argc, argv, usage))
        return 0;
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "query") == 0)
        return cmd_query(argc, argv);
    if (strcmp(argv[1], "verify-chain") == 0)
        return cmd_verify_chain(argc, argv);
    fprintf(stderr, "%s: unknown command '%s' (query or verify-chain; see --help)\n", PROG,
            argv[1]);
    return 2;
}
