/* kq_log.c — see kq_log.h. */
#include "kq_log.h"
#include "kq_err.h"
#include "kq_time.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "kcqrs";
static kq_log_level log_level = KQ_LOG_INFO;
static kq_log_format log_format = KQ_LOG_HUMAN;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};
static const char *const level_tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR", "OFF  "};

void kq_log_init(const char *prog, kq_log_level level, kq_log_format format)
{
    const char *slash;

    if (prog != NULL) {
        slash = strrchr(prog, '/');
        log_prog = slash ? slash + 1 : prog;
    }
    log_level = level;
    log_format = format;
}

int kq_log_enabled(kq_log_level level)
{
    return level >= log_level && level < KQ_LOG_OFF;
}

int kq_log_level_parse(const char *s, kq_log_level *out)
{
    for (int i = 0; i <= KQ_LOG_OFF; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (kq_log_level)i;
            return 0;
        }
    }
    return KQ_EINVAL;
}

int kq_log_format_parse(const char *s, kq_log_format *out)
{
    if (strcmp(s, "human") == 0)
        *out = KQ_LOG_HUMAN;
    else if (strcmp(s, "json") == 0)
        *out = KQ_LOG_JSON;
    else
        return KQ_EINVAL;
    return 0;
}

/* Append `s` JSON-escaped; stops at the buffer end. */
static size_t json_escape(char *out, size_t pos, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";

    for (; *s && pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[pos++] = '\\';
            out[pos++] = (char)c;
        } else if (c == '\n') {
            out[pos++] = '\\';
            out[pos++] = 'n';
        } else if (c < 0x20) {
            out[pos++] = '\\';
            out[pos++] = 'u';
            out[pos++] = '0';
            out[pos++] = '0';
            out[pos++] = hex[c >> 4];
            out[pos++] = hex[c & 15];
        } else {
            out[pos++] = (char)c;
        }
    }
    return pos;
}

size_t kq_log_format_record(char *out, size_t outlen, kq_log_level level, const char *msg)
{
    return kq_log_format_fields(out, outlen, level, msg, NULL, 0);
}

/* Append the fields as ,"key":value members; stops before the buffer end (room for "}\n"). */
static size_t json_fields(char *out, size_t pos, size_t cap, const kq_log_field *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char num[40];
        int k;
        size_t klen;
        if (f[i].key == NULL)
            continue;
        klen = strlen(f[i].key);
        k = f[i].str != NULL ? 0 : snprintf(num, sizeof num, "%.15g", f[i].num);
        /* the whole member (or, for a string, its key and quotes) must fit */
        if (k < 0 || pos + klen + (size_t)k + 12 >= cap)
            break;
        pos += (size_t)snprintf(out + pos, cap - pos, ",\"%s\":", f[i].key);
        if (f[i].str != NULL) {
            out[pos++] = '"';
            pos = json_escape(out, pos, cap - 2, f[i].str);
            out[pos++] = '"';
        } else {
            memcpy(out + pos, num, (size_t)k);
            pos += (size_t)k;
        }
    }
    return pos;
}

size_t kq_log_format_fields(char *out, size_t outlen, kq_log_level level, const char *msg,
                            const kq_log_field *fields, size_t nfields)
{
    kq_tm tm;
    char ts[40];
    size_t pos;
    int n;

    if (outlen < 2)
        return 0;
    if ((unsigned)level > KQ_LOG_OFF)
        level = KQ_LOG_ERROR;
    kq_time_split(kq_time_now_us(), &tm);
    snprintf(ts, sizeof ts, "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ", (long long)tm.year, tm.mon,
             tm.day, tm.hour, tm.min, tm.sec, tm.usec / 1000);

    if (log_format == KQ_LOG_JSON) {
        n = snprintf(out, outlen, "{\"ts\":\"%s\",\"level\":\"%s\",\"prog\":\"", ts,
                     level_names[level]);
        pos = n < 0 ? 0 : ((size_t)n < outlen ? (size_t)n : outlen - 1);
        pos = json_escape(out, pos, outlen, log_prog);
        if (pos + 9 < outlen) {
            memcpy(out + pos, "\",\"msg\":\"", 9);
            pos += 9;
        }
        pos = json_escape(out, pos, outlen, msg);
        if (nfields > 0 && pos + 4 < outlen) {
            out[pos++] = '"';
            pos = json_fields(out, pos, outlen - 3, fields, nfields);
            memcpy(out + pos, "}\n", 2);
            pos += 2;
        } else if (pos + 3 < outlen) {
            memcpy(out + pos, "\"}\n", 3);
            pos += 3;
        } else {
            /* truncated: still emit a well-formed line */
            pos = outlen - 4 < pos ? outlen - 4 : pos;
            memcpy(out + pos, "\"}\n", 3);
            pos += 3;
        }
        out[pos] = '\0';
        return pos;
    }
    n = snprintf(out, outlen, "%s %s %s: %s", ts, level_tags[level], log_prog, msg);
    pos = n < 0 ? 0 : ((size_t)n < outlen - 1 ? (size_t)n : outlen - 2);
    out[pos++] = '\n';
    out[pos] = '\0';
    return pos;
}

/* ------------------------------------------------------------------ output */

static void write_all(const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere to report it */
        p += w;
        len -= (size_t)w;
    }
}

/* One thread's buffer. `mu` guards len/first_ms/data against the flusher
 * thread and kq_log_flush(); the owner thread is the only one appending. */
typedef struct log_buf {
    pthread_mutex_t mu;
    struct log_buf *prev, *next; /* the registry, under reg_mu */
    size_t len;
    long long first_ms; /* monotonic ms of the oldest line in data */
    char data[KQ_LOG_BUF_SIZE];
} log_buf;

