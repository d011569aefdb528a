/*
 * kcqrs_events.c — `kcqrs-events encode|decode`: JSON envelope <-> FlatBuffers.
 *
 *   encode  reads a JSON envelope (at most EV_JSON_MAX_INPUT bytes) on stdin,
 *           writes the Envelope buffer (file identifier KQEV) to stdout;
 *   decode  reads an Envelope buffer (at most MAX_BINARY bytes) on stdin,
 *           verifies it and writes the JSON flatc would print to stdout.
 *
 * Exit status: 0 success; 1 invalid input (one line on stderr, nothing on
 * stdout) or an I/O error; 2 usage or configuration error. Single-threaded.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_fb.h"
#include "ev_json.h"
#include "kq_config.h"
#include "kq_err.h"

#define PROG "kcqrs-events"
#define MAX_BINARY (16u << 20)

static const char usage[] =
    "usage: " PROG " encode|decode\n"
    "\n"
    "  encode   JSON envelope on stdin -> FlatBuffers Envelope (KQEV) on stdout\n"
    "  decode   FlatBuffers Envelope on stdin -> JSON on stdout (as flatc --json prints it)\n"
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

static int cmd_decode(char *errstr, size_t errlen)
{
    uint8_t *in = NULL;
    char *json = NULL;
    size_t len, jlen;
    int rc;

    if ((rc = read_all(stdin, MAX_BINARY, &in, &len, errstr, errlen)))
        goto out;
    if ((rc = ev_json_decode(in, len, &json, &jlen, errstr, errlen)))
        goto out;
    rc = write_all(json, jlen, errstr, errlen);
out:
    free(in);
    free(json);
    return rc;
}

int main(int argc, char **argv)
{
    kq_config cfg;
    char errstr[512];
    int rc;

    if (kq_config_handle_flags(argc, argv, PROG, usage))
        return 0;
    /* Nothing here needs the settings, but every binary validates them the same way. */
    if (kq_config_load_and_init_log(&cfg, PROG, errstr, sizeof errstr)) {
        fprintf(stderr, PROG ": %s\n", errstr);
        return 2;
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
