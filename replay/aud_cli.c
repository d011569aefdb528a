/*
 * aud_cli.c — kcqrs-audit's options; see aud_cli.h.
 */
#include "aud_cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kq_err.h"
#include "kq_json_in.h"
#include "kq_log.h"
#include "kq_time.h"

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

static int unexpected(const char *arg, int missing, char *errstr, size_t errlen)
{
    return kq_seterr(errstr, errlen, KQ_EINVAL, "%s '%s' (see --help)",
                     missing ? "missing value for" : "unexpected argument", arg);
}

static int time_opt(const char *name, const char *v, int64_t *us, char *errstr, size_t errlen)
{
    char err[512];

    if (kq_time_parse_err(v, us, err, sizeof err) != 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "%s: %s", name, err);
    return 0;
}

int aud_cli_query(int argc, char **argv, aud_query_opts *o, char *errstr, size_t errlen)
{
    const char *v;
    int missing = 0, rc;

    memset(o, 0, sizeof *o);
    aud_filter_init(&o->f);
    o->limit = -1;
    for (int i = 1; i < argc; i++) {
        if ((v = opt(argc, argv, &i, "--aggregate-type", &missing)) != NULL) {
            if ((o->f.agg = aud_aggregate_type_parse(v)) == EV_AGG_UNKNOWN)
                return kq_seterr(errstr, errlen, KQ_EINVAL,
                                 "--aggregate-type must be resource, workflow or run, not '%s'", v);
        } else if ((v = opt(argc, argv, &i, "--aggregate-id", &missing)) != NULL) {
            if (!kq_jin_id_valid(v))
                return kq_seterr(errstr, errlen, KQ_EINVAL,
                                 "--aggregate-id must match [A-Za-z0-9._-]{1,64}");
            o->f.aggregate_id = v;
        } else if ((v = opt(argc, argv, &i, "--actor", &missing)) != NULL) {
            if (*v == '\0' || strlen(v) > 255)
                return kq_seterr(errstr, errlen, KQ_EINVAL, "--actor must be 1..255 bytes");
            o->f.actor = v;
        } else if ((v = opt(argc, argv, &i, "--event-type", &missing)) != NULL) {
            if ((o->f.event_type = ev_event_type_from_name(v, strlen(v))) == EV_EVENT_NONE)
                return kq_seterr(errstr, errlen, KQ_EINVAL,
                                 "unknown --event-type '%s' (e.g. ResourceCreated)", v);
        } else if ((v = opt(argc, argv, &i, "--since", &missing)) != NULL) {
            if ((rc = time_opt("--since", v, &o->f.since_us, errstr, errlen)) != 0)
                return rc;
        } else if ((v = opt(argc, argv, &i, "--until", &missing)) != NULL) {
            if ((rc = time_opt("--until", v, &o->f.until_us, errstr, errlen)) != 0)
                return rc;
        } else if ((v = opt(argc, argv, &i, "--format", &missing)) != NULL) {
            if (strcmp(v, "json") != 0 && strcmp(v, "table") != 0)
                return kq_seterr(errstr, errlen, KQ_EINVAL,
                                 "--format must be json or table, not '%s'", v);
            o->table = strcmp(v, "table") == 0;
        } else if ((v = opt(argc, argv, &i, "--limit", &missing)) != NULL) {
            char *end;
            errno = 0;
            o->limit = strtoll(v, &end, 10);
            if (errno != 0 || *end != '\0' || *v < '0' || *v > '9' || o->limit < 1)
                return kq_seterr(errstr, errlen, KQ_EINVAL,
                                 "--limit must be a positive integer, not '%s'", v);
        } else {
            return unexpected(argv[i], missing, errstr, errlen);
        }
    }
    if (o->f.since_us != INT64_MIN && o->f.until_us != INT64_MAX && o->f.since_us > o->f.until_us)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "--since is after --until");
    if (o->f.agg != EV_AGG_UNKNOWN && o->f.event_type != EV_EVENT_NONE &&
        ev_event_aggregate_type(o->f.event_type) != o->f.agg)
        kq_log_warn("--event-type %s is not an event of --aggregate-type %s: nothing can match",
                    ev_event_type_name(o->f.event_type), aud_aggregate_type_topic(o->f.agg));
    return 0;
}

int aud_expect_parse(const char *s, aud_expect *e)
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
    return ev_chain_hex_parse(eq + 1, e->hash);
}

void aud_verify_opts_free(aud_verify_opts *o)
{
    free(o->ex);
    o->ex = NULL;
    o->nex = 0;
}

int aud_cli_verify(int argc, char **argv, aud_verify_opts *o, char *errstr, size_t errlen)
{
    const char *v;
    int missing = 0, rc = 0;

    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            o->json = 1;
        } else if ((v = opt(argc, argv, &i, "--expect-head", &missing)) != NULL) {
            aud_expect *g;
            if (o->nex >= AUD_MAX_EXPECT) {
                rc = kq_seterr(errstr, errlen, KQ_EINVAL, "more than %d --expect-head",
                               AUD_MAX_EXPECT);
                goto fail;
            }
            if ((g = realloc(o->ex, (o->nex + 1) * sizeof *o->ex)) == NULL) {
                rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
                goto fail;
            }
            o->ex = g;
            if (aud_expect_parse(v, &o->ex[o->nex]) != 0) {
                rc = kq_seterr(errstr, errlen, KQ_EINVAL,
                               "--expect-head '%s' is not TOPIC:PARTITION=HEX (64 hex digits)", v);
                goto fail;
            }
            o->nex++;
        } else {
            rc = unexpected(argv[i], missing, errstr, errlen);
            goto fail;
        }
    }
    return 0;
fail:
    aud_verify_opts_free(o);
    return rc;
}
