/*
 * kq_receiver — a scriptable local HTTP receiver for the worker's end-to-end
 * tests: it answers requests from a script and logs each one as a JSON line.
 *
 *   kq_receiver [--port N] [--port-file PATH] [--log PATH] [--secret S] [/PATH=SCRIPT ...] [SCRIPT]
 *
 * SCRIPT is a comma-separated list of answers used one per request, in
 * arrival order; the last one repeats. "/PATH=SCRIPT" gives the requests to
 * exactly that path (query excluded) their own script and counter, so tests
 * with several destinations do not depend on arrival order across them; the
 * bare SCRIPT answers every other path (without one, other paths get 404).
 * An answer is
 *   NNN[:retry-after=V][:location=URL][:bytes=N][:delay=MS]
 *                 status NNN (100..599), optional Retry-After and Location
 *                 headers, an N-byte body ('x' * N, default 0), answered after
 *                 MS milliseconds
 *   hang          never answer: the connection is held until the receiver exits
 * e.g. "200", "500,200", "429:retry-after=2,200", "400", "302:location=/b", "hang".
 *
 * Every request is logged, when it has been read, as one JSON line (to
 * --log, appended, else stdout):
 *   {"n":1,"t_us":1795000000123456,"method":"POST","path":"/hook","query":"a=1",
 *    "headers":{"X-Kcqrs-Delivery":"..."},"body":"...","signature_ok":true,"answer":"500"}
 * ("t_us": arrival, wall clock in microseconds)
 * "body" is the body as a string ("body_bytes" and "body_utf8":false instead
 * when it is not UTF-8); "signature_ok" is present with --secret: whether
 * X-Kcqrs-Signature is the HMAC-SHA256 of the body under S (wk_hmac_verify).
 *
 * It listens on 127.0.0.1 (port 0: the kernel picks), prints "PORT <n>" on
 * stdout when ready and writes the port to --port-file (atomically), serves
 * until SIGINT/SIGTERM, then prints "REQUESTS <n>". Exit codes: 0 ok, 1
 * error, 2 usage. One thread per connection (libmicrohttpd), so a delay or a
 * hang holds only its own connection.
 */
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "kq_util.h"
#include "wk_hmac.h"

static const char usage[] =
    "usage: kq_receiver [--port N] [--port-file PATH] [--log PATH] [--secret S]\n"
    "                   [/PATH=SCRIPT ...] [SCRIPT]\n"
    "  SCRIPT  comma-separated answers, one per request, the last repeats:\n"
    "          NNN[:retry-after=V][:location=URL][:bytes=N][:delay=MS] | hang\n"
    "  /PATH=SCRIPT  a script of its own for requests to exactly /PATH\n";

#define MAX_STEPS 256
#define MAX_ROUTES 64
#define BODY_MAX (16 * 1024 * 1024)

typedef struct step {
    int hang;
    unsigned status;
    char retry_after[64];
    char location[512];
    long bytes;
    long delay_ms;
    char text[128]; /* the answer as written, for the log */
} step;

typedef struct route {
    char path[512]; /* "" for the default script */
    step steps[MAX_STEPS];
    size_t nsteps;
    atomic_size_t count;
} route;

static route *routes[MAX_ROUTES];
static size_t nroutes;
static route *fallback; /* the bare SCRIPT, NULL if none */
static const step not_found = {0, 404, "", "", 0, 0, "404 (no script for this path)"};
static atomic_size_t nreq;
static atomic_int stopping;
static FILE *log_out;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *secret;

typedef struct req {
    char *body;
    size_t len;
    int answered_step; /* -1 until chosen */
} req;

