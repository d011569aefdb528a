/*
 * kq_pgapply — drive the PostgreSQL target (projections/proj_pg.h) without the
 * projector's runner: for the end-to-end tests and for measurements.
 *
 *   kq_pgapply [options] FILE...       apply envelope files
 *   kq_pgapply [options] --from-kafka  apply every committed record of the
 *                                      three event topics from the offsets
 *                                      stored in PostgreSQL to the end
 *   kq_pgapply --offsets               print the stored offsets and exit
 *   kq_pgapply --migrate               only open (apply pending migrations)
 *
 * A FILE ending in .json is a JSON envelope (ev_json_encode, as `kcqrs-events
 * encode` reads it); any other file is a FlatBuffers Envelope. A file that
 * does not decode is handed over with decoded = 0, as the runner does after
 * dead-lettering it itself. File i (from 0) gets the origin
 * <prefix>.<aggregate type>.events / --partition / --offset + i (files that do
 * not decode go to <prefix>.resource.events); the batch's `next` offsets are
 * the last offset of each topic + 1.
 *
 * Options:
 *   --partition P     partition of the files' records (default 0)
 *   --offset O        offset of the first file (default 0)
 *   --batch N         files per proj_pg_apply call (default: all in one)
 *   --path copy|copy_staging|pipeline   write path (default copy)
 *   --sync-commit     synchronous_commit = on (default off, as the projector)
 *   --dl-fail         the dead-letter callback fails (the batch must roll back)
 *   --offsets         after applying, print "topic partition next_offset" lines
 *
 * Output: one line per dead-lettered event, "dead_letter <topic>/<partition>/
 * <offset> <reason>", then "applied <n> events in <b> batches". Settings from
 * the environment (KCQRS_PG_DSN, KCQRS_TOPIC_PREFIX, KCQRS_BROKERS,
 * KCQRS_PROJ_BATCH_MAX for --from-kafka). Exit 0 ok, 1 error, 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "ev_codec.h"
#include "ev_json.h"
#include "kq_config.h"
#include "kq_err.h"
#include "kq_kafka.h"
#include "kq_log.h"
#include "proj_batch.h"
#include "proj_failpoint.h"
#include "proj_pg.h"
#include "proj_pii.h"
#include "../../bench/pgpaths/bench_pg_paths.h"

static const char usage[] =
    "usage: kq_pgapply [--partition P] [--offset O] [--batch N]\n"
    "                  [--path copy|copy_staging|pipeline]\n"
    "                  [--sync-commit] [--dl-fail] [--offsets] [--migrate] FILE...\n"
    "       kq_pgapply [options] --from-kafka\n";

typedef struct input {
    uint8_t *data;
    size_t len;
    char topic[256];
    char key[128];
} input;

static int dl_fail;

static int dead_letter(void *arg, const proj_event *ev, const char *target, const char *reason)
{
    (void)arg;
    printf("dead_letter %s/%" PRId32 "/%" PRId64 " %s %s\n", ev->topic, ev->partition, ev->offset,
           target, reason);
    fflush(stdout);
    return dl_fail ? -1 : 0;
}

static void print_offset(void *arg, const char *topic, int32_t partition, int64_t next)
{
    (void)arg;
    printf("%s %" PRId32 " %" PRId64 "\n", topic, partition, next);
}

static int read_file(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *p = NULL;
    size_t cap = 0, n = 0, r;

    if (f == NULL)
        return -1;
    do {
        if (cap - n < 65536) {
            uint8_t *np = realloc(p, cap + 65536);
            if (np == NULL) {
                free(p);
                fclose(f);
                return -1;
            }
            p = np;
            cap += 65536;
        }
        r = fread(p + n, 1, cap - n, f);
        n += r;
    } while (r > 0);
    fclose(f);
    *out = p;
    *len = n;
    return 0;
}

/* Apply ev[0..n) with `next` derived from the events' origins. */
static int apply(proj_pg *pg, proj_event *ev, size_t n, char *err, size_t errlen)
{
    proj_offset next[64];
    proj_batch b;
    size_t nn = 0;

    for (size_t i = 0; i < n; i++) {
        size_t j;
        for (j = 0; j < nn; j++)
            if (strcmp(next[j].topic, ev[i].topic) == 0 && next[j].partition == ev[i].partition)
                break;
        if (j == nn) {
            if (nn == 64)
                return kq_seterr(err, errlen, KQ_ERANGE, "too many partitions in one batch");
            next[nn].topic = ev[i].topic;
            next[nn].partition = ev[i].partition;
            nn++;
        }
        next[j].next_offset = ev[i].offset + 1;
    }
    b.ev = ev;
    b.n = n;
    b.next = next;
    b.nnext = nn;
    return proj_pg_apply(pg, &b, dead_letter, NULL, err, errlen);
}

