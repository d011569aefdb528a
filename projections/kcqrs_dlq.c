/*
 * kcqrs_dlq.c — `kcqrs-dlq list|show`: the projector's dead letters.
 *
 *   list [--json]
 *       every record of <prefix>.dlq (read_committed, up to its end at
 *       start), one line each: "<origin>\t<target>\t<at>\t<reason>", origin
 *       being TOPIC/PARTITION/OFFSET of the refused record (the dead letter's
 *       key); --json prints the dead letter's value (proj_dlq.h) without
 *       value_base64, plus "dlq_partition" and "dlq_offset", one line each.
 *   show ORIGIN
 *       every dead letter of ORIGIN (one per target that refused it, until
 *       compaction keeps the last) as one JSON line: the value, plus "event"
 *       (the refused record decoded, as kcqrs-events decode prints it) or
 *       "event_error" (why it does not decode). Exit 1 when there is none.
 *
 *   redrive [--dry-run] [ORIGIN]
 *       every dead letter (or those of ORIGIN) applied again to the read
 *       model that refused it, through the projector's own apply code, only
 *       when that model holds the aggregate at exactly the version before the
 *       record's; nothing is appended to any topic (proj_redrive.h). One
 *       line each: "<origin>\t<target>\tapplied|would_apply|skipped\t<detail>",
 *       then a summary on stderr. --dry-run writes nothing.
 *
 * A DLQ record whose value is not the JSON object proj_dlq writes is printed
 * (list) with target "?" and its reason "not a dead letter: ...", never
 * skipped silently.
 *
 * Exit status: 0 ok (redrive: skipped records included); 1 no such dead
 * letter, Kafka, read model or I/O error; 2 usage or
 * configuration error. Single-threaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <openssl/evp.h>

#include "ev_cat.h"
#include "ev_frame.h"
#include "ev_json.h"
#include "kq_config.h"
#include "kq_err.h"
#include "proj_redrive.h"

#define PROG "kcqrs-dlq"

static const char usage[] =
    "usage: " PROG " list [--json]\n"
    "       " PROG " show TOPIC/PARTITION/OFFSET\n"
    "       " PROG " redrive [--dry-run] [TOPIC/PARTITION/OFFSET]\n"
    "\n"
    "  list   every dead letter of <KCQRS_TOPIC_PREFIX>.dlq, one line each:\n"
    "         ORIGIN TARGET AT REASON (tab-separated; ORIGIN is the refused record's\n"
    "         TOPIC/PARTITION/OFFSET); --json: the dead letters as JSON lines\n"
    "  show   the dead letters of one ORIGIN with the refused record decoded\n"
    "  redrive  re-apply each dead-lettered record, read at its ORIGIN, to the read\n"
    "         model that refused it, only when that model holds the aggregate at the\n"
    "         version just before the record's (appends nothing to any topic);\n"
    "         ORIGIN TARGET applied|would_apply|skipped DETAIL per dead letter;\n"
    "         --dry-run writes nothing\n"
    "\n"
    "Exit status: 0 ok, 1 no such dead letter, Kafka or I/O error,\n"
    "2 usage or configuration error.\n";

typedef struct dlq_ctx {
    int json;           /* list --json */
    const char *origin; /* show: the key wanted; NULL for list */
    long long shown;
} dlq_ctx;

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "?";
}

/* The refused record of a dead letter decoded into v["event"] or v["event_error"]. */
static void add_event(json_t *v)
{
    const char *b64 = json_string_value(json_object_get(v, "value_base64"));
    size_t n, blen;
    unsigned char *raw;
    char *json = NULL, err[256];
    size_t jlen;
    int len;

    if (b64 == NULL) {
        json_object_set_new(v, "event_error", json_string("no value_base64 (a tombstone)"));
        return;
    }
    n = strlen(b64);
    if ((raw = malloc(n / 4 * 3 + 3)) == NULL)
        return;
    len = n % 4 == 0 ? EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n) : -1;
    if (len < 0) {
        json_object_set_new(v, "event_error", json_string("value_base64 is not base64"));
        free(raw);
        return;
    }
    blen = (size_t)len;
    if (n >= 1 && b64[n - 1] == '=')
        blen--;
    if (n >= 2 && b64[n - 2] == '=')
        blen--;
    if (ev_json_decode(raw, blen, &json, &jlen, err, sizeof err) == 0) {
        json_t *e = json_loadb(json, jlen, 0, NULL);
        if (e != NULL)
            json_object_set_new(v, "event", e);
    } else {
        json_object_set_new(v, "event_error", json_string(err));
    }
    free(json);
    free(raw);
}