static int parse_step(const char *s, step *st)
{
    char buf[1024], *save = NULL, *tok;
    long v;
    memset(st, 0, sizeof *st);
    snprintf(st->text, sizeof st->text, "%s", s);
    if (strcmp(s, "hang") == 0) {
        st->hang = 1;
        return 0;
    }
    if (strlen(s) >= sizeof buf)
        return -1;
    strcpy(buf, s);
    tok = strtok_r(buf, ":", &save);
    if (tok == NULL || kq_parse_long(tok, 100, 599, &v) != 0)
        return -1;
    st->status = (unsigned)v;
    /* location=URL may contain ':' — it takes the rest of the answer */
    while ((tok = strtok_r(NULL, ":", &save)) != NULL) {
        if (strncmp(tok, "retry-after=", 12) == 0) {
            snprintf(st->retry_after, sizeof st->retry_after, "%s", tok + 12);
        } else if (strncmp(tok, "location=", 9) == 0) {
            const char *rest = s + (tok - buf) + 9;
            snprintf(st->location, sizeof st->location, "%s", rest);
            break;
        } else if (strncmp(tok, "bytes=", 6) == 0) {
            if (kq_parse_long(tok + 6, 0, BODY_MAX, &st->bytes) != 0)
                return -1;
        } else if (strncmp(tok, "delay=", 6) == 0) {
            if (kq_parse_long(tok + 6, 0, 3600000, &st->delay_ms) != 0)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* Parse "[/PATH=]SCRIPT" into a new route; 0 or -1 (message on stderr). */
static int parse_script(const char *arg)
{
    const char *script = arg;
    char *copy = NULL, *save = NULL, *tok;
    int rc = 0;
    route *r = calloc(1, sizeof *r);
    if (r == NULL || nroutes >= MAX_ROUTES)
        goto bad;
    if (arg[0] == '/') {
        const char *eq = strchr(arg, '=');
        if (eq == NULL || (size_t)(eq - arg) >= sizeof r->path)
            goto bad;
        memcpy(r->path, arg, (size_t)(eq - arg));
        script = eq + 1;
    } else if (fallback != NULL) {
        goto bad; /* one default script */
    }
    for (size_t i = 0; i < nroutes; i++)
        if (strcmp(routes[i]->path, r->path) == 0)
            goto bad;
    copy = strdup(script);
    if (copy == NULL)
        goto bad;
    for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (r->nsteps >= MAX_STEPS || parse_step(tok, &r->steps[r->nsteps]) != 0) {
            fprintf(stderr, "kq_receiver: bad answer '%s'\n", tok);
            goto bad;
        }
        r->nsteps++;
    }
    if (r->nsteps == 0)
        goto bad;
    free(copy);
    routes[nroutes++] = r;
    if (r->path[0] == '\0')
        fallback = r;
    return rc;
bad:
    fprintf(stderr, "kq_receiver: bad script '%s'\n", arg);
    free(copy);
    free(r);
    return -1;
}

/* The answer for the next request to `url`. */
static const step *next_step(const char *url)
{
    route *r = fallback;
    for (size_t i = 0; i < nroutes; i++)
        if (routes[i]->path[0] != '\0' && strcmp(routes[i]->path, url) == 0) {
            r = routes[i];
            break;
        }
    if (r == NULL)
        return &not_found;
    size_t k = atomic_fetch_add(&r->count, 1);
    return &r->steps[k < r->nsteps ? k : r->nsteps - 1];
}

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    json_object_set_new(cls, key, json_string(value ? value : ""));
    return MHD_YES;
}

static enum MHD_Result add_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    json_object_set_new(cls, key, json_string(value ? value : ""));
    return MHD_YES;
}

