/*
 * kq_smtp_sink — a minimal SMTP server for the worker's end-to-end tests: it
 * accepts mail (no TLS, no AUTH), answers from a script and logs every
 * message as a JSON line.
 *
 *   kq_smtp_sink [--port N] [--port-file PATH] [--log PATH] [SCRIPT]
 *
 * SCRIPT is a comma-separated list of replies to the end of DATA, one per
 * message, the last repeating (default "250"): a 2xx accepts the message,
 * a 4xx or 5xx refuses it (it is still logged, with its reply). Recipients
 * whose local part starts with "reject" get 550 at RCPT, "busy" 451.
 *
 * Each message is logged (to --log, appended, else stdout) as
 *   {"n":1,"from":"a@x","rcpt":["b@y"],"headers":{"Subject":"...","Message-ID":"<...>",...},
 *    "body":"...","reply":250}
 * with headers unfolded, and the body after the blank line, dot-unstuffed,
 * CRLF kept.
 *
 * It listens on 127.0.0.1, prints "PORT <n>" when ready (and writes
 * --port-file atomically), serves until SIGINT/SIGTERM, then prints
 * "MESSAGES <n>". One thread per connection. Exit codes: 0, 1 error, 2 usage.
 */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "kq_util.h"

static const char usage[] =
    "usage: kq_smtp_sink [--port N] [--port-file PATH] [--log PATH] [SCRIPT]\n"
    "  SCRIPT  comma-separated replies to the end of DATA (default 250)\n";

#define MAX_REPLIES 256
#define LINE_MAX_BYTES 4096
#define DATA_MAX (8 * 1024 * 1024)

static int replies[MAX_REPLIES] = {250};
static size_t nreplies = 1;
static atomic_size_t nmsg;
static atomic_int stopping;
static FILE *log_out;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

typedef struct conn {
    int fd;
    char buf[LINE_MAX_BYTES * 2];
    size_t have;
} conn;

static void say(conn *c, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = send(c->fd, s + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

/* One line without its CRLF into out (NUL-terminated); 1, or 0 on EOF/overlong/stop. */
static int read_line(conn *c, char *out, size_t max)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->have);
        if (nl != NULL) {
            size_t k = (size_t)(nl - c->buf) + 1, l = k - 1;
            if (l > 0 && c->buf[l - 1] == '\r')
                l--;
            if (l >= max)
                return 0;
            memcpy(out, c->buf, l);
            out[l] = '\0';
            memmove(c->buf, c->buf + k, c->have - k);
            c->have -= k;
            return 1;
        }
        if (c->have >= sizeof c->buf)
            return 0;
        struct pollfd p = {c->fd, POLLIN, 0};
        int pr = poll(&p, 1, 200);
        if (atomic_load(&stopping))
            return 0;
        if (pr <= 0)
            continue;
        ssize_t r = recv(c->fd, c->buf + c->have, sizeof c->buf - c->have, 0);
        if (r <= 0)
            return 0;
        c->have += (size_t)r;
    }
}

