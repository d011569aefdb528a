/*
 * kcqrs_events.c — `kcqrs-events encode|decode|cat`: JSON envelope <->
 * FlatBuffers, and records straight from Kafka.
 *
 *   encode  reads a JSON envelope (at most EV_JSON_MAX_INPUT bytes) on stdin,
 *           writes the Envelope buffer (file identifier KQEV) to stdout;
 *   decode  reads an Envelope buffer (at most MAX_BINARY bytes) on stdin,
 *           verifies it and writes the JSON flatc would print to stdout; or a
 *           stream of length-prefixed records (ev_frame.h), one JSON line each;
 *   cat     TOPIC[:PARTITION[:OFFSET]] as JSON lines (ev_cat.h).
 *
 * Exit status: 0 success; 1 invalid input (one line on stderr, nothing on
 * stdout) or an I/O error; 2 usage or configuration error. Single-threaded.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ev_cat.h"
#include "ev_fb.h"
#include "ev_frame.h"
#include "ev_json.h"
#include "kq_config.h"
#include "kq_err.h"
#include "kq_util.h"

#define PROG "kcqrs-events"
#define MAX_BINARY (16u << 20)

static const char usage[] =
    "usage: " PROG " encode|decode\n"
    "       " PROG " cat TOPIC[:PARTITION[:OFFSET]] [--follow] [--max N] [--framed]\n"
    "\n"
    "  encode   JSON envelope on stdin -> FlatBuffers Envelope (KQEV) on stdout\n"
    "  decode   FlatBuffers Envelope on stdin -> JSON on stdout (as flatc --json prints it);\n"
    "           a stream of records, each a 4-byte little-endian length then the record\n"
    "           as Kafka stores it, -> one JSON line per record\n"
    "  cat      records of a Kafka topic (or alias resource, workflow, run, dlq) as JSON\n"
    "           lines {topic,partition,offset,timestamp,key,event}, read_committed, from\n"
    "           OFFSET (default the beginning) to the end at start; --follow keeps\n"
    "           reading; --max N stops after N records; --framed writes the values as\n"
    "           the length-prefixed stream that decode reads\n"
    "\n"
    "Exit status: 0 ok, 1 invalid input or I/O error (message on stderr),\n"
    "2 usage or configuration error.\n";

/*
 * Read all of `f` into a malloc'd buffer (caller frees *out). Fails with
 * KQ_ERANGE when there are more than `max` bytes.
 */
