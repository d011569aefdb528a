/* kq_err.c — error codes and messages; see kq_err.h. */
#include "kq_err.h"

#include <stdarg.h>
#include <stdio.h>

const char *kq_strerror(int code)
{
    switch (code) {
    case KQ_OK:
        return "success";
    case KQ_EINVAL:
        return "invalid argument";
    case KQ_ENOMEM:
        return "out of memory";
    case KQ_EIO:
        return "input/output error";
    case KQ_ERANGE:
        return "value out of range";
    case KQ_ECORRUPT:
        return "data failed verification";
    case KQ_ENOTFOUND:
        return "not found";
    case KQ_EEXIST:
        return "already exists";
    case KQ_ETIMEDOUT:
        return "timed out";
    case KQ_EKAFKA:
        return "kafka error";
    case KQ_EPG:
        return "postgresql error";
    case KQ_ELMDB:
        return "lmdb error";
    case KQ_ECONFIG:
        return "configuration error";
    case KQ_EUNSUPPORTED:
        return "not supported";
    case KQ_EFENCED:
        return "fenced by another writer";
    case KQ_EBUSY:
        return "busy: held by another process";
    case KQ_ESWITCHED:
        return "read model switched";
    default:
        return "unknown error";
    }
}

int kq_seterr(char *errstr, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;

    if (errstr == NULL || errlen == 0)
        return code;
    va_start(ap, fmt);
    vsnprintf(errstr, errlen, fmt, ap);
    va_end(ap);
    return code;
}
