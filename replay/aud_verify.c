/*
 * aud_verify.c — `kcqrs-audit verify-chain`; see aud_verify.h.
 */
#include "aud_verify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ev_chain.h"
#include "aud_read.h"
#include "kq_err.h"
#include "kq_rand.h"

static int on_record(void *arg, aud_part *p, const rd_kafka_message_t *m)
{
    (void)arg;
    return ev_chain_add(p->user, m->offset, m->payload, m->len);
}

static void json_str(const char *s, FILE *out)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static void report_json(const aud_part *parts, const ev_chain *chains, size_t nparts,
                        uint64_t records, size_t broken, FILE *out)
{
    char hx[EV_HEX_LEN + 1];

    fprintf(out, "{\"intact\":%s,\"records\":%" PRIu64 ",\"partitions\":[",
            broken ? "false" : "true", records);
    for (size_t i = 0; i < nparts; i++) {
        const ev_chain *c = &chains[i];
        fprintf(out, "%s{\"topic\":", i ? "," : "");
        json_str(parts[i].topic, out);
        fprintf(out, ",\"partition\":%" PRId32 ",\"records\":%" PRIu64 ",\"end_offset\":%" PRId64,
                parts[i].partition, c->records, parts[i].end);
        if (c->has_head) {
            kq_hex_encode(c->head, EV_HASH_LEN, hx);
            fprintf(out, ",\"head\":\"%s\",\"head_offset\":%" PRId64, hx, c->head_offset);
        } else {
            fprintf(out, ",\"head\":null,\"head_offset\":null");
        }
        if (c->brk == EV_CHAIN_INTACT) {
            fprintf(out, ",\"intact\":true,\"break\":null}");
        } else {
            fprintf(out,
                    ",\"intact\":false,\"break\":{\"kind\":\"%s\",\"offset\":%" PRId64
                    ",\"message\":",
                    ev_chain_break_name(c->brk), c->brk_offset);
            json_str(c->brk_msg, out);
            fprintf(out, "}}");
        }
    }
    fprintf(out, "]}\n");
}

static void report_lines(const aud_part *parts, const ev_chain *chains, size_t nparts,
                         uint64_t records, size_t broken, FILE *out)
{
    char hx[EV_HEX_LEN + 1];

    for (size_t i = 0; i < nparts; i++) {
        const ev_chain *c = &chains[i];
        if (c->has_head)
            kq_hex_encode(c->head, EV_HASH_LEN, hx);
        fprintf(out, "%s:%" PRId32 "=%s records=%" PRIu64, parts[i].topic, parts[i].partition,
                c->has_head ? hx : "none", c->records);
        if (c->brk == EV_CHAIN_INTACT)
            fprintf(out, " intact\n");
        else
            fprintf(out, " BROKEN %s at offset %" PRId64 ": %s\n", ev_chain_break_name(c->brk),
                    c->brk_offset, c->brk_msg);
    }
    if (broken == 0) {
        fprintf(out, "chain intact: %zu partitions, %" PRIu64 " records\n", nparts, records);
        return;
    }
    for (size_t i = 0; i < nparts; i++)
        if (chains[i].brk != EV_CHAIN_INTACT) {
            fprintf(out,
                    "chain BROKEN: %zu of %zu partitions; first: %s:%" PRId32 " offset %" PRId64
                    "\n",
                    broken, nparts, parts[i].topic, parts[i].partition, chains[i].brk_offset);
            break;
        }
}

int aud_verify_run(const kq_config *cfg, aud_verify_opts *o, FILE *out, int *broken, char *errstr,
                   size_t errlen)
{
    aud_topics t;
    aud_part *parts = NULL;
    ev_chain *chains = NULL;
    size_t nparts = 0, nbroken = 0;
    uint64_t records = 0;
    int rc;

    *broken = 0;
    aud_read_topics(cfg, EV_AGG_UNKNOWN, &t);
    if ((rc = aud_read_plan(cfg, &t, NULL, &parts, &nparts, errstr, errlen)) != 0)
        goto out;
    if ((chains = calloc(nparts > 0 ? nparts : 1, sizeof *chains)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nparts; i++) {
        ev_chain_init(&chains[i]);
        parts[i].user = &chains[i];
        for (size_t k = 0; k < o->nex; k++)
            if (o->ex[k].partition == parts[i].partition &&
                strcmp(o->ex[k].topic, parts[i].topic) == 0) {
                ev_chain_expect(&chains[i], o->ex[k].hash);
                o->ex[k].used = 1;
            }
    }
    for (size_t k = 0; k < o->nex; k++)
        if (!o->ex[k].used) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL,
                           "--expect-head: %s:%" PRId32 " is no partition of the event topics",
                           o->ex[k].topic, o->ex[k].partition);
            goto out;
        }
    if ((rc = aud_read_run(cfg, "kcqrs.audit.chain", parts, nparts, -1, on_record, NULL, errstr,
                           errlen)) != 0)
        goto out;
    for (size_t i = 0; i < nparts; i++) {
        ev_chain_finish(&chains[i]);
        records += chains[i].records;
        nbroken += chains[i].brk != EV_CHAIN_INTACT;
    }
    if (o->json)
        report_json(parts, chains, nparts, records, nbroken, out);
    else
        report_lines(parts, chains, nparts, records, nbroken, out);
    if (fflush(out) != 0 || ferror(out)) {
        rc = kq_seterr(errstr, errlen, KQ_EIO, "writing the output: %s", strerror(errno));
        goto out;
    }
    *broken = nbroken > 0;
out:
    free(chains);
    free(parts);
    return rc;
}