/* Sealed personal data opened as the projector's runner does (proj_pii.h). */
static const kq_config *pii_cfg;
static kq_keyring *pii_keys;

static void decode_into(proj_event *e, char *err, size_t errlen)
{
    e->decoded = ev_envelope_decode(e->value, e->len, &e->env, err, errlen) == 0;
    if (e->decoded && pii_cfg != NULL)
        proj_pii_open(e, &pii_keys, pii_cfg, "kq_pgapply", err, errlen);
}

static int from_files(proj_pg *pg, const kq_config *cfg, char **files, int nfiles, int32_t part,
                      int64_t off0, size_t batch, size_t *napplied, size_t *nbatches)
{
    input *in = calloc((size_t)nfiles, sizeof *in);
    proj_event *ev = calloc((size_t)nfiles, sizeof *ev);
    ev_fb_builder fbs, *fb = &fbs;
    char err[512];
    int rc = 0;

    ev_fb_builder_init(fb);
    if (in == NULL || ev == NULL) {
        fprintf(stderr, "kq_pgapply: out of memory\n");
        rc = 1;
        goto out;
    }
    for (int i = 0; i < nfiles && !rc; i++) {
        size_t l = strlen(files[i]);
        uint8_t *raw = NULL;
        size_t rawlen = 0;
        const char *agg = "resource";

        if (read_file(files[i], &raw, &rawlen)) {
            fprintf(stderr, "kq_pgapply: %s: %s\n", files[i], strerror(errno));
            rc = 1;
            break;
        }
        if (l > 5 && strcmp(files[i] + l - 5, ".json") == 0) {
            const uint8_t *data;
            size_t dlen;
            if (ev_json_encode((const char *)raw, rawlen, fb, err, sizeof err)) {
                fprintf(stderr, "kq_pgapply: %s: %s\n", files[i], err);
                free(raw);
                rc = 1;
                break;
            }
            data = ev_fb_builder_data(fb, &dlen);
            free(raw);
            if ((raw = malloc(dlen ? dlen : 1)) == NULL) {
                rc = 1;
                break;
            }
            memcpy(raw, data, dlen);
            rawlen = dlen;
        }
        in[i].data = raw;
        in[i].len = rawlen;
        ev[i].value = raw;
        ev[i].len = rawlen;
        ev[i].partition = part;
        ev[i].offset = off0 + i;
        ev[i].timestamp_ms = 0;
        decode_into(&ev[i], err, sizeof err);
        if (ev[i].decoded) {
            agg = ev_aggregate_type_name(ev[i].env.aggregate_type);
            snprintf(in[i].key, sizeof in[i].key, "%.*s/%020" PRId64,
                     (int)(ev[i].env.aggregate_id.len > 64 ? 64 : ev[i].env.aggregate_id.len),
                     ev[i].env.aggregate_id.ptr, ev[i].env.version);
        } else {
            printf("undecodable %s: %s\n", files[i], err);
        }
        if (kq_config_topic(cfg, agg ? agg : "resource", in[i].topic, sizeof in[i].topic) >=
            (int)sizeof in[i].topic) {
            fprintf(stderr, "kq_pgapply: no topic for aggregate type %s\n", agg);
            rc = 1;
            break;
        }
        ev[i].topic = in[i].topic;
        ev[i].key = in[i].key;
        ev[i].keylen = strlen(in[i].key);
    }
    for (size_t i = 0; !rc && i < (size_t)nfiles; i += batch) {
        size_t n = (size_t)nfiles - i < batch ? (size_t)nfiles - i : batch;
        if (apply(pg, ev + i, n, err, sizeof err)) {
            fprintf(stderr, "kq_pgapply: apply: %s\n", err);
            rc = 1;
            break;
        }
        *napplied += n;
        (*nbatches)++;
    }
out:
    for (int i = 0; in != NULL && i < nfiles; i++)
        free(in[i].data);
    for (int i = 0; ev != NULL && i < nfiles; i++)
        free(ev[i].plain);
    free(in);
    free(ev);
    ev_fb_builder_free(fb);
    return rc;
}