static atomic_int flush_ms;
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reg_cv = PTHREAD_COND_INITIALIZER;
static log_buf *reg_head;
static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;
static int buf_ok; /* the key exists and the flusher runs */
static _Thread_local log_buf *my_buf;

/* Caller holds b->mu. */
static void buf_flush_locked(log_buf *b)
{
    if (b->len > 0)
        write_all(b->data, b->len);
    b->len = 0;
}

static void flush_all(void)
{
    pthread_mutex_lock(&reg_mu);
    for (log_buf *b = reg_head; b != NULL; b = b->next) {
        pthread_mutex_lock(&b->mu);
        buf_flush_locked(b);
        pthread_mutex_unlock(&b->mu);
    }
    pthread_mutex_unlock(&reg_mu);
}

/* Thread exit: write out, unregister, free. */
static void buf_destroy(void *arg)
{
    log_buf *b = arg;

    my_buf = NULL; /* a later line of this thread's exit gets a new buffer */
    pthread_mutex_lock(&reg_mu);
    if (b->prev != NULL)
        b->prev->next = b->next;
    else
        reg_head = b->next;
    if (b->next != NULL)
        b->next->prev = b->prev;
    pthread_mutex_unlock(&reg_mu);
    pthread_mutex_lock(&b->mu);
    buf_flush_locked(b);
    pthread_mutex_unlock(&b->mu);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* The flusher: every interval, the buffers whose oldest line is due. */
static void *flusher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&reg_mu);
    for (;;) {
        int ms = atomic_load(&flush_ms);
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ms = ms > 0 ? ms : 1000;
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&reg_cv, &reg_mu, &ts);
        for (log_buf *b = reg_head; b != NULL; b = b->next) {
            pthread_mutex_lock(&b->mu);
            if (b->len > 0) /* no line waits longer than one interval */
                buf_flush_locked(b);
            pthread_mutex_unlock(&b->mu);
        }
    }
    return NULL;
}

static void buf_setup(void)
{
    pthread_t t;
    pthread_attr_t at;

    if (pthread_key_create(&buf_key, buf_destroy) != 0)
        return;
    if (pthread_attr_init(&at) != 0)
        return;
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 64 * 1024);
    if (pthread_create(&t, &at, flusher_main, NULL) == 0) {
        atexit(flush_all);
        buf_ok = 1;
    }
    pthread_attr_destroy(&at);
}

/* This thread's buffer, created on first use; NULL = write directly. */
static log_buf *buf_get(void)
{
    log_buf *b = my_buf;

    if (b != NULL)
        return b;
    pthread_once(&buf_once, buf_setup);
    if (!buf_ok || (b = calloc(1, sizeof *b)) == NULL)
        return NULL;
    pthread_mutex_init(&b->mu, NULL);
    if (pthread_setspecific(buf_key, b) != 0) {
        pthread_mutex_destroy(&b->mu);
        free(b);
        return NULL;
    }
    pthread_mutex_lock(&reg_mu);
    b->next = reg_head;
    if (reg_head != NULL)
        reg_head->prev = b;
    reg_head = b;
    pthread_mutex_unlock(&reg_mu);
    my_buf = b;
    return b;
}

void kq_log_set_flush_ms(int ms)
{
    if (ms < 0)
        ms = 0;
    if (ms == 0)
        flush_all(); /* nothing buffered stays behind unbuffered lines */
    atomic_store(&flush_ms, ms);
    pthread_mutex_lock(&reg_mu);
    pthread_cond_broadcast(&reg_cv); /* the flusher waits by the new interval */
    pthread_mutex_unlock(&reg_mu);
}

void kq_log_flush(void)
{
    flush_all();
}

/* Append one formatted line to this thread's buffer (or write it). */
static void emit(kq_log_level level, const char *line, size_t len)
{
    int ms = atomic_load(&flush_ms);
    log_buf *b;
    long long now;

    if (ms <= 0 || (b = buf_get()) == NULL) {
        write_all(line, len);
        return;
    }
    now = kq_time_mono_ms();
    pthread_mutex_lock(&b->mu);
    if (b->len > 0 && (b->len + len > sizeof b->data || now - b->first_ms >= ms))
        buf_flush_locked(b);
    if (len > sizeof b->data) {
        write_all(line, len);
    } else {
        if (b->len == 0)
            b->first_ms = now;
        memcpy(b->data + b->len, line, len);
        b->len += len;
    }
    pthread_mutex_unlock(&b->mu);
    if (level >= KQ_LOG_WARN)
        flush_all();
}

/* One line: the message formatted, then the fields (none for kq_log). */
__attribute__((format(printf, 4, 0))) static void
log_v(kq_log_level level, const kq_log_field *fields, size_t n, const char *fmt, va_list ap)
{
    char msg[2048], line[6144];
    size_t len;

    vsnprintf(msg, sizeof msg, fmt, ap);
    len = kq_log_format_fields(line, sizeof line, level, msg, fields, n);
    emit(level, line, len);
}

void kq_log_fields(kq_log_level level, const kq_log_field *fields, size_t n, const char *fmt, ...)
{
    va_list ap;

    if (!kq_log_enabled(level))
        return;
    va_start(ap, fmt);
    log_v(level, fields, n, fmt, ap);
    va_end(ap);
}

void kq_log(kq_log_level level, const char *fmt, ...)
{
    va_list ap;

    if (!kq_log_enabled(level))
        return;
    va_start(ap, fmt);
    log_v(level, NULL, 0, fmt, ap);
    va_end(ap);
}
