/*
 * kq_rawhttp — send exact bytes to an HTTP server and report what came back
 * and whether (and when) the server closed the connection. The HTTP edge tests
 * (tests/e2e/http_edge.bats) use it where curl would fix up the request.
 *
 *   kq_rawhttp [options] HOST:PORT [FILE]
 *
 * The bytes to send are FILE's (default: stdin) with the escapes \r \n \t \\
 * \0 and \xHH decoded (--raw: sent as they are). Options:
 *   --from ADDR     bind the client sockets to ADDR (e.g. 127.0.0.5) first
 *   --slow N:MS     send N bytes, then wait MS milliseconds, and so on
 *   --repeat FILE2  after FILE, send FILE2's bytes (escapes decoded likewise)
 *                   over and over until the server closes or --max-bytes
 *   --max-bytes N   stop sending after N bytes in all (default 67108864)
 *   --wait-ms MS    after the last byte was sent, wait at most MS for the
 *                   server to close (default 5000); reading never stops early
 *   --hold N        first open N more connections from the same source that
 *                   send nothing, and keep them open until the end
 *   --hold-ms MS    after opening them, wait MS before the measured
 *                   connection (so that the server has accepted them all:
 *                   its loop threads accept in no particular order)
 *   -o FILE         write the received bytes to FILE (default: stdout)
 *
 * While sending, every byte the server answers is read at once (an answer
 * that arrives before the request ended is kept, even if the server then
 * resets the connection). At the end one line goes to stderr:
 *   sent=N recv=M first_byte_ms=T close=eof|reset|open close_ms=T
 *   held=H held_open=K
 * first_byte_ms is the time from the connect to the first received byte (-1:
 * none), close_ms the time to the server's FIN (eof) or RST (reset; also a
 * failed send) or, for open, to the end of the wait. held_open counts the
 * --hold connections the server had not closed (nor written to) at the end.
 * Exit status: 0 when the exchange ran (whatever the server did), 1 when the
 * connection could not be made, 2 on usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kq_rand.h"
#include "kq_time.h"

#define MAX_HOLD 4096

static const char usage[] =
    "usage: kq_rawhttp [--from ADDR] [--slow N:MS] [--repeat FILE2] [--max-bytes N] "
    "[--wait-ms MS] [--hold N] [--hold-ms MS] [--raw] [-o FILE] HOST:PORT [FILE]\n";

/* Decode \r \n \t \\ \0 \xHH in place; other backslashes stay as they are. */
static size_t unescape(char *s, size_t len)
{
    size_t i = 0, o = 0;
    while (i < len) {
        if (s[i] != '\\' || i + 1 >= len) {
            s[o++] = s[i++];
            continue;
        }
        char c = s[i + 1];
        if (c == 'r' || c == 'n' || c == 't' || c == '\\' || c == '0') {
            s[o++] = c == 'r' ? '\r' : c == 'n' ? '\n' : c == 't' ? '\t' : c == '0' ? '\0' : '\\';
            i += 2;
        } else if (c == 'x' && i + 3 < len && kq_hex_digit(s[i + 2]) >= 0 &&
                   kq_hex_digit(s[i + 3]) >= 0) {
            s[o++] = (char)(kq_hex_digit(s[i + 2]) * 16 + kq_hex_digit(s[i + 3]));
            i += 4;
        } else {
            s[o++] = s[i++];
        }
    }
    return o;
}

/* The whole file (or stdin for NULL/"-"), malloc'd, owned by the caller. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = (!path || !strcmp(path, "-")) ? stdin : fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f) {
        fprintf(stderr, "kq_rawhttp: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                buf = NULL;
                goto out;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    *len = n;
out:
    if (f != stdin)
        fclose(f);
    return buf;
}

static int open_conn(const struct sockaddr_in *to, const char *from)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (from) {
        struct sockaddr_in me = {.sin_family = AF_INET};
        if (inet_pton(AF_INET, from, &me.sin_addr) != 1 ||
            bind(fd, (struct sockaddr *)&me, sizeof me) != 0) {
            fprintf(stderr, "kq_rawhttp: bind %s: %s\n", from, strerror(errno));
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (const struct sockaddr *)to, sizeof *to) != 0) {
        fprintf(stderr, "kq_rawhttp: connect: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* 1 when the server has neither closed nor written to fd. */
