/*
 * kq_err.h — the error convention every kcqrs module follows.
 *
 * Functions return 0 on success and a negative KQ_E* code on failure. When a
 * caller wants the human sentence it passes `char *errstr, size_t errlen`
 * (librdkafka style); the callee fills it with one line that names the input
 * at fault. kq_strerror() maps a code to a short constant description.
 *
 * Thread-safety: everything here is reentrant.
 */
#ifndef KQ_ERR_H
#define KQ_ERR_H

#include <stddef.h>

typedef enum kq_err {
    KQ_OK = 0,
    KQ_EINVAL = -1,    /* invalid argument or malformed input */
    KQ_ENOMEM = -2,    /* allocation failed */
    KQ_EIO = -3,       /* read/write/system call failed */
    KQ_ERANGE = -4,    /* value out of range, buffer too small */
    KQ_ECORRUPT = -5,  /* data failed verification */
    KQ_ENOTFOUND = -6, /* no such item */
    KQ_EEXIST = -7,    /* item exists already */
    KQ_ETIMEDOUT = -8, /* deadline passed, outcome may be unknown */
    KQ_EKAFKA = -9,    /* Kafka client or broker error */
    KQ_EPG = -10,      /* PostgreSQL error */
    KQ_ELMDB = -11,    /* LMDB error */
    KQ_ECONFIG = -12,  /* bad configuration */
    KQ_EUNSUPPORTED = -13,
    KQ_EFENCED = -14,   /* this writer was fenced by a newer instance */
    KQ_EBUSY = -15,     /* held by another process (a lock) */
    KQ_ESWITCHED = -16, /* the live read model was replaced (kcqrs-replay): reopen it */
} kq_err;

/* Short constant description of `code`; never NULL. The string is static. */
const char *kq_strerror(int code);

/*
 * printf into errstr (if non-NULL and errlen > 0), always NUL-terminated,
 * truncated to fit. Returns `code` so callers can write
 *     return kq_seterr(errstr, errlen, KQ_EINVAL, "bad id '%s'", id);
 */
int kq_seterr(char *errstr, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
