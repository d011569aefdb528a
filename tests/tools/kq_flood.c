/*
 * kq_flood — many misbehaving (or merely many) connections against one HTTP
 * port while well-behaved probers measure what a real client gets. For the
 * flood tests (tests/e2e/http_flood.bats) and by hand.
 *
 *   kq_flood --port P [--host ADDR] [--addrs K] [--slow N] [--idle N] [--busy N]
 *            [--duration S] [--reconnect-ms MS] [--busy-interval-ms MS]
 *            [--busy-path PATH] [--probe HOST:PORT]... [--probe-key KEY]
 *            [--probe-method M] [--probe-path PATH] [--probe-body BODY]
 *            [--probe-interval-ms MS] [--probe-timeout-ms MS] [--probe-expect STATUS]
 *
 * Flood connections go to --host (default 127.0.0.1):P, spread round-robin
 * over the source addresses 127.0.0.2 .. 127.0.0.(K+1) (default K = 20):
 *   slow  send a request head one byte per second ("GET /health HTTP/1.1\r\n
 *         Host: flood\r\nX-Slow: aaaa..."), never finishing it;
 *   idle  connect and send nothing;
 *   busy  keep-alive GET requests of --busy-path (default /health), the next
 *         one --busy-interval-ms (default 100) after each answer.
 * When the server closes a flood connection it is reconnected after
 * --reconnect-ms (default 500), so the flood stays at its size for
 * --duration seconds (default 15).
 *
 * Each --probe target (default: --host:P) gets one prober thread that, every
 * --probe-interval-ms (default 50), opens a new connection from 127.0.0.1,
 * sends --probe-method (POST) --probe-path (/api/v1/resources) with
 * "Authorization: Bearer --probe-key" (when given), "Connection: close" and
 * --probe-body as application/json (when given; "{n}" in the path and body is
 * replaced by a number unique in this run), and waits at most
 * --probe-timeout-ms (default 5000) for the whole answer. Latency: from the
 * start of connect to the last byte of the answer. expected= counts the
 * answers with status --probe-expect (default: any 2xx).
 *
 * Output, after --duration:
 *   flood addrs=K slow=N idle=N busy=N duration_s=S max_open=O connects=C
 *         connect_failed=F answered_closes=A quiet_closes=Q resets=R
 *         status_408=.. status_503=.. status_other=..
 *   busy requests=T answered=A unanswered=U resets=R status_2xx=.. status_503=..
 *         status_503_no_retry_after=.. status_other=..
 *   probe HOST:PORT requests=T answered=A unanswered=U resets=R expected=E p50_ms=.. p99_ms=..
 *         max_ms=.. status_2xx=.. status_4xx=.. status_5xx=.. status_503_no_retry_after=..
 *   probe_note HOST:PORT STATUS BODY   (the first 3 answers 5xx, for a look)
 * max_open is the largest number of flood connections established at once;
 * answered_closes / quiet_closes / resets count how the server ended slow and
 * idle connections (with an answer, with a bare FIN, with a reset). A busy or
 * probe request counts as answered when its whole answer (status line,
 * headers, Content-Length bytes) arrived; unanswered when the connection
 * ended or the timeout passed first; resets are the unanswered ones that
 * ended in a reset (or a refused connect). Exit status 0 when the run
 * happened (the numbers are for the caller to judge), 1 when a source address
 * could not be bound, 2 on usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kq_time.h"

#define MAX_CONNS 20000
#define MAX_PROBES 4
#define MAX_SAMPLES 200000
#define RBUF 8192
#define MAX_NOTES 3

static const char usage[] =
    "usage: kq_flood --port P [--host ADDR] [--addrs K] [--slow N] [--idle N] [--busy N] "
    "[--duration S] [--reconnect-ms MS] [--busy-interval-ms MS] [--busy-path PATH] "
    "[--probe HOST:PORT]... [--probe-key KEY] [--probe-method M] [--probe-path PATH] "
    "[--probe-body BODY] [--probe-interval-ms MS] [--probe-timeout-ms MS] [--probe-expect "
    "STATUS]\n";

/* ------------------------------------------------------------ answers */

/* What one parsed answer said. */
typedef struct {
    int status;
    int retry_after; /* a Retry-After header was present */
    int close;       /* Connection: close */
} answer;

/*
 * Parse one complete answer at buf[0..len). Returns its length (head + body by
 * Content-Length; a head without Content-Length ends the answer at the head),
 * 0 when more bytes are needed, -1 when the bytes are not an HTTP answer.
 */