/* "<a@b>" or "a@b" (after "MAIL FROM:" / "RCPT TO:") into a bare address. */
static void bare_addr(const char *s, char *out, size_t max)
{
    while (*s == ' ')
        s++;
    const char *lt = strchr(s, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    if (lt != NULL && gt != NULL)
        snprintf(out, max, "%.*s", (int)(gt - lt - 1), lt + 1);
    else
        snprintf(out, max, "%s", s);
}

static void log_message(const char *from, json_t *rcpt, const char *data, size_t len, int reply)
{
    json_t *o = json_object(), *h = json_object();
    const char *p = data, *end = data + len, *body = end;
    char name[256];
    /* headers: "Name: value" lines, continuation lines start with blank */
    json_t *last = NULL;
    char lastname[256] = "";
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t l = eol ? (size_t)(eol - p) : (size_t)(end - p);
        size_t tl = l > 0 && p[l - 1] == '\r' ? l - 1 : l;
        if (tl == 0) {
            body = eol ? eol + 1 : end;
            break;
        }
        if ((p[0] == ' ' || p[0] == '\t') && last != NULL) {
            char *joined = NULL;
            if (asprintf(&joined, "%s %.*s", json_string_value(last), (int)(tl - 1), p + 1) > 0) {
                last = json_string(joined);
                json_object_set_new(h, lastname, last);
            }
            free(joined);
        } else {
            const char *colon = memchr(p, ':', tl);
            if (colon != NULL && (size_t)(colon - p) < sizeof name) {
                snprintf(name, sizeof name, "%.*s", (int)(colon - p), p);
                const char *v = colon + 1;
                while (v < p + tl && *v == ' ')
                    v++;
                last = json_stringn(v, (size_t)(p + tl - v));
                if (last != NULL) {
                    json_object_set_new(h, name, last);
                    snprintf(lastname, sizeof lastname, "%s", name);
                }
            }
        }
        p = eol ? eol + 1 : end;
    }
    json_object_set_new(o, "n", json_integer((json_int_t)atomic_fetch_add(&nmsg, 1) + 1));
    json_object_set_new(o, "from", json_string(from));
    json_object_set_new(o, "rcpt", json_incref(rcpt));
    json_object_set_new(o, "headers", h);
    json_t *b = json_stringn(body, (size_t)(end - body));
    json_object_set_new(o, "body", b ? b : json_string(""));
    json_object_set_new(o, "reply", json_integer(reply));
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (line != NULL) {
        pthread_mutex_lock(&log_mu);
        fprintf(log_out, "%s\n", line);
        fflush(log_out);
        pthread_mutex_unlock(&log_mu);
        free(line);
    }
    json_decref(o);
}

static void *session(void *arg)
{
    conn *c = arg;
    char line[LINE_MAX_BYTES], from[512] = "", addr[512], msg[64];
    json_t *rcpt = json_array();
    say(c, "220 kq_smtp_sink ESMTP\r\n");
    while (read_line(c, line, sizeof line)) {
        if (strncasecmp(line, "EHLO", 4) == 0) {
            say(c, "250-kq_smtp_sink\r\n250-8BITMIME\r\n250 SIZE 8388608\r\n");
        } else if (strncasecmp(line, "HELO", 4) == 0) {
            say(c, "250 kq_smtp_sink\r\n");
        } else if (strncasecmp(line, "MAIL FROM:", 10) == 0) {
            bare_addr(line + 10, from, sizeof from);
            json_array_clear(rcpt);
            say(c, "250 OK\r\n");
        } else if (strncasecmp(line, "RCPT TO:", 8) == 0) {
            bare_addr(line + 8, addr, sizeof addr);
            if (strncasecmp(addr, "reject", 6) == 0) {
                say(c, "550 no such user\r\n");
            } else if (strncasecmp(addr, "busy", 4) == 0) {
                say(c, "451 try again later\r\n");
            } else {
                json_array_append_new(rcpt, json_string(addr));
                say(c, "250 OK\r\n");
            }
        } else if (strncasecmp(line, "DATA", 4) == 0) {
            if (json_array_size(rcpt) == 0) {
                say(c, "503 no valid recipients\r\n");
                continue;
            }
            char *data = NULL;
            size_t dl = 0, cap = 0;
            int ok = 0;
            say(c, "354 end with <CRLF>.<CRLF>\r\n");
            while (read_line(c, line, sizeof line)) {
                if (strcmp(line, ".") == 0) {
                    ok = 1;
                    break;
                }
                const char *p = line[0] == '.' ? line + 1 : line;
                size_t pl = strlen(p);
                if (dl + pl + 2 > DATA_MAX)
                    break;
                if (dl + pl + 3 > cap) {
                    cap = (dl + pl + 3) * 2;
                    char *nd = realloc(data, cap);
                    if (nd == NULL)
                        break;
                    data = nd;
                }
                memcpy(data + dl, p, pl);
                memcpy(data + dl + pl, "\r\n", 2);
                dl += pl + 2;
            }
            if (!ok) {
                free(data);
                break;
            }
            size_t k = atomic_load(&nmsg);
            int reply = replies[k < nreplies ? k : nreplies - 1];
            log_message(from, rcpt, data ? data : "", dl, reply);
            free(data);
            snprintf(msg, sizeof msg, "%d %s\r\n", reply, reply < 300 ? "queued" : "refused");
            say(c, msg);
        } else if (strncasecmp(line, "RSET", 4) == 0 || strncasecmp(line, "NOOP", 4) == 0) {
            say(c, "250 OK\r\n");
        } else if (strncasecmp(line, "QUIT", 4) == 0) {
            say(c, "221 bye\r\n");
            break;
        } else {
            say(c, "502 command not implemented\r\n");
        }
    }
    json_decref(rcpt);
    close(c->fd);
    free(c);
    return NULL;
}

