/* kq_log.c — see kq_log.h. */
#include "kq_log.h"
#include "kq_err.h"
#include "kq_time.h"

#include <stdarg.h>
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
        if (pos + 3 < outlen) {
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

void kq_log(kq_log_level level, const char *fmt, ...)
{
    char msg[2048], line[4096];
    va_list ap;
    size_t len;
    ssize_t w;

    if (!kq_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    len = kq_log_format_record(line, sizeof line, level, msg);
    w = write(STDERR_FILENO, line, len);
    (void)w;
}
