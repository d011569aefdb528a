/*
 * kq_kprops.c — librdkafka properties file: parse, validate, apply; see kq_kprops.h.
 */
#include "kq_kprops.h"
#include "kq_err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_BYTES 65536
#define MAX_PROPS 1024

/* Keys kcqrs sets itself, and where the setting comes from instead. */
static const struct {
    const char *key;
    const char *why;
} owned[] = {
    {"bootstrap.servers", "set KCQRS_BROKERS instead"},
    {"metadata.broker.list", "set KCQRS_BROKERS instead"},
    {"client.id", "kcqrs names each client"},
    {"group.id", "kcqrs chooses the consumer groups"},
    {"transactional.id", "kcqrs-commands derives it from its writer identity"},
    {"enable.idempotence", "the writer needs it on"},
    {"acks", "the writer needs acks=all"},
    {"request.required.acks", "the writer needs acks=all"},
    {"isolation.level", "consumers read committed transactions only"},
    {"enable.auto.commit", "offsets live in the read models, not in Kafka"},
    {"enable.auto.offset.store", "offsets live in the read models, not in Kafka"},
    {"auto.offset.reset", "kcqrs reads every log from its start"},
    {"enable.partition.eof", "kcqrs relies on end-of-partition events"},
    {"allow.auto.create.topics", "topics are created by kcqrs with their own configs"},
    {"transaction.timeout.ms", "derived from KCQRS_KAFKA_TIMEOUT_MS"},
    {"message.timeout.ms", "derived from KCQRS_KAFKA_TIMEOUT_MS"},
    {"delivery.timeout.ms", "derived from KCQRS_KAFKA_TIMEOUT_MS"},
    {"request.timeout.ms", "derived from KCQRS_KAFKA_TIMEOUT_MS"},
    {"socket.timeout.ms", "derived from KCQRS_KAFKA_TIMEOUT_MS"},
};

int kq_kprops_is_secret(const char *key)
{
    return strstr(key, "password") != NULL || strstr(key, "secret") != NULL ||
           strcmp(key, "ssl.key.pem") == 0 || strcmp(key, "ssl_key") == 0 ||
           strcmp(key, "sasl.oauthbearer.config") == 0 || strstr(key, "jaas") != NULL;
}

const char *kq_kprops_shown(const kq_kprops *p, size_t i)
{
    return kq_kprops_is_secret(p->keys[i]) ? "[redacted]" : p->values[i];
}

const char *kq_kprops_get(const kq_kprops *p, const char *key)
{
    for (size_t i = 0; p != NULL && i < p->n; i++)
        if (strcmp(p->keys[i], key) == 0)
            return p->values[i];
    return NULL;
}

void kq_kprops_free(kq_kprops *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->keys[i]);
        free(p->values[i]);
    }
    free(p->keys);
    free(p->values);
    free(p->lines);
    free(p->path);
    free(p);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* librdkafka's verdict on one property, on a scratch conf. */
static int check_one(rd_kafka_conf_t *scratch, const char *path, int line, const char *key,
                     const char *value, char *errstr, size_t errlen)
{
    char es[512];
    rd_kafka_conf_res_t r = rd_kafka_conf_set(scratch, key, value, es, sizeof es);

    if (r == RD_KAFKA_CONF_UNKNOWN)
        return kq_seterr(errstr, errlen, KQ_ECONFIG, "%s:%d: unknown librdkafka property '%s'",
                         path, line, key);
    if (r != RD_KAFKA_CONF_OK) {
        if (kq_kprops_is_secret(key))
            return kq_seterr(errstr, errlen, KQ_ECONFIG,
                             "%s:%d: invalid value for '%s' (not shown: a secret)", path, line,
                             key);
        return kq_seterr(errstr, errlen, KQ_ECONFIG, "%s:%d: %s", path, line, es);
    }
    return 0;
}