static int parse_script(const char *s)
{
    char *copy = strdup(s), *save = NULL, *tok;
    long v;
    nreplies = 0;
    if (copy == NULL)
        return -1;
    for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (nreplies >= MAX_REPLIES || kq_parse_long(tok, 200, 599, &v) != 0) {
            free(copy);
            return -1;
        }
        replies[nreplies++] = (int)v;
    }
    free(copy);
    return nreplies > 0 ? 0 : -1;
}

static void *acceptor(void *arg)
{
    int lfd = *(int *)arg;
    while (!atomic_load(&stopping)) {
        struct pollfd p = {lfd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        conn *c = calloc(1, sizeof *c);
        pthread_t t;
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        if (pthread_create(&t, NULL, session, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long port = 0;
    const char *port_file = NULL, *log_path = NULL, *script = NULL;
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    sigset_t set;
    int sig, lfd, one = 1;
    pthread_t acc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            if (kq_parse_long(argv[++i], 0, 65535, &port) != 0) {
                fprintf(stderr, "%s", usage);
                return 2;
            }
        } else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) {
            port_file = argv[++i];
        } else if (strcmp(argv[i], "--log") == 0 && i + 1 < argc) {
            log_path = argv[++i];
        } else if (argv[i][0] != '-' && script == NULL) {
            script = argv[i];
        } else {
            fprintf(stderr, "%s", usage);
            return 2;
        }
    }
    if (script != NULL && parse_script(script) != 0) {
        fprintf(stderr, "kq_smtp_sink: bad script '%s'\n%s", script, usage);
        return 2;
    }
    log_out = stdout;
    if (log_path != NULL && (log_out = fopen(log_path, "a")) == NULL) {
        fprintf(stderr, "kq_smtp_sink: %s: %s\n", log_path, strerror(errno));
        return 1;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 64) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0) {
        fprintf(stderr, "kq_smtp_sink: cannot listen on 127.0.0.1:%ld: %s\n", port,
                strerror(errno));
        return 1;
    }
    if (port_file != NULL) {
        char tmp[4096];
        FILE *f;
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        if ((f = fopen(tmp, "w")) == NULL || fprintf(f, "%u\n", ntohs(sa.sin_port)) < 0 ||
            fclose(f) != 0 || rename(tmp, port_file) != 0) {
            fprintf(stderr, "kq_smtp_sink: cannot write %s\n", port_file);
            return 1;
        }
    }
    if (pthread_create(&acc, NULL, acceptor, &lfd) != 0) {
        fprintf(stderr, "kq_smtp_sink: cannot start\n");
        return 1;
    }
    printf("PORT %u\n", ntohs(sa.sin_port));
    fflush(stdout);
    sigwait(&set, &sig);
    atomic_store(&stopping, 1);
    pthread_join(acc, NULL);
    close(lfd);
    usleep(300000); /* sessions notice `stopping` within 200 ms */
    printf("MESSAGES %zu\n", atomic_load(&nmsg));
    if (log_out != stdout)
        fclose(log_out);
    return 0;
}