static long parse_answer(const char *buf, size_t len, answer *a)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return len > 65536 ? -1 : 0;
    size_t head = (size_t)(end - buf) + 4;
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0)
        return -1;
    memset(a, 0, sizeof *a);
    a->status = atoi(buf + 9);
    long long clen = 0;
    const char *p = (const char *)memchr(buf, '\n', head) + 1;
    while (p < buf + head - 2) {
        const char *eol = memchr(p, '\n', (size_t)(buf + head - p));
        if (!eol)
            break;
        if (!strncasecmp(p, "content-length:", 15))
            clen = atoll(p + 15);
        else if (!strncasecmp(p, "retry-after:", 12))
            a->retry_after = 1;
        else if (!strncasecmp(p, "connection:", 11) && memmem(p, (size_t)(eol - p), "close", 5))
            a->close = 1;
        p = eol + 1;
    }
    if (clen < 0)
        return -1;
    if (len < head + (size_t)clen)
        return 0;
    return (long)(head + (size_t)clen);
}

/* ------------------------------------------------------------ probers */

typedef struct {
    struct sockaddr_in to;
    char name[64];
    const char *method, *path, *body, *key;
    long interval_ms, timeout_ms;
    atomic_long *seq;
    atomic_int *stop;
    /* results, read after join */
    long expect; /* the status every answer should have (0: any 2xx) */
    long requests, answered, unanswered, resets, expected, s2xx, s4xx, s5xx, s503_no_ra;
    int nnotes;
    char notes[MAX_NOTES][256]; /* the first 5xx answers */
    int64_t *lat_us;
    long nlat;
} prober;

static void subst(char *out, size_t cap, const char *in, long n)
{
    size_t o = 0;
    for (const char *p = in; *p && o + 1 < cap; p++) {
        if (!strncmp(p, "{n}", 3)) {
            o += (size_t)snprintf(out + o, cap - o, "%ld", n);
            if (o >= cap)
                o = cap - 1;
            p += 2;
        } else
            out[o++] = *p;
    }
    out[o] = '\0';
}

/*
 * One probe: 1 answered (*a filled; note: its status and body, printable, for a
 * look), 0 unanswered, -1 unanswered by reset/refusal.
 */
static int probe_once(prober *pr, long n, answer *a, char *note, size_t notecap)
{
    char path[1024], body[4096], req[8192];
    int fd = -1, rc = 0;
    int64_t deadline = kq_time_mono_ms() + pr->timeout_ms;
    subst(path, sizeof path, pr->path, n);
    subst(body, sizeof body, pr->body ? pr->body : "", n);
    int len = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n",
                       pr->method, path, pr->name);
    if (pr->key)
        len +=
            snprintf(req + len, sizeof req - (size_t)len, "Authorization: Bearer %s\r\n", pr->key);
    if (pr->body)
        len += snprintf(req + len, sizeof req - (size_t)len,
                        "Content-Type: application/json\r\nContent-Length: %zu\r\n", strlen(body));
    len += snprintf(req + len, sizeof req - (size_t)len, "\r\n%s", pr->body ? body : "");

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return 0;
    if (connect(fd, (struct sockaddr *)&pr->to, sizeof pr->to) != 0 && errno != EINPROGRESS) {
        rc = -1;
        goto out;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, (int)(deadline - kq_time_mono_ms())) <= 0)
        goto out;
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        rc = -1;
        goto out;
    }
    int off = 0;
    while (off < len) {
        ssize_t w = send(fd, req + off, (size_t)(len - off), MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            p.events = POLLOUT;
            if (poll(&p, 1, (int)(deadline - kq_time_mono_ms())) <= 0)
                goto out;
            continue;
        }
        if (w < 0) {
            rc = -1;
            goto out;
        }
        off += (int)w;
    }
    char buf[RBUF];
    size_t got = 0;
    for (;;) {
        long alen = parse_answer(buf, got, a);
        if (alen > 0) {
            const char *sep = memmem(buf, (size_t)alen, "\r\n\r\n", 4);
            size_t blen = sep ? (size_t)(buf + alen - sep - 4) : 0;
            int k = snprintf(note, notecap, "%d ", a->status);
            for (size_t i = 0; sep && i < blen && (size_t)k + 1 < notecap; i++) {
                char ch = sep[4 + i];
                note[k++] = ch >= 0x20 && ch < 0x7f ? ch : '.';
            }
            note[k < (int)notecap ? k : (int)notecap - 1] = '\0';
            rc = 1;
            goto out;
        }
        if (alen < 0 || got == sizeof buf)
            goto out;
        int64_t left = deadline - kq_time_mono_ms();
        if (left <= 0)
            goto out;
        p.events = POLLIN;
        if (poll(&p, 1, (int)left) <= 0)
            goto out;
        ssize_t r = recv(fd, buf + got, sizeof buf - got, 0);
        if (r == 0)
            goto out;
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            rc = -1;
            goto out;
        }
        got += (size_t)r;
    }