static int read_all(FILE *f, size_t max, uint8_t **out, size_t *len, char *errstr, size_t errlen)
{
    size_t cap = 64 * 1024, n = 0;
    uint8_t *buf = malloc(cap), *nb;
    int rc = 0;

    if (buf == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    for (;;) {
        size_t got;
        if (n == cap) {
            if (cap > max) {
                rc = kq_seterr(errstr, errlen, KQ_ERANGE, "input is over the limit of %zu bytes",
                               max);
                goto out;
            }
            cap *= 2;
            if ((nb = realloc(buf, cap)) == NULL) {
                rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
                goto out;
            }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                rc = kq_seterr(errstr, errlen, KQ_EIO, "reading stdin: %s", strerror(errno));
            break;
        }
    }
    if (rc == 0 && n > max)
        rc = kq_seterr(errstr, errlen, KQ_ERANGE, "input is over the limit of %zu bytes", max);
out:
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return 0;
}

static int write_all(const void *p, size_t n, char *errstr, size_t errlen)
{
    if (fwrite(p, 1, n, stdout) != n || fflush(stdout) != 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "writing stdout: %s", strerror(errno));
    return 0;
}

static int cmd_encode(char *errstr, size_t errlen)
{
    ev_fb_builder b;
    uint8_t *in = NULL;
    size_t len, outlen;
    const uint8_t *out;
    int rc;

    ev_fb_builder_init(&b);
    if ((rc = read_all(stdin, EV_JSON_MAX_INPUT, &in, &len, errstr, errlen)))
        goto out;
    if ((rc = ev_json_encode((const char *)in, len, &b, errstr, errlen)))
        goto out;
    out = ev_fb_builder_data(&b, &outlen);
    rc = write_all(out, outlen, errstr, errlen);
out:
    free(in);
    ev_fb_builder_free(&b);
    return rc;
}

/* A stream of frames (the first `npre` bytes already read): one JSON line each. */
static int decode_stream(const uint8_t *pre, size_t npre, char *errstr, size_t errlen)
{
    uint8_t *buf = NULL;
    char *json = NULL;
    size_t cap = 0, len, jlen, at = 0;
    long long n = 0;
    int rc;
    char e[384];

    while ((rc = ev_frame_read(stdin, n == 0 ? pre : NULL, n == 0 ? npre : 0, &buf, &cap, &len, e,
                               sizeof e)) == 1) {
        if ((rc = ev_json_decode(buf, len, &json, &jlen, e, sizeof e)) != 0)
            break;
        jlen = ev_json_compact(json, jlen);
        json[jlen++] = '\n';
        if ((rc = write_all(json, jlen, e, sizeof e)) != 0)
            break;
        free(json);
        json = NULL;
        at += 4 + len;
        n++;
    }
    if (rc < 0)
        kq_seterr(errstr, errlen, rc, "record %lld (byte %zu of the stream): %s", n + 1, at, e);
    free(json);
    free(buf);
    return rc < 0 ? rc : 0;
}

static int cmd_decode(char *errstr, size_t errlen)
{
    uint8_t *in = NULL, head[8];
    char *json = NULL;
    size_t len, jlen, nh;
    int rc;

    /* A bare Envelope has "KQEV" at bytes 4..7; anything else is a framed stream. */
    nh = fread(head, 1, sizeof head, stdin);
    if (nh == sizeof head && !ev_frame_is_bare(head, nh))
        return decode_stream(head, nh, errstr, errlen);
    if ((rc = read_all(stdin, MAX_BINARY, &in, &len, errstr, errlen)))
        goto out;
    if (len + nh > MAX_BINARY) {
        rc =
            kq_seterr(errstr, errlen, KQ_ERANGE, "input is over the limit of %u bytes", MAX_BINARY);
        goto out;
    }
    {
        uint8_t *all = malloc(len + nh);
        if (all == NULL) {
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(all, head, nh);
        memcpy(all + nh, in, len);
        free(in);
        in = all;
        len += nh;
    }
    if ((rc = ev_json_decode(in, len, &json, &jlen, errstr, errlen)))
        goto out;
    rc = write_all(json, jlen, errstr, errlen);
out:
    free(in);
    free(json);
    return rc;
}

/* cat TOPIC[:PARTITION[:OFFSET]] [--follow] [--max N] [--framed]; 2 for a usage error. */
static int cmd_cat(const kq_config *cfg, int argc, char **argv, char *errstr, size_t errlen)
{
    ev_cat_opts o = {0};
    long v;

    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--follow") == 0) {
            o.follow = 1;
        } else if (strcmp(argv[i], "--framed") == 0) {
            o.framed = 1;
        } else if (strcmp(argv[i], "--max") == 0 && i + 1 < argc &&
                   kq_parse_long(argv[i + 1], 1, 1000000000000L, &v) == 0) {
            o.max = v;
            i++;
        } else if (argv[i][0] != '-' && o.spec == NULL) {
            o.spec = argv[i];
        } else {
            fprintf(stderr, PROG ": cat: bad argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    if (o.spec == NULL) {
        fprintf(stderr, PROG ": cat: which topic?\n%s", usage);
        return 2;
    }
    if (o.framed && isatty(STDOUT_FILENO)) {
        fprintf(stderr, PROG ": cat --framed writes binary: redirect stdout\n");
        return 2;
    }
    int rc = ev_cat_run(cfg, &o, stdout, errstr, errlen);
    if (rc == KQ_EINVAL) {
        fprintf(stderr, PROG ": cat: %s\n", errstr);
        return 2;
    }
    if (rc != 0) {
        fprintf(stderr, PROG ": cat: %s\n", errstr);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    kq_config cfg;
    char errstr[512];
    int rc;

    if (kq_config_handle_flags(argc, argv, PROG, usage))
        return 0;
    /* encode and decode need no setting, but every binary validates them the same way. */
    if (kq_config_load_and_init_log(&cfg, PROG, errstr, sizeof errstr)) {
        fprintf(stderr, PROG ": %s\n", errstr);
        return 2;
    }
    if (argc >= 2 && strcmp(argv[1], "cat") == 0) {
        rc = cmd_cat(&cfg, argc, argv, errstr, sizeof errstr);
        kq_config_free(&cfg);
        return rc;
    }
    kq_config_free(&cfg);
    if (argc != 2) {
        fprintf(stderr, "%s", usage);
        return 2;
    }
    if (strcmp(argv[1], "encode") == 0) {
        rc = cmd_encode(errstr, sizeof errstr);
    } else if (strcmp(argv[1], "decode") == 0) {
        rc = cmd_decode(errstr, sizeof errstr);
    } else {
        fprintf(stderr, PROG ": unknown command '%s'\n%s", argv[1], usage);
        return 2;
    }
    if (rc) {
        fprintf(stderr, PROG ": %s: %s\n", argv[1], errstr);
        return 1;
    }
    return 0;
}
