/*
 * kq_hammer — concurrent read-modify-write clients against one resource, for
 * the optimistic-concurrency end-to-end test.
 *
 *   kq_hammer --url BASE --key KEY --id ID [--clients N] [--until V]
 *             [--start V] [--timeout S]
 *
 * BASE may be https://...: KCQRS_HTTP_TLS_CA names the CA to trust (else the system's).
 *
 * N threads (default 32), each with its own libcurl handle and keep-alive
 * connection, loop without ever reading the resource with GET: each believes a
 * current version v (initially --start, default 1) and sends
 *   PUT BASE/api/v1/resources/ID   If-Match: "v"
 *   {"description": "client C writes version v+1"}
 *   - 200: the body's "version" is recorded as a success of that version, and
 *     becomes the client's v;
 *   - 412: the current version is read from the error answer (the first
 *     integer member named "current_version", else "version", anywhere in the
 *     JSON; else the ETag header) and becomes v; the client retries;
 *   - 503 (and 429): pause 20 ms and retry;
 *   - anything else, or a transport error, is counted as unexpected.
 * A client stops once v >= --until (default 200) or after --timeout seconds
 * (default 60; then exit 1).
 *
 * Output, after all clients stopped: one line per version that got a 200,
 *   version V successes K
 * in ascending order, then a summary line
 *   total ok=A precondition_failed=B unavailable=C unexpected=D max_version=M
 * followed by up to 10 lines "unexpected: <status> <body>" for a look. Exit
 * status 0 when every client reached --until and nothing unexpected happened, 1
 * otherwise, 2 on usage errors.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "kq_tool_json.h"
#include "kq_util.h"

#define MAX_CLIENTS 1024
#define MAX_VERSION 1000000
#define MAX_BODY (64 * 1024)
#define MAX_NOTES 10

static const char usage[] =
    "usage: kq_hammer --url BASE --key KEY --id ID [--clients N] [--until V] [--start V] "
    "[--timeout S]\n";

typedef struct {
    const char *url, *key, *id;
    long clients, until, start, timeout_s;
    double deadline;
    atomic_int *successes; /* per version */
    atomic_long ok, pre, unavail, unexpected;
    atomic_long max_version;
    pthread_mutex_t notes_mu;
    int nnotes;
    char notes[MAX_NOTES][512];
} hammer;

typedef struct {
    hammer *h;
    int index;
    int reached;
} client;

typedef struct {
    char data[MAX_BODY];
    size_t len;
    char etag[64];
} answer;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_body(char *ptr, size_t size, size_t n, void *ud)
{
    answer *a = ud;
    size_t len = size * n, room = sizeof a->data - 1 - a->len;
    memcpy(a->data + a->len, ptr, len < room ? len : room);
    a->len += len < room ? len : room;
    a->data[a->len] = '\0';
    return len;
}

static size_t on_header(char *ptr, size_t size, size_t n, void *ud)
{
    answer *a = ud;
    size_t len = size * n;
    if (len > 5 && strncasecmp(ptr, "ETag:", 5) == 0) {
        size_t i = 5, j = 0;
        while (i < len && (ptr[i] == ' ' || ptr[i] == '"' || ptr[i] == 'W' || ptr[i] == '/'))
            i++;
        while (i < len && ptr[i] >= '0' && ptr[i] <= '9' && j + 1 < sizeof a->etag)
            a->etag[j++] = ptr[i++];
        a->etag[j] = '\0';
    }
    return len;
}

static long long version_of(const answer *a, int precondition)
{
    json_error_t err;
    json_t *root = json_loadb(a->data, a->len, 0, &err);
    long long v = -1;
    if (root != NULL) {
        if (precondition)
            v = kq_tool_find_int(root, "current_version");
        if (v < 0)
            v = kq_tool_find_int(root, "version");
        json_decref(root);
    }
    if (v < 0 && precondition && a->etag[0] != '\0')
        v = strtoll(a->etag, NULL, 10);
    return v;
}

static void note(hammer *h, long status, const answer *a)
{
    pthread_mutex_lock(&h->notes_mu);
    if (h->nnotes < MAX_NOTES)
        snprintf(h->notes[h->nnotes++], sizeof h->notes[0], "%ld %.400s", status, a->data);
    pthread_mutex_unlock(&h->notes_mu);
}