out:
    close(fd);
    return rc;
}

static void *prober_main(void *arg)
{
    prober *pr = arg;
    int64_t next = kq_time_mono_ms();
    while (!atomic_load(pr->stop)) {
        int64_t t = kq_time_mono_ms();
        if (t < next) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(next - t) * 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        next = t + pr->interval_ms;
        answer a;
        char note[256];
        int64_t t0 = kq_time_mono_us();
        int r = probe_once(pr, atomic_fetch_add(pr->seq, 1), &a, note, sizeof note);
        int64_t dt = kq_time_mono_us() - t0;
        pr->requests++;
        if (r <= 0) {
            pr->unanswered++;
            if (r < 0)
                pr->resets++;
            continue;
        }
        pr->answered++;
        if (pr->nlat < MAX_SAMPLES)
            pr->lat_us[pr->nlat++] = dt;
        if (pr->expect ? a.status == pr->expect : a.status >= 200 && a.status < 300)
            pr->expected++;
        if (a.status >= 200 && a.status < 300)
            pr->s2xx++;
        else if (a.status >= 400 && a.status < 500)
            pr->s4xx++;
        else if (a.status >= 500)
            pr->s5xx++;
        if (a.status == 503 && !a.retry_after)
            pr->s503_no_ra++;
        if (a.status >= 500 && pr->nnotes < MAX_NOTES)
            snprintf(pr->notes[pr->nnotes++], sizeof pr->notes[0], "%s", note);
    }
    return NULL;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

static double pct_ms(int64_t *v, long n, double q)
{
    if (n == 0)
        return -1;
    long i = (long)(q * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0;
}

/* ------------------------------------------------------------ flood */

enum { M_SLOW, M_IDLE, M_BUSY };
enum { C_WAIT, C_CONNECTING, C_OPEN };

typedef struct {
    int fd, mode, state;
    struct in_addr from;
    int64_t next_ms;   /* slow: next byte; busy: next request; wait: reconnect */
    size_t slow_sent;  /* slow: bytes of the head sent on this connection */
    int in_flight;     /* busy: a request was sent and not yet answered */
    int answered_here; /* slow/idle: the server sent an answer on this connection */
    size_t got;
    char *rbuf;
} fconn;

typedef struct {
    long connects, connect_failed, answered_closes, quiet_closes, resets;
    long s408, s503, sother;
    long breq, bans, bunans, bresets, b2xx, b503, b503_no_ra, bother;
    long open, max_open;
} fstats;

static const char slow_head[] = "GET /health HTTP/1.1\r\nHost: flood\r\nX-Slow: ";

static void fc_close(int ep, fconn *c, fstats *st, int64_t now, long reconnect_ms)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        if (c->state == C_OPEN)
            st->open--;
    }
    c->fd = -1;
    c->state = C_WAIT;
    c->next_ms = now + reconnect_ms;
    c->got = 0;
    c->in_flight = 0;
    c->answered_here = 0;
    c->slow_sent = 0;
}

static void fc_connect(int ep, fconn *c, fstats *st, in_port_t port, struct in_addr host,
                       int64_t now, long reconnect_ms)
{
    struct sockaddr_in me = {.sin_family = AF_INET, .sin_addr = c->from};
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = port, .sin_addr = host};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        st->connect_failed++;
        c->next_ms = now + reconnect_ms;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&me, sizeof me) != 0 ||
        (connect(fd, (struct sockaddr *)&to, sizeof to) != 0 && errno != EINPROGRESS)) {
        close(fd);
        st->connect_failed++;
        c->next_ms = now + reconnect_ms;
        return;
    }
    c->fd = fd;
    c->state = C_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* A busy connection's request was answered: count the answer. */
static void busy_answered(fconn *c, const answer *a, fstats *st)
{
    st->bans++;
    c->in_flight = 0;
    if (a->status >= 200 && a->status < 300)
        st->b2xx++;
    else if (a->status == 503) {
        st->b503++;
        if (!a->retry_after)
            st->b503_no_ra++;
    } else
        st->bother++;
}