/* ---------------------------------------------------------------- --from-kafka */

typedef struct start_pos {
    rd_kafka_topic_partition_list_t *list;
} start_pos;

static void set_start(void *arg, const char *topic, int32_t partition, int64_t next)
{
    start_pos *s = arg;
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(s->list, topic, partition);
    if (tp != NULL)
        tp->offset = next;
}

static int from_kafka(proj_pg *pg, const kq_config *cfg, size_t *napplied, size_t *nbatches)
{
    char topics[3][256], err[512];
    const char *aggs[3] = {"resource", "workflow", "run"};
    rd_kafka_conf_t *conf = kq_kafka_conf_new(cfg, "kq_pgapply", err, sizeof err);
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(64);
    start_pos sp = {list};
    size_t max = cfg->proj_batch_max > 0 ? (size_t)cfg->proj_batch_max : 2000;
    rd_kafka_message_t **msgs = calloc(max, sizeof *msgs);
    proj_event *ev = calloc(max, sizeof *ev);
    char *eof = NULL;
    int rc = 1, nparts = 0;

    if (conf == NULL) {
        fprintf(stderr, "kq_pgapply: %s\n", err);
        goto out;
    }
    if (msgs == NULL || ev == NULL) {
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    /* kq_kafka_consumer_new consumes conf either way. */
    if ((rk = kq_kafka_consumer_new(cfg, "kq_pgapply", conf, err, sizeof err)) == NULL) {
        fprintf(stderr, "kq_pgapply: %s\n", err);
        goto out;
    }
    for (int t = 0; t < 3; t++) {
        const rd_kafka_metadata_t *md = NULL;
        rd_kafka_topic_t *rkt;
        if (kq_config_topic(cfg, aggs[t], topics[t], sizeof topics[t]) >= (int)sizeof topics[t])
            goto out;
        rkt = rd_kafka_topic_new(rk, topics[t], NULL);
        if (rd_kafka_metadata(rk, 0, rkt, &md, cfg->kafka_timeout_ms) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            md->topic_cnt != 1 || md->topics[0].err) {
            /* a topic that does not exist has nothing to apply */
            if (md)
                rd_kafka_metadata_destroy(md);
            rd_kafka_topic_destroy(rkt);
            continue;
        }
        for (int p = 0; p < md->topics[0].partition_cnt; p++)
            rd_kafka_topic_partition_list_add(list, topics[t], md->topics[0].partitions[p].id)
                ->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
    }
    if (proj_pg_load_offsets(pg, set_start, &sp, err, sizeof err)) {
        fprintf(stderr, "kq_pgapply: %s\n", err);
        goto out;
    }
    nparts = list->cnt;
    if (nparts == 0) {
        rc = 0;
        goto out;
    }
    if ((eof = calloc((size_t)nparts, sizeof *eof)) == NULL)
        goto out;
    if (rd_kafka_assign(rk, list)) {
        fprintf(stderr, "kq_pgapply: assign failed\n");
        goto out;
    }
    /* until every partition has reported its end once (records produced
     * meanwhile may be left for the next run) */
    for (int eofs = 0; eofs < nparts;) {
        size_t n = 0;
        while (n < max && eofs < nparts) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, n ? 5 : 1000);
            if (m == NULL)
                break;
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                for (int i = 0; i < nparts; i++)
                    if (!eof[i] && strcmp(list->elems[i].topic, rd_kafka_topic_name(m->rkt)) == 0 &&
                        list->elems[i].partition == m->partition) {
                        eof[i] = 1;
                        eofs++;
                    }
                rd_kafka_message_destroy(m);
                continue;
            }
            if (m->err) {
                fprintf(stderr, "kq_pgapply: consume: %s\n", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                continue;
            }
            msgs[n] = m;
            memset(&ev[n], 0, sizeof ev[n]);
            ev[n].topic = rd_kafka_topic_name(m->rkt);
            ev[n].partition = m->partition;
            ev[n].offset = m->offset;
            ev[n].value = m->payload;
            ev[n].len = m->len;
            ev[n].key = m->key;
            ev[n].keylen = m->key_len;
            if (m->payload != NULL)
                decode_into(&ev[n], err, sizeof err);
            n++;
        }
        if (n > 0) {
            int arc = apply(pg, ev, n, err, sizeof err);
            for (size_t i = 0; i < n; i++) {
                rd_kafka_message_destroy(msgs[i]);
                free(ev[i].plain);
                ev[i].plain = NULL;
            }
            if (arc) {
                fprintf(stderr, "kq_pgapply: apply: %s\n", err);
                goto out;
            }
            *napplied += n;
            (*nbatches)++;
        }
    }
    rc = 0;