static int still_open(int fd)
{
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

int main(int argc, char **argv)
{
    const char *from = NULL, *repeat_path = NULL, *out_path = NULL, *target = NULL, *in_path = NULL;
    long slow_n = 0, slow_ms = 0, wait_ms = 5000, hold = 0, hold_ms = 0;
    long long max_bytes = 64LL * 1024 * 1024;
    int raw = 0, rc = 1;
    int holds[MAX_HOLD];
    int nholds = 0, fd = -1;
    char *buf = NULL, *rep = NULL;
    size_t len = 0, replen = 0;
    FILE *out = stdout;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--from") && more)
            from = argv[++i];
        else if (!strcmp(a, "--slow") && more) {
            if (sscanf(argv[++i], "%ld:%ld", &slow_n, &slow_ms) != 2 || slow_n < 1 || slow_ms < 0) {
                fputs(usage, stderr);
                return 2;
            }
        } else if (!strcmp(a, "--repeat") && more)
            repeat_path = argv[++i];
        else if (!strcmp(a, "--max-bytes") && more)
            max_bytes = atoll(argv[++i]);
        else if (!strcmp(a, "--wait-ms") && more)
            wait_ms = atol(argv[++i]);
        else if (!strcmp(a, "--hold") && more)
            hold = atol(argv[++i]);
        else if (!strcmp(a, "--hold-ms") && more)
            hold_ms = atol(argv[++i]);
        else if (!strcmp(a, "--raw"))
            raw = 1;
        else if (!strcmp(a, "-o") && more)
            out_path = argv[++i];
        else if (a[0] == '-' && a[1]) {
            fputs(usage, stderr);
            return 2;
        } else if (!target)
            target = a;
        else if (!in_path)
            in_path = a;
        else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (!target || hold < 0 || hold > MAX_HOLD || hold_ms < 0 || hold_ms > 60000 || max_bytes < 0 ||
        wait_ms < 0) {
        fputs(usage, stderr);
        return 2;
    }

    struct sockaddr_in to = {.sin_family = AF_INET};
    {
        char host[256];
        const char *colon = strrchr(target, ':');
        if (!colon || (size_t)(colon - target) >= sizeof host) {
            fputs(usage, stderr);
            return 2;
        }
        memcpy(host, target, (size_t)(colon - target));
        host[colon - target] = '\0';
        if (!strcmp(host, "localhost"))
            strcpy(host, "127.0.0.1");
        if (inet_pton(AF_INET, host, &to.sin_addr) != 1) {
            fprintf(stderr, "kq_rawhttp: %s: an IPv4 address is needed\n", host);
            return 2;
        }
        to.sin_port = htons((uint16_t)atoi(colon + 1));
    }

    if (!(buf = slurp(in_path, &len)))
        goto out;
    if (!raw)
        len = unescape(buf, len);
    if (repeat_path) {
        if (!(rep = slurp(repeat_path, &replen)))
            goto out;
        if (!raw)
            replen = unescape(rep, replen);
        if (replen == 0)
            repeat_path = NULL;
    }
    if (out_path && !(out = fopen(out_path, "wb"))) {
        fprintf(stderr, "kq_rawhttp: %s: %s\n", out_path, strerror(errno));
        goto out;
    }

    for (; nholds < hold; nholds++)
        if ((holds[nholds] = open_conn(&to, from)) < 0)
            goto out;
    if (hold_ms > 0) {
        struct timespec ts = {.tv_sec = hold_ms / 1000, .tv_nsec = (hold_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }

    int64_t t0 = kq_time_mono_ms(), first = -1, end = -1, next_send = t0, send_done = -1;
    if ((fd = open_conn(&to, from)) < 0)
        goto out;
    const char *closed = "open";
    long long sent = 0, recvd = 0;
    size_t off = 0, repoff = 0;
    int sending = 1;
    char rbuf[65536];

    for (;;) {
        int64_t now = kq_time_mono_ms();
        if (sending && ((off >= len && !repeat_path) || sent >= max_bytes)) {
            sending = 0;
            send_done = now;
        }
        int want_write = sending && now >= next_send;
        int timeout;
        if (sending)
            timeout = want_write ? -1 : (int)(next_send - now);
        else {
            int64_t left = send_done + wait_ms - now;
            if (left <= 0) {
                end = now;
                break;
            }
            timeout = (int)left;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (want_write ? POLLOUT : 0)};
        int pr = poll(&p, 1, timeout);
        if (pr < 0 && errno != EINTR) {
            perror("kq_rawhttp: poll");
            goto out;
        }
        if (pr <= 0)
            continue;
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, rbuf, sizeof rbuf, MSG_DONTWAIT);
            if (r > 0) {
                if (first < 0)
                    first = kq_time_mono_ms();
                fwrite(rbuf, 1, (size_t)r, out);
                fflush(out);
                recvd += r;
                continue;
            }
            if (r == 0) {
                closed = "eof";
                end = kq_time_mono_ms();
                break;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                closed = "reset";
                end = kq_time_mono_ms();
                break;
            }
        }
        if (want_write && (p.revents & POLLOUT)) {
            const char *src;
            size_t avail;
            if (off < len) {
                src = buf + off;
                avail = len - off;
            } else {
                src = rep + repoff;
                avail = replen - repoff;
            }
            if (slow_n > 0 && avail > (size_t)slow_n)
                avail = (size_t)slow_n;
            if ((long long)avail > max_bytes - sent)
                avail = (size_t)(max_bytes - sent);
            ssize_t w = send(fd, src, avail, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    continue;
                /* The server is gone: read what it answered before (still queued). */
                for (;;) {
                    ssize_t r = recv(fd, rbuf, sizeof rbuf, MSG_DONTWAIT);
                    if (r <= 0)
                        break;
                    if (first < 0)
                        first = kq_time_mono_ms();
                    fwrite(rbuf, 1, (size_t)r, out);
                    recvd += r;
                }
                fflush(out);
                closed = "reset";
                end = kq_time_mono_ms();
                break;
            }
            sent += w;
            if (off < len)
                off += (size_t)w;
            else
                repoff = (repoff + (size_t)w) % replen;
            if (slow_n > 0 && (off < len || repeat_path))
                next_send = kq_time_mono_ms() + slow_ms;
        }
    }

    int held_open = 0;
    for (int i = 0; i < nholds; i++)
        held_open += still_open(holds[i]);
    fprintf(stderr,
            "sent=%lld recv=%lld first_byte_ms=%lld close=%s close_ms=%lld held=%d held_open=%d\n",
            sent, recvd, first < 0 ? -1LL : (long long)(first - t0), closed, (long long)(end - t0),
            nholds, held_open);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < nholds; i++)
        close(holds[i]);
    if (out && out != stdout)
        fclose(out);
    free(buf);
    free(rep);
    return rc;
}