static void busy_send(fconn *c, const char *req, size_t len, fstats *st)
{
    ssize_t w = send(c->fd, req, len, MSG_NOSIGNAL);
    st->breq++;
    c->in_flight = 1;
    (void)w; /* a short or failed send shows up as an unanswered request */
}

int main(int argc, char **argv)
{
    const char *host_s = "127.0.0.1", *busy_path = "/health", *probe_method = "POST",
               *probe_path = "/api/v1/resources", *probe_body = NULL, *probe_key = NULL;
    const char *probe_targets[MAX_PROBES];
    int nprobe_targets = 0;
    long port = 0, addrs = 20, nslow = 0, nidle = 0, nbusy = 0, duration = 15, reconnect_ms = 500,
         busy_interval = 100, probe_interval = 50, probe_timeout = 5000, probe_expect = 0;

    const struct {
        const char *name;
        long *v;
    } nums[] = {{"--port", &port},
                {"--addrs", &addrs},
                {"--slow", &nslow},
                {"--idle", &nidle},
                {"--busy", &nbusy},
                {"--duration", &duration},
                {"--reconnect-ms", &reconnect_ms},
                {"--busy-interval-ms", &busy_interval},
                {"--probe-interval-ms", &probe_interval},
                {"--probe-timeout-ms", &probe_timeout},
                {"--probe-expect", &probe_expect}};
    const struct {
        const char *name;
        const char **v;
    } strs[] = {{"--host", &host_s},           {"--busy-path", &busy_path},
                {"--probe-key", &probe_key},   {"--probe-method", &probe_method},
                {"--probe-path", &probe_path}, {"--probe-body", &probe_body}};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int known = 0;
        for (size_t k = 0; v && k < sizeof nums / sizeof nums[0]; k++)
            if (!strcmp(a, nums[k].name)) {
                *nums[k].v = atol(v);
                known = 1;
            }
        for (size_t k = 0; v && k < sizeof strs / sizeof strs[0]; k++)
            if (!strcmp(a, strs[k].name)) {
                *strs[k].v = v;
                known = 1;
            }
        if (v && !strcmp(a, "--probe") && nprobe_targets < MAX_PROBES) {
            probe_targets[nprobe_targets++] = v;
            known = 1;
        }
        if (!known) {
            fputs(usage, stderr);
            return 2;
        }
    }
    long total = nslow + nidle + nbusy;
    struct in_addr host;
    if (port <= 0 || port > 65535 || addrs < 1 || addrs > 250 || total > MAX_CONNS || nslow < 0 ||
        nidle < 0 || nbusy < 0 || duration < 1 || probe_interval < 1 ||
        inet_pton(AF_INET, host_s, &host) != 1) {
        fputs(usage, stderr);
        return 2;
    }

    /* One descriptor per flood connection, a few per prober. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)total + 64) {
        fprintf(stderr, "kq_flood: %ld connections need more descriptors than %llu\n", total,
                (unsigned long long)rl.rlim_cur);
        return 1;
    }

    /* Every source address must be bindable (127.0.0.0/8 is all loopback on Linux). */
    for (long k = 0; k < addrs; k++) {
        struct sockaddr_in me = {.sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)k)};
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof me) != 0) {
            fprintf(stderr, "kq_flood: cannot bind %s: %s\n", inet_ntoa(me.sin_addr),
                    strerror(errno));
            return 1;
        }
        close(fd);
    }

    char busy_req[1024];
    size_t busy_len = (size_t)snprintf(busy_req, sizeof busy_req,
                                       "GET %s HTTP/1.1\r\nHost: flood\r\n\r\n", busy_path);

    fconn *conns = calloc((size_t)total + 1, sizeof *conns);
    int ep = epoll_create1(0);
    if (!conns || ep < 0) {
        perror("kq_flood");
        return 1;
    }
    fstats st = {0};
    int64_t start = kq_time_mono_ms(), stop_at = start + duration * 1000;
    for (long i = 0; i < total; i++) {
        fconn *c = &conns[i];
        c->fd = -1;
        c->mode = i < nslow ? M_SLOW : i < nslow + nidle ? M_IDLE : M_BUSY;
        c->from.s_addr = htonl(0x7f000002u + (uint32_t)(i % addrs));
        c->state = C_WAIT;
        c->next_ms = start; /* all at once */
        if (c->mode == M_BUSY && !(c->rbuf = malloc(RBUF))) {
            perror("kq_flood");
            return 1;
        }
    }

    /* Probers. */
    atomic_int stop = 0;
    atomic_long seq = 1;
    prober probers[MAX_PROBES];
    pthread_t threads[MAX_PROBES];
    if (nprobe_targets == 0) {
        static char def[64];
        snprintf(def, sizeof def, "%s:%ld", host_s, port);
        probe_targets[nprobe_targets++] = def;
    }
    for (int i = 0; i < nprobe_targets; i++) {
        prober *pr = &probers[i];
        memset(pr, 0, sizeof *pr);
        snprintf(pr->name, sizeof pr->name, "%s", probe_targets[i]);
        char *colon = strrchr(pr->name, ':');
        pr->to.sin_family = AF_INET;
        if (!colon) {
            fputs(usage, stderr);
            return 2;
        }
        *colon = '\0';
        if (inet_pton(AF_INET, pr->name, &pr->to.sin_addr) != 1) {
            fputs(usage, stderr);
            return 2;
        }
        *colon = ':';
        pr->to.sin_port = htons((uint16_t)atoi(colon + 1));
        pr->method = probe_method;
        pr->path = probe_path;
        pr->body = probe_body;
        pr->key = probe_key;
        pr->interval_ms = probe_interval;
        pr->timeout_ms = probe_timeout;
        pr->expect = probe_expect;
        pr->seq = &seq;
        pr->stop = &stop;
        pr->lat_us = malloc(MAX_SAMPLES * sizeof *pr->lat_us);
        if (!pr->lat_us || pthread_create(&threads[i], NULL, prober_main, pr) != 0) {
            perror("kq_flood");
            return 1;
        }
    }

    in_port_t nport = htons((uint16_t)port);
    struct epoll_event evs[256];
    char sink[RBUF];
    for (;;) {
        int64_t now = kq_time_mono_ms();
        if (now >= stop_at)
            break;
        /* Timed actions: (re)connects, slow bytes, busy requests. */
        for (long i = 0; i < total; i++) {
            fconn *c = &conns[i];
            if (c->next_ms > now)
                continue;
            if (c->state == C_WAIT) {
                st.connects++;
                fc_connect(ep, c, &st, nport, host, now, reconnect_ms);
                c->next_ms = INT64_MAX;
            } else if (c->state == C_OPEN && c->mode == M_SLOW) {
                char b = c->slow_sent < sizeof slow_head - 1 ? slow_head[c->slow_sent] : 'a';
                if (send(c->fd, &b, 1, MSG_NOSIGNAL) == 1)
                    c->slow_sent++;
                c->next_ms = now + 1000;
            } else if (c->state == C_OPEN && c->mode == M_BUSY && !c->in_flight) {
                busy_send(c, busy_req, busy_len, &st);
                c->next_ms = INT64_MAX;
            } else {
                c->next_ms = INT64_MAX;
            }
        }
        int n = epoll_wait(ep, evs, 256, 10);
        now = kq_time_mono_ms();
        for (int e = 0; e < n; e++) {
            fconn *c = evs[e].data.ptr;
            if (c->fd < 0)
                continue;
            if (c->state == C_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    st.connect_failed++;
                    fc_close(ep, c, &st, now, reconnect_ms);
                    continue;
                }
                if (!(evs[e].events & EPOLLOUT))
                    goto readable;
                c->state = C_OPEN;
                if (++st.open > st.max_open)
                    st.max_open = st.open;
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                c->next_ms = c->mode == M_IDLE ? INT64_MAX : now;
                continue;
            }
        readable:
            if (c->mode != M_BUSY) {
                /* Slow or idle: whatever the server says ends the connection soon. */
                ssize_t r = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);
                if (r > 0) {
                    if (!c->answered_here) {
                        if (r >= 12 && !memcmp(sink, "HTTP/1.", 7)) {
                            int status = atoi(sink + 9);
                            if (status == 408)
                                st.s408++;
                            else if (status == 503)
                                st.s503++;
                            else
                                st.sother++;
                        } else
                            st.sother++;
                        c->answered_here = 1;
                    }
                    continue;
                }
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                if (r == 0 && c->answered_here)
                    st.answered_closes++;
                else if (r == 0)
                    st.quiet_closes++;
                else
                    st.resets++;
                fc_close(ep, c, &st, now, reconnect_ms);
                continue;
            }
            /* Busy: read answers. */
            ssize_t r = recv(c->fd, c->rbuf + c->got, RBUF - c->got, MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                if (c->in_flight) {
                    st.bunans++;
                    if (r < 0)
                        st.bresets++;
                }
                fc_close(ep, c, &st, now, reconnect_ms);
                continue;
            }
            c->got += (size_t)r;
            answer a;
            long alen = parse_answer(c->rbuf, c->got, &a);
            if (alen == 0 && c->got < RBUF)
                continue;
            if (alen <= 0 || !c->in_flight) {
                /* garbage, too big, or an answer nobody asked for */
                st.bother++;
                if (c->in_flight)
                    st.bunans++;
                fc_close(ep, c, &st, now, reconnect_ms);
                continue;
            }
            busy_answered(c, &a, &st);
            memmove(c->rbuf, c->rbuf + alen, c->got - (size_t)alen);
            c->got -= (size_t)alen;
            if (a.close)
                fc_close(ep, c, &st, now, reconnect_ms);
            else
                c->next_ms = now + busy_interval;
        }
    }

    /* Busy requests still waiting at the end get a short grace to be answered. */
    int64_t grace = kq_time_mono_ms() + 2000;
    for (;;) {
        long waiting = 0;
        for (long i = 0; i < total; i++)
            waiting += conns[i].mode == M_BUSY && conns[i].in_flight && conns[i].fd >= 0;
        if (waiting == 0 || kq_time_mono_ms() >= grace)
            break;
        int n = epoll_wait(ep, evs, 256, 50);
        for (int e = 0; e < n; e++) {
            fconn *c = evs[e].data.ptr;
            if (c->fd < 0 || c->mode != M_BUSY || c->state != C_OPEN || !c->in_flight)
                continue;
            ssize_t r = recv(c->fd, c->rbuf + c->got, RBUF - c->got, MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                st.bunans++;
                if (r < 0)
                    st.bresets++;
                fc_close(ep, c, &st, kq_time_mono_ms(), reconnect_ms);
                continue;
            }
            c->got += (size_t)r;
            answer a;
            long alen = parse_answer(c->rbuf, c->got, &a);
            if (alen > 0) {
                busy_answered(c, &a, &st);
            }
        }
    }
    for (long i = 0; i < total; i++)
        if (conns[i].mode == M_BUSY && conns[i].in_flight)
            st.bunans++;

    atomic_store(&stop, 1);
    for (int i = 0; i < nprobe_targets; i++)
        pthread_join(threads[i], NULL);

    printf("flood addrs=%ld slow=%ld idle=%ld busy=%ld duration_s=%ld max_open=%ld connects=%ld "
           "connect_failed=%ld answered_closes=%ld quiet_closes=%ld resets=%ld status_408=%ld "
           "status_503=%ld status_other=%ld\n",
           addrs, nslow, nidle, nbusy, duration, st.max_open, st.connects, st.connect_failed,
           st.answered_closes, st.quiet_closes, st.resets, st.s408, st.s503, st.sother);
    printf("busy requests=%ld answered=%ld unanswered=%ld resets=%ld status_2xx=%ld "
           "status_503=%ld status_503_no_retry_after=%ld status_other=%ld\n",
           st.breq, st.bans, st.bunans, st.bresets, st.b2xx, st.b503, st.b503_no_ra, st.bother);
    for (int i = 0; i < nprobe_targets; i++) {
        prober *pr = &probers[i];
        qsort(pr->lat_us, (size_t)pr->nlat, sizeof *pr->lat_us, cmp_i64);
        printf(
            "probe %s requests=%ld answered=%ld unanswered=%ld resets=%ld expected=%ld p50_ms=%.1f "
            "p99_ms=%.1f max_ms=%.1f status_2xx=%ld status_4xx=%ld status_5xx=%ld "
            "status_503_no_retry_after=%ld\n",
            pr->name, pr->requests, pr->answered, pr->unanswered, pr->resets, pr->expected,
            pct_ms(pr->lat_us, pr->nlat, 0.5), pct_ms(pr->lat_us, pr->nlat, 0.99),
            pct_ms(pr->lat_us, pr->nlat, 1.0), pr->s2xx, pr->s4xx, pr->s5xx, pr->s503_no_ra);
        for (int k = 0; k < pr->nnotes; k++)
            printf("probe_note %s %s\n", pr->name, pr->notes[k]);
        free(pr->lat_us);
    }
    for (long i = 0; i < total; i++) {
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        free(conns[i].rbuf);
    }
    free(conns);
    close(ep);
    return 0;
}