static int on_record(void *arg, const char *topic, const rd_kafka_message_t *m, char *errstr,
                     size_t errlen)
{
    dlq_ctx *c = arg;
    char key[512];
    json_t *v = NULL;
    json_error_t je;
    int rc = 1;

    (void)topic;
    snprintf(key, sizeof key, "%.*s", m->key ? (int)(m->key_len < 500 ? m->key_len : 500) : 0,
             m->key ? (const char *)m->key : "");
    if (c->origin != NULL && strcmp(key, c->origin) != 0)
        return 0;
    if (m->payload != NULL)
        v = json_loadb(m->payload, m->len, JSON_REJECT_DUPLICATES, &je);
    if (v == NULL || !json_is_object(v)) {
        if (c->origin != NULL || c->json)
            printf("{\"key\":\"%s\",\"dlq_partition\":%d,\"dlq_offset\":%lld,\"error\":\"not a "
                   "dead letter: %s\"}\n",
                   key, (int)m->partition, (long long)m->offset,
                   m->payload == NULL ? "no value" : "not a JSON object");
        else
            printf("%s\t?\t?\tnot a dead letter: %s\n", key,
                   m->payload == NULL ? "no value" : "not a JSON object");
        json_decref(v);
        c->shown++;
        return ferror(stdout) ? kq_seterr(errstr, errlen, KQ_EIO, "writing stdout failed") : 1;
    }
    json_object_set_new(v, "dlq_partition", json_integer(m->partition));
    json_object_set_new(v, "dlq_offset", json_integer(m->offset));
    if (c->origin != NULL) {
        add_event(v);
        json_object_del(v, "value_base64");
    } else if (c->json) {
        json_object_del(v, "value_base64");
    }
    if (c->origin != NULL || c->json) {
        char *d = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (d == NULL)
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        else
            printf("%s\n", d);
        free(d);
    } else {
        printf("%s\t%s\t%s\t%s\n", key, jstr(v, "target"), jstr(v, "at"), jstr(v, "reason"));
    }
    json_decref(v);
    c->shown++;
    if (rc > 0 && ferror(stdout))
        rc = kq_seterr(errstr, errlen, KQ_EIO, "writing stdout failed");
    return rc;
}

/* TOPIC/PARTITION/OFFSET with numbers. */
static int origin_ok(const char *s)
{
    const char *b = strrchr(s, '/'), *a;
    if (b == NULL || b == s)
        return 0;
    for (a = b - 1; a > s && *a != '/'; a--)
        ;
    if (a == s || a + 1 == b || b[1] == '\0')
        return 0;
    for (const char *p = a + 1; p < b; p++)
        if (*p < '0' || *p > '9')
            return 0;
    for (const char *p = b + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return strlen(s) < 400;
}

/* redrive [--dry-run] [ORIGIN] */
static int redrive(int argc, char **argv)
{
    kq_config cfg;
    char errstr[512];
    const char *origin = NULL;
    int dry = 0, rc;
    proj_redrive_counts n;

    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0 && !dry) {
            dry = 1;
        } else if (origin == NULL && origin_ok(argv[i])) {
            origin = argv[i];
        } else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (kq_config_load_and_init_log(&cfg, PROG, errstr, sizeof errstr)) {
        fprintf(stderr, PROG ": %s\n", errstr);
        return 2;
    }
    rc = proj_redrive_run(&cfg, dry, origin, stdout, &n, errstr, sizeof errstr);
    kq_config_free(&cfg);
    if (rc == 0 && fflush(stdout) != 0)
        rc = kq_seterr(errstr, sizeof errstr, KQ_EIO, "writing stdout failed");
    if (rc != 0) {
        fprintf(stderr, PROG ": %s\n", errstr);
        return 1;
    }
    fprintf(stderr, PROG ": redrive%s: %ld applied, %ld would apply, %ld skipped\n",
            dry ? " --dry-run" : "", n.applied, n.would_apply, n.skipped);
    if (origin != NULL && n.applied + n.would_apply + n.skipped == 0) {
        fprintf(stderr, PROG ": no dead letter for %s\n", origin);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    kq_config cfg;
    char errstr[512];
    dlq_ctx c = {0};
    ev_cat_opts o = {0};
    int rc;

    if (kq_config_handle_flags(argc, argv, PROG, usage))
        return 0;
    if (argc >= 2 && strcmp(argv[1], "list") == 0 &&
        (argc == 2 || (argc == 3 && strcmp(argv[2], "--json") == 0))) {
        c.json = argc == 3;
    } else if (argc == 3 && strcmp(argv[1], "show") == 0 && origin_ok(argv[2])) {
        c.origin = argv[2];
    } else if (argc >= 2 && strcmp(argv[1], "redrive") == 0) {
        return redrive(argc, argv);
    } else {
        fputs(usage, stderr);
        return 2;
    }
    if (kq_config_load_and_init_log(&cfg, PROG, errstr, sizeof errstr)) {
        fprintf(stderr, PROG ": %s\n", errstr);
        return 2;
    }
    o.spec = "dlq";
    rc = ev_cat_each(&cfg, &o, on_record, &c, errstr, sizeof errstr);
    kq_config_free(&cfg);
    if (rc == KQ_ENOTFOUND) /* no DLQ topic: nothing was ever dead-lettered */
        rc = 0;
    if (rc == 0 && fflush(stdout) != 0)
        rc = kq_seterr(errstr, sizeof errstr, KQ_EIO, "writing stdout failed");
    if (rc != 0) {
        fprintf(stderr, PROG ": %s\n", errstr);
        return 1;
    }
    if (c.origin != NULL && c.shown == 0) {
        fprintf(stderr, PROG ": no dead letter for %s\n", c.origin);
        return 1;
    }
    return 0;
}