static void log_request(struct MHD_Connection *c, size_t n, const char *method, const char *url,
                        const req *r, const step *st)
{
    json_t *o = json_object(), *h = json_object(), *q = json_object();
    MHD_get_connection_values(c, MHD_HEADER_KIND, add_header, h);
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_query, q);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    json_object_set_new(o, "n", json_integer((json_int_t)n));
    /* arrival time (wall clock, microseconds): delays between attempts are checked on it */
    json_object_set_new(o, "t_us",
                        json_integer((json_int_t)now.tv_sec * 1000000 + now.tv_nsec / 1000));
    json_object_set_new(o, "method", json_string(method));
    json_object_set_new(o, "path", json_string(url));
    json_object_set_new(o, "query", q);
    json_object_set_new(o, "headers", h);
    json_t *b = json_stringn(r->body ? r->body : "", r->len);
    if (b != NULL) {
        json_object_set_new(o, "body", b);
    } else {
        json_object_set_new(o, "body_utf8", json_false());
        json_object_set_new(o, "body_bytes", json_integer((json_int_t)r->len));
    }
    if (secret != NULL) {
        const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, WK_HMAC_HEADER);
        json_object_set_new(
            o, "signature_ok",
            json_boolean(wk_hmac_verify(secret, strlen(secret), r->body, r->len, sig)));
    }
    json_object_set_new(o, "answer", json_string(st->text));
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

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **req_cls)
{
    req *r = *req_cls;
    (void)cls;
    (void)version;
    if (r == NULL) {
        r = calloc(1, sizeof *r);
        if (r == NULL)
            return MHD_NO;
        r->answered_step = -1;
        *req_cls = r;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (r->len + *upload_size > BODY_MAX)
            return MHD_NO;
        char *nb = realloc(r->body, r->len + *upload_size + 1);
        if (nb == NULL)
            return MHD_NO;
        r->body = nb;
        memcpy(r->body + r->len, upload, *upload_size);
        r->len += *upload_size;
        r->body[r->len] = '\0';
        *upload_size = 0;
        return MHD_YES;
    }
    size_t n = atomic_fetch_add(&nreq, 1) + 1;
    const step *st = next_step(url);
    log_request(c, n, method, url, r, st);
    if (st->hang) {
        while (!atomic_load(&stopping))
            sleep_ms(50);
        return MHD_NO;
    }
    if (st->delay_ms > 0)
        sleep_ms(st->delay_ms);
    char *body = malloc((size_t)st->bytes + 1);
    if (body == NULL)
        return MHD_NO;
    memset(body, 'x', (size_t)st->bytes);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)st->bytes, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    if (st->retry_after[0])
        MHD_add_response_header(resp, "Retry-After", st->retry_after);
    if (st->location[0])
        MHD_add_response_header(resp, "Location", st->location);
    enum MHD_Result ret = MHD_queue_response(c, st->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **req_cls,
                      enum MHD_RequestTerminationCode toe)
{
    req *r = *req_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (r != NULL) {
        free(r->body);
        free(r);
        *req_cls = NULL;
    }
}

static int write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    FILE *f;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -1;
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%u\n", port);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

int main(int argc, char **argv)
{
    long port = 0;
    const char *port_file = NULL, *log_path = NULL;
    struct MHD_Daemon *d;
    struct sockaddr_in sa;
    sigset_t set;
    int sig;
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
        } else if (strcmp(argv[i], "--secret") == 0 && i + 1 < argc) {
            secret = argv[++i];
            if (secret[0] == '\0') {
                fprintf(stderr, "kq_receiver: empty --secret\n");
                return 2;
            }
        } else if (argv[i][0] != '-') {
            if (parse_script(argv[i]) != 0) {
                fprintf(stderr, "%s", usage);
                return 2;
            }
        } else {
            fprintf(stderr, "%s", usage);
            return 2;
        }
    }
    if (nroutes == 0) {
        fprintf(stderr, "%s", usage);
        return 2;
    }
    log_out = stdout;
    if (log_path != NULL && (log_out = fopen(log_path, "a")) == NULL) {
        fprintf(stderr, "kq_receiver: %s: %s\n", log_path, strerror(errno));
        return 1;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL, 0, NULL,
        NULL, answer, NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "kq_receiver: cannot listen on 127.0.0.1:%ld\n", port);
        return 1;
    }
    unsigned bound = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    if (port_file != NULL && write_port_file(port_file, bound) != 0) {
        fprintf(stderr, "kq_receiver: cannot write %s\n", port_file);
        MHD_stop_daemon(d);
        return 1;
    }
    printf("PORT %u\n", bound);
    fflush(stdout);
    sigwait(&set, &sig);
    atomic_store(&stopping, 1);
    MHD_stop_daemon(d);
    printf("REQUESTS %zu\n", atomic_load(&nreq));
    if (log_out != stdout)
        fclose(log_out);
    for (size_t i = 0; i < nroutes; i++)
        free(routes[i]);
    return 0;
}