out:
    free(eof);
    free(msgs);
    free(ev);
    rd_kafka_topic_partition_list_destroy(list);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    return rc;
}

int main(int argc, char **argv)
{
    kq_config cfg;
    proj_pg *pg = NULL;
    proj_pg_path path = PROJ_PG_PATH_COPY;
    char err[512];
    int32_t part = 0;
    int64_t off0 = 0;
    size_t batch = 0, napplied = 0, nbatches = 0;
    int sync = 0, print_offsets = 0, migrate_only = 0, kafka = 0, rc = 1, i;

    for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--partition") == 0 && v) {
            part = (int32_t)strtol(v, NULL, 10), i++;
        } else if (strcmp(a, "--offset") == 0 && v) {
            off0 = strtoll(v, NULL, 10), i++;
        } else if (strcmp(a, "--batch") == 0 && v) {
            batch = (size_t)strtoull(v, NULL, 10), i++;
        } else if (strcmp(a, "--path") == 0 && v) {
            if (strcmp(v, "copy") == 0)
                path = PROJ_PG_PATH_COPY;
            else if (strcmp(v, "pipeline") == 0)
                path = PROJ_PG_PATH_PIPELINE;
            else if (strcmp(v, "copy_staging") == 0)
                path = PROJ_PG_PATH_COPY_STAGING;
            else {
                fputs(usage, stderr);
                return 2;
            }
            i++;
        } else if (strcmp(a, "--sync-commit") == 0) {
            sync = 1;
        } else if (strcmp(a, "--dl-fail") == 0) {
            dl_fail = 1;
        } else if (strcmp(a, "--offsets") == 0) {
            print_offsets = 1;
        } else if (strcmp(a, "--migrate") == 0) {
            migrate_only = 1;
        } else if (strcmp(a, "--from-kafka") == 0) {
            kafka = 1;
        } else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (!migrate_only && !print_offsets && !kafka && i == argc) {
        fputs(usage, stderr);
        return 2;
    }
    pii_cfg = &cfg;
    if (kq_config_load_and_init_log(&cfg, "kq_pgapply", err, sizeof err)) {
        fprintf(stderr, "kq_pgapply: %s\n", err);
        return 2;
    }
    proj_failpoint_init(cfg.failpoint);
    if (batch == 0)
        batch = (size_t)(argc - i) + 1;
    if (proj_pg_open(&cfg, &pg, err, sizeof err) ||
        proj_pg_set_path(pg, path, sync, err, sizeof err)) {
        fprintf(stderr, "kq_pgapply: %s\n", err);
        goto out;
    }
    if (!migrate_only) {
        if (kafka ? from_kafka(pg, &cfg, &napplied, &nbatches)
                  : (i < argc && from_files(pg, &cfg, argv + i, argc - i, part, off0, batch,
                                            &napplied, &nbatches)))
            goto out;
        if (kafka || i < argc)
            printf("applied %zu events in %zu batches\n", napplied, nbatches);
    }
    if (print_offsets && proj_pg_load_offsets(pg, print_offset, NULL, err, sizeof err)) {
        fprintf(stderr, "kq_pgapply: %s\n", err);
        goto out;
    }
    rc = 0;
out:
    proj_pg_close(pg);
    kq_config_free(&cfg);
    return rc;
}