/* Parse one line (NUL-terminated, no newline) into the list; 0 or an error. */
static int parse_line(kq_kprops *p, rd_kafka_conf_t *scratch, char *s, int line, char *errstr,
                      size_t errlen)
{
    char *eq, *key, *val, *end;

    for (char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 && *c != '\t' && !(*c == '\r' && c[1] == '\0'))
            return kq_seterr(errstr, errlen, KQ_ECONFIG, "%s:%d: control character in the line",
                             p->path, line);
    while (is_blank(*s))
        s++;
    end = s + strlen(s);
    while (end > s && (is_blank(end[-1]) || end[-1] == '\r'))
        *--end = '\0';
    if (*s == '\0' || *s == '#')
        return 0;
    if ((eq = strchr(s, '=')) == NULL)
        return kq_seterr(errstr, errlen, KQ_ECONFIG, "%s:%d: expected key=value", p->path, line);
    key = s;
    val = eq + 1;
    end = eq;
    while (end > key && is_blank(end[-1]))
        end--;
    *end = '\0';
    while (is_blank(*val))
        val++;
    if (*key == '\0')
        return kq_seterr(errstr, errlen, KQ_ECONFIG, "%s:%d: empty key", p->path, line);
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        if (strcmp(key, owned[i].key) == 0)
            return kq_seterr(errstr, errlen, KQ_ECONFIG, "%s:%d: '%s' is set by kcqrs (%s)",
                             p->path, line, key, owned[i].why);
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->keys[i], key) == 0)
            return kq_seterr(errstr, errlen, KQ_ECONFIG, "%s:%d: '%s' again (first on line %d)",
                             p->path, line, key, p->lines[i]);
    if (p->n == MAX_PROPS)
        return kq_seterr(errstr, errlen, KQ_ECONFIG, "%s:%d: more than %d properties", p->path,
                         line, MAX_PROPS);
    if (check_one(scratch, p->path, line, key, val, errstr, errlen) != 0)
        return KQ_ECONFIG;
    if ((p->keys[p->n] = strdup(key)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "%s: out of memory", p->path);
    if ((p->values[p->n] = strdup(val)) == NULL) {
        free(p->keys[p->n]);
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "%s: out of memory", p->path);
    }
    p->lines[p->n++] = line;
    return 0;
}

int kq_kprops_load(const char *path, kq_kprops **out, char *errstr, size_t errlen)
{
    kq_kprops *p = calloc(1, sizeof *p);
    rd_kafka_conf_t *scratch = rd_kafka_conf_new();
    FILE *f = NULL;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = 0, line = 0;

    *out = NULL;
    if (p == NULL || scratch == NULL || (p->path = strdup(path)) == NULL ||
        (p->keys = calloc(MAX_PROPS, sizeof *p->keys)) == NULL ||
        (p->values = calloc(MAX_PROPS, sizeof *p->values)) == NULL ||
        (p->lines = calloc(MAX_PROPS, sizeof *p->lines)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if ((f = fopen(path, "r")) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_EIO, "KCQRS_KAFKA_PROPERTIES: cannot read %s: %s", path,
                       strerror(errno));
        goto out;
    }
    while ((got = getline(&buf, &cap, f)) >= 0) {
        line++;
        if (got > LINE_MAX_BYTES) {
            rc = kq_seterr(errstr, errlen, KQ_ECONFIG, "%s:%d: line longer than %d bytes", path,
                           line, LINE_MAX_BYTES);
            goto out;
        }
        if (got > 0 && buf[got - 1] == '\n')
            buf[--got] = '\0';
        if (strlen(buf) != (size_t)got) {
            rc = kq_seterr(errstr, errlen, KQ_ECONFIG, "%s:%d: NUL byte in the line", path, line);
            goto out;
        }
        if ((rc = parse_line(p, scratch, buf, line, errstr, errlen)) != 0)
            goto out;
    }
    if (ferror(f))
        rc = kq_seterr(errstr, errlen, KQ_EIO, "%s: read error", path);
out:
    if (f != NULL)
        fclose(f);
    free(buf);
    if (scratch != NULL)
        rd_kafka_conf_destroy(scratch);
    if (rc != 0)
        kq_kprops_free(p);
    else
        *out = p;
    return rc;
}

int kq_kprops_apply(const kq_kprops *p, rd_kafka_conf_t *conf, char *errstr, size_t errlen)
{
    char es[512];

    for (size_t i = 0; p != NULL && i < p->n; i++) {
        if (rd_kafka_conf_set(conf, p->keys[i], p->values[i], es, sizeof es) != RD_KAFKA_CONF_OK)
            return kq_seterr(errstr, errlen, KQ_ECONFIG, "%s:%d: %s", p->path, p->lines[i],
                             kq_kprops_is_secret(p->keys[i]) ? "invalid value (a secret)" : es);
    }
    return 0;
}