static void *run_client(void *arg)
{
    client *c = arg;
    hammer *h = c->h;
    CURL *curl = curl_easy_init();
    struct curl_slist *base = NULL;
    char url[1024], auth[512], body[256], ifmatch[64];
    long long v = h->start;
    answer a;

    if (curl == NULL)
        return NULL;
    snprintf(url, sizeof url, "%s/api/v1/resources/%s", h->url, h->id);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", h->key);
    base = curl_slist_append(base, auth);
    base = curl_slist_append(base, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &a);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (getenv("KCQRS_HTTP_TLS_CA") != NULL) /* https URLs: the CA that signed the services' */
        curl_easy_setopt(curl, CURLOPT_CAINFO, getenv("KCQRS_HTTP_TLS_CA"));

    while (v < h->until && now_s() < h->deadline) {
        struct curl_slist *hdrs = NULL, *s;
        long status = 0;
        CURLcode cc;
        for (s = base; s != NULL; s = s->next)
            hdrs = curl_slist_append(hdrs, s->data);
        snprintf(ifmatch, sizeof ifmatch, "If-Match: \"%lld\"", v);
        hdrs = curl_slist_append(hdrs, ifmatch);
        snprintf(body, sizeof body, "{\"description\":\"client %d writes version %lld\"}", c->index,
                 v + 1);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        a.len = 0;
        a.data[0] = '\0';
        a.etag[0] = '\0';
        cc = curl_easy_perform(curl);
        curl_slist_free_all(hdrs);
        if (cc != CURLE_OK) {
            snprintf(a.data, sizeof a.data, "curl: %s", curl_easy_strerror(cc));
            atomic_fetch_add(&h->unexpected, 1);
            note(h, 0, &a);
            break;
        }
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (status == 200) {
            long long nv = version_of(&a, 0);
            atomic_fetch_add(&h->ok, 1);
            if (nv < 1 || nv >= MAX_VERSION) {
                atomic_fetch_add(&h->unexpected, 1);
                note(h, status, &a);
                break;
            }
            atomic_fetch_add(&h->successes[nv], 1);
            long cur = atomic_load(&h->max_version);
            while (nv > cur && !atomic_compare_exchange_weak(&h->max_version, &cur, (long)nv))
                ;
            v = nv;
        } else if (status == 412) {
            long long nv = version_of(&a, 1);
            atomic_fetch_add(&h->pre, 1);
            if (nv < 1 || nv >= MAX_VERSION) {
                atomic_fetch_add(&h->unexpected, 1);
                note(h, status, &a);
                break;
            }
            v = nv;
        } else if (status == 503 || status == 429) {
            atomic_fetch_add(&h->unavail, 1);
            nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
        } else {
            atomic_fetch_add(&h->unexpected, 1);
            note(h, status, &a);
            break;
        }
    }
    c->reached = v >= h->until;
    curl_slist_free_all(base);
    curl_easy_cleanup(curl);
    return NULL;
}

static int opt_long(const char *s, long min, long max, long *out)
{
    return kq_parse_long(s, min, max, out) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    static hammer h;
    static client cs[MAX_CLIENTS];
    static pthread_t th[MAX_CLIENTS];
    int bad = 0, all_reached = 1;

    h.clients = 32;
    h.until = 200;
    h.start = 1;
    h.timeout_s = 60;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            bad = 1;
            break;
        }
        i++;
        if (strcmp(o, "--url") == 0)
            h.url = v;
        else if (strcmp(o, "--key") == 0)
            h.key = v;
        else if (strcmp(o, "--id") == 0)
            h.id = v;
        else if (strcmp(o, "--clients") == 0)
            bad |= opt_long(v, 1, MAX_CLIENTS, &h.clients);
        else if (strcmp(o, "--until") == 0)
            bad |= opt_long(v, 1, MAX_VERSION - 1, &h.until);
        else if (strcmp(o, "--start") == 0)
            bad |= opt_long(v, 1, MAX_VERSION - 1, &h.start);
        else if (strcmp(o, "--timeout") == 0)
            bad |= opt_long(v, 1, 3600, &h.timeout_s);
        else
            bad = 1;
    }
    if (bad || h.url == NULL || h.key == NULL || h.id == NULL) {
        fputs(usage, stderr);
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        (h.successes = calloc((size_t)MAX_VERSION, sizeof *h.successes)) == NULL) {
        fprintf(stderr, "kq_hammer: initialisation failed\n");
        return 1;
    }
    pthread_mutex_init(&h.notes_mu, NULL);
    h.deadline = now_s() + (double)h.timeout_s;
    for (long i = 0; i < h.clients; i++) {
        cs[i].h = &h;
        cs[i].index = (int)i;
        if (pthread_create(&th[i], NULL, run_client, &cs[i]) != 0) {
            fprintf(stderr, "kq_hammer: pthread_create failed\n");
            return 1;
        }
    }
    for (long i = 0; i < h.clients; i++) {
        pthread_join(th[i], NULL);
        all_reached &= cs[i].reached;
    }
    for (long v = 0; v < MAX_VERSION; v++)
        if (atomic_load(&h.successes[v]) > 0)
            printf("version %ld successes %d\n", v, atomic_load(&h.successes[v]));
    printf("total ok=%ld precondition_failed=%ld unavailable=%ld unexpected=%ld max_version=%ld\n",
           atomic_load(&h.ok), atomic_load(&h.pre), atomic_load(&h.unavail),
           atomic_load(&h.unexpected), atomic_load(&h.max_version));
    for (int i = 0; i < h.nnotes; i++)
        printf("unexpected: %s\n", h.notes[i]);
    free(h.successes);
    curl_global_cleanup();
    return all_reached && atomic_load(&h.unexpected) == 0 ? 0 : 1;
}
