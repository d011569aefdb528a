/*
 * kq_log.h — leveled logging to stderr, as human lines or JSON lines.
 *
 *   human: 2026-11-21T22:40:01.123Z INFO  kcqrs-events: message
 *   json:  {"ts":"2026-11-21T22:40:01.123Z","level":"info","prog":"kcqrs-events","msg":"message"}
 *
 * kq_log_init() is called once by main() (normally from the loaded config);
 * after that kq_log() may be called from any thread: each record is formatted
 * into a local buffer and written whole, so lines never interleave.
 *
 * Buffering (kq_log_set_flush_ms, KCQRS_LOG_FLUSH_MS): with a flush interval
 * > 0, each thread appends its lines to its own buffer (KQ_LOG_BUF_SIZE bytes,
 * owned by this module, freed when the thread exits) and one write(2) carries
 * many lines. A buffer is written out when the next line would not fit, when
 * its oldest line is older than the interval (by the thread itself, or by the
 * module's flusher thread, which wakes every interval), when the thread
 * exits, at exit() (atexit), by kq_log_flush(), and at once, together with
 * every other thread's buffer, on a WARN or ERROR line (so the lines that led
 * to a warning or an error are on disk before it, and nothing before a
 * deliberate kill is lost). Lines of different threads may appear up to one
 * interval out of order; each carries its timestamp. With 0 (the library's
 * default until set) every line is one write(2), as before.
 */
#ifndef KQ_LOG_H
#define KQ_LOG_H

#include <stdio.h>

typedef enum { KQ_LOG_DEBUG = 0, KQ_LOG_INFO, KQ_LOG_WARN, KQ_LOG_ERROR, KQ_LOG_OFF } kq_log_level;
typedef enum { KQ_LOG_HUMAN = 0, KQ_LOG_JSON } kq_log_format;

/* `prog` must stay valid for the life of the process (argv[0] basename is fine). */
void kq_log_init(const char *prog, kq_log_level level, kq_log_format format);
int kq_log_enabled(kq_log_level level);

/* Parse "debug|info|warn|error|off" / "human|json"; return 0 or KQ_EINVAL. */
int kq_log_level_parse(const char *s, kq_log_level *out);
int kq_log_format_parse(const char *s, kq_log_format *out);

void kq_log(kq_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * A record with fields of its own. In JSON each field is a top-level member
 * after "msg" (a string, or a number when `str` is NULL), so that a log store
 * can filter on it (request id, route, status, duration, actor, aggregate id,
 * trace id); a field whose `key` is NULL is skipped. In human form the fields
 * are not printed: the message carries what a reader needs. Keys are
 * literals of [a-z_] and must not be "ts", "level", "prog" or "msg".
 */
typedef struct kq_log_field {
    const char *key;
    const char *str; /* NULL: the number `num` */
    double num;
} kq_log_field;

void kq_log_fields(kq_log_level level, const kq_log_field *fields, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define KQ_LOG_BUF_SIZE 16384

/* Flush interval in ms (0 = unbuffered: one write(2) per line). Any thread;
 * normally main() through kq_config_load_and_init_log. */
void kq_log_set_flush_ms(int ms);
/* Write out every thread's buffered lines now. Any thread. */
void kq_log_flush(void);

#define kq_log_debug(...) kq_log(KQ_LOG_DEBUG, __VA_ARGS__)
#define kq_log_info(...) kq_log(KQ_LOG_INFO, __VA_ARGS__)
#define kq_log_warn(...) kq_log(KQ_LOG_WARN, __VA_ARGS__)
#define kq_log_error(...) kq_log(KQ_LOG_ERROR, __VA_ARGS__)

/*
 * Test hook: format one record into `out` exactly as kq_log would write it
 * (including the trailing newline). Returns the length written (truncated
 * to outlen - 1).
 */
size_t kq_log_format_record(char *out, size_t outlen, kq_log_level level, const char *msg);
/* The same with fields (kq_log_fields). */
size_t kq_log_format_fields(char *out, size_t outlen, kq_log_level level, const char *msg,
                            const kq_log_field *fields, size_t n);

#endif
