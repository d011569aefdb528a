/*
 * kq_kprops.h — extra librdkafka properties from a file (KCQRS_KAFKA_PROPERTIES).
 *
 * What it is for
 *   A deployment's Kafka needs settings kcqrs does not know about: TLS, SASL,
 *   tuning. The operator writes them as librdkafka `key=value` lines in one file;
 *   kq_config loads it once at start (every binary), kq_kafka_conf_new() applies
 *   it to every producer, consumer and admin client. The file is validated when
 *   it is loaded, so a typo stops the program at start with PATH:LINE and the
 *   reason, never at the first connection.
 *
 * File format
 *   One `key=value` per line. Blank lines and lines whose first non-blank
 *   character is '#' are ignored. Blanks around the key and before the value are
 *   dropped, and trailing blanks (and a CR) at the end of the line; the value is
 *   everything else, '=' included. Refused, each with PATH:LINE: a line without
 *   '=', an empty key, a key given twice, a key librdkafka does not know or a
 *   value it refuses, control characters, lines over 64 KiB, and the keys kcqrs
 *   sets itself (bootstrap.servers: KCQRS_BROKERS; client.id, group.id,
 *   transactional.id, acks, enable.idempotence, isolation.level, the commit and
 *   offset settings, the timeouts derived from KCQRS_KAFKA_TIMEOUT_MS, ...):
 *   overriding them would break what DESIGN.md promises about the log.
 *
 * Secrets
 *   kq_kprops_is_secret() names the keys whose values are never printed
 *   (anything with "password" or "secret" in its name, private keys and
 *   OAUTHBEARER configs); kq_kprops_shown() gives "[redacted]" for them. Error
 *   messages of this module never contain such a value.
 *
 * Ownership and threads
 *   kq_kprops_load() returns a list owned by the caller (kq_kprops_free()); it is
 *   read-only afterwards and may be shared by any number of threads.
 */
#ifndef KQ_KPROPS_H
#define KQ_KPROPS_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

typedef struct kq_kprops {
    char *path;    /* the file, as given */
    size_t n;      /* number of properties */
    char **keys;   /* n keys, in file order */
    char **values; /* n values */
    int *lines;    /* n line numbers */
} kq_kprops;

/*
 * Read and validate `path`. On success *out is a new list (possibly with n == 0)
 * owned by the caller. On failure returns KQ_ECONFIG (bad content, errstr says
 * "PATH:LINE: ..."), KQ_EIO (unreadable) or KQ_ENOMEM, and *out is NULL.
 */
int kq_kprops_load(const char *path, kq_kprops **out, char *errstr, size_t errlen);
void kq_kprops_free(kq_kprops *p);

/* Set every property on `conf`. KQ_ECONFIG naming PATH:LINE on a refusal. */
int kq_kprops_apply(const kq_kprops *p, rd_kafka_conf_t *conf, char *errstr, size_t errlen);

/* 1 when the value of `key` must never be printed. */
int kq_kprops_is_secret(const char *key);

/* The value of property i as it may be printed: "[redacted]" for a secret. */
const char *kq_kprops_shown(const kq_kprops *p, size_t i);

/* The value of `key`, or NULL when the file does not set it (the real value, secret or not). */
const char *kq_kprops_get(const kq_kprops *p, const char *key);

#endif
