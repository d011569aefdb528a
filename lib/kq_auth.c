/*
 * kq_auth.c — keys file, bearer lookup, roles; see kq_auth.h.
 */
#include "kq_auth.h"
#include "kq_b64.h"
#include "kq_err.h"
#include "kq_log.h"
#include "kq_rand.h"
#include "kq_time.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define HASH_LEN 32
#define LINE_MAX_LEN 1024

typedef struct auth_entry {
    char name[KQ_AUTH_NAME_MAX + 1];
    const char *stable; /* watched sets: the interned name lookups hand out; else NULL */
    unsigned roles;
    unsigned char hash[HASH_LEN];
} auth_entry;

typedef struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim;
} file_id;

struct kq_auth_keys {
    size_t n;
    auth_entry *e;
    /* kq_auth_watch: the rest is used only when interval_ms > 0 */
    int interval_ms;
    char *path;
    pthread_rwlock_t lock;   /* n, e, id, names */
    _Atomic int64_t next_ms; /* monotonic ms of the next look at the file */
    file_id id;              /* of the file the entries came from (or last refused) */
    char **names;            /* every name ever loaded: handed-out actors stay valid */
    size_t nnames, capnames;
    _Atomic unsigned long reloads;
};

static const char *const role_names[] = {"admin", "writer", "reader", "auditor", "worker"};
#define NROLES (sizeof role_names / sizeof role_names[0])

const char *kq_auth_role_name(unsigned bit)
{
    for (size_t i = 0; i < NROLES; i++)
        if (bit == (1u << i))
            return role_names[i];
    return NULL;
}

int kq_auth_has_role(unsigned have, unsigned need)
{
    if (have & KQ_AUTH_ROLE_ADMIN)
        return 1;
    return (have & need) == need;
}

int kq_auth_roles_parse(const char *s, size_t len, unsigned *out, char *errstr, size_t errlen)
{
    unsigned roles = 0;
    size_t i = 0;

    if (len == 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "no roles given");
    while (i <= len) {
        size_t j = i, k;
        unsigned bit = 0;
        while (j < len && s[j] != ',')
            j++;
        for (k = 0; k < NROLES; k++) {
            if (strlen(role_names[k]) == j - i && memcmp(s + i, role_names[k], j - i) == 0) {
                bit = 1u << k;
                break;
            }
        }
        if (bit == 0)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "unknown role '%.*s' (known: admin, writer, reader, auditor, worker)",
                             (int)(j - i > 64 ? 64 : j - i), s + i);
        if (roles & bit)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "role '%s' given twice", role_names[k]);
        roles |= bit;
        i = j + 1;
    }
    *out = roles;
    return 0;
}

void kq_auth_roles_format(unsigned roles, char *out, size_t outlen)
{
    size_t n = 0;

    if (outlen == 0)
        return;
    out[0] = '\0';
    for (size_t k = 0; k < NROLES; k++) {
        if (roles & (1u << k)) {
            int w = snprintf(out + n, outlen - n, "%s%s", n ? "," : "", role_names[k]);
            if (w < 0 || (size_t)w >= outlen - n)
                return;
            n += (size_t)w;
        }
    }
}

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static int name_valid_n(const char *s, size_t len)
{
    if (len == 0 || len > KQ_AUTH_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!name_char(s[i]))
            return 0;
    return 1;
}

int kq_auth_name_valid(const char *name)
{
    return name != NULL && name_valid_n(name, strnlen(name, KQ_AUTH_NAME_MAX + 1));
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int sha256(const void *data, size_t len, unsigned char out[HASH_LEN])
{
    unsigned int olen = 0;
    if (EVP_Digest(data, len, out, &olen, EVP_sha256(), NULL) != 1 || olen != HASH_LEN)
        return KQ_EIO;
    return 0;
}

int kq_auth_hash_hex(const char *data, size_t len, char hex[65])
{
    unsigned char h[HASH_LEN];
    int rc = sha256(data, len, h);

    if (rc != 0)
        return rc;
    kq_hex_encode(h, HASH_LEN, hex);
    return 0;
}

/* Split one line into whitespace-separated fields; returns the field count (max 4). */
static size_t split_fields(const char *s, size_t len, const char *f[4], size_t flen[4])
{
    size_t n = 0, i = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && s[i] != ' ' && s[i] != '\t')
            i++;
        if (n == 4)
            return 5;
        f[n] = s + start;
        flen[n] = i - start;
        n++;
    }
    return n;
}

int kq_auth_parse(const char *text, size_t len, const char *source, kq_auth_keys **out,
                  char *errstr, size_t errlen)
{
    kq_auth_keys *k = calloc(1, sizeof *k);
    size_t cap = 0, pos = 0, lineno = 0;
    int rc = 0;

    if (k == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    if (source == NULL)
        source = "keys";
    while (pos < len) {
        const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - line) : len - pos;
        const char *f[4];
        size_t flen[4], nf, i;
        auth_entry *e;
        char rerr[160];

        pos += llen + (nl ? 1 : 0);
        lineno++;
        if (llen > 0 && line[llen - 1] == '\r')
            llen--;
        if (llen > LINE_MAX_LEN) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL, "%s:%zu: line longer than %d bytes", source,
                           lineno, LINE_MAX_LEN);
            goto out;
        }
        if (memchr(line, '\0', llen) != NULL) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL, "%s:%zu: NUL byte in line", source, lineno);
            goto out;
        }
        nf = split_fields(line, llen, f, flen);
        if (nf == 0 || f[0][0] == '#')
            continue;
        if (nf != 3) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL,
                           "%s:%zu: expected 3 fields '<name> <roles> <sha256-hex>', found %zu%s",
                           source, lineno, nf > 4 ? (size_t)4 : nf, nf > 4 ? " or more" : "");
            goto out;
        }
        if (!name_valid_n(f[0], flen[0])) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL,
                           "%s:%zu: name '%.*s' does not match [A-Za-z0-9._-]{1,64}", source,
                           lineno, (int)(flen[0] > 80 ? 80 : flen[0]), f[0]);
            goto out;
        }
        if (cap == k->n) {
            size_t ncap = cap ? cap * 2 : 8;
            auth_entry *ne = realloc(k->e, ncap * sizeof *ne);
            if (ne == NULL) {
                rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
                goto out;
            }
            k->e = ne;
            cap = ncap;
        }
        e = &k->e[k->n];
        memset(e, 0, sizeof *e);
        memcpy(e->name, f[0], flen[0]);
        for (i = 0; i < k->n; i++) {
            if (strcmp(k->e[i].name, e->name) == 0) {
                rc = kq_seterr(errstr, errlen, KQ_EINVAL, "%s:%zu: duplicate name '%s'", source,
                               lineno, e->name);
                goto out;
            }
        }
        if (kq_auth_roles_parse(f[1], flen[1], &e->roles, rerr, sizeof rerr) != 0) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL, "%s:%zu: %s", source, lineno, rerr);
            goto out;
        }
        if (flen[2] != 2 * HASH_LEN) {
            rc = kq_seterr(errstr, errlen, KQ_EINVAL,
                           "%s:%zu: hash must be 64 lowercase hex digits (SHA-256), found %zu "
                           "characters",
                           source, lineno, flen[2]);
            goto out;
        }
        for (i = 0; i < HASH_LEN; i++) {
            int hi = hexval(f[2][2 * i]), lo = hexval(f[2][2 * i + 1]);
            if (hi < 0 || lo < 0) {
                rc = kq_seterr(errstr, errlen, KQ_EINVAL,
                               "%s:%zu: hash must be 64 lowercase hex digits (SHA-256)", source,
                               lineno);
                goto out;
            }
            e->hash[i] = (unsigned char)(hi << 4 | lo);
        }
        for (i = 0; i < k->n; i++) {
            if (memcmp(k->e[i].hash, e->hash, HASH_LEN) == 0) {
                rc = kq_seterr(errstr, errlen, KQ_EINVAL, "%s:%zu: same key hash as entry '%s'",
                               source, lineno, k->e[i].name);
                goto out;
            }
        }
        k->n++;
    }
out:
    if (rc != 0) {
        kq_auth_free(k);
        return rc;
    }
    *out = k;
    return 0;
}

/* Read all of fd (at most KQ_AUTH_FILE_MAX bytes) into a malloc'd buffer. */
static int read_fd(int fd, const char *path, char **buf, size_t *len, char *errstr, size_t errlen)
{
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);

    if (b == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    for (;;) {
        ssize_t got;
        if (n == cap) {
            char *nb;
            if (cap > KQ_AUTH_FILE_MAX) {
                free(b);
                return kq_seterr(errstr, errlen, KQ_ERANGE, "%s: larger than %u bytes", path,
                                 KQ_AUTH_FILE_MAX);
            }
            cap *= 2;
            if ((nb = realloc(b, cap)) == NULL) {
                free(b);
                return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            }
            b = nb;
        }
        got = read(fd, b + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            free(b);
            return kq_seterr(errstr, errlen, KQ_EIO, "%s: %s", path, strerror(e));
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (n > KQ_AUTH_FILE_MAX) {
        free(b);
        return kq_seterr(errstr, errlen, KQ_ERANGE, "%s: larger than %u bytes", path,
                         KQ_AUTH_FILE_MAX);
    }
    *buf = b;
    *len = n;
    return 0;
}

int kq_auth_load(const char *path, kq_auth_keys **out, char *errstr, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

    if (fd < 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "%s: %s", path, strerror(errno));
    rc = read_fd(fd, path, &buf, &len, errstr, errlen);
    close(fd);
    if (rc == 0)
        rc = kq_auth_parse(buf, len, path, out, errstr, errlen);
    free(buf);
    return rc;
}

void kq_auth_free(kq_auth_keys *keys)
{
    if (keys == NULL)
        return;
    if (keys->e != NULL)
        OPENSSL_cleanse(keys->e, keys->n * sizeof *keys->e);
    free(keys->e);
    if (keys->interval_ms > 0) {
        pthread_rwlock_destroy(&keys->lock);
        for (size_t i = 0; i < keys->nnames; i++)
            free(keys->names[i]);
        free(keys->names);
        free(keys->path);
    }
    free(keys);
}

static int file_id_of(const char *path, file_id *id)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return -1;
    memset(id, 0, sizeof *id);
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->size = st.st_size;
    id->mtim = st.st_mtim;
    return 0;
}

static int file_id_eq(const file_id *a, const file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec;
}

/* Point every entry of `e` at the interned copy of its name (added when new). */
static int intern_names(kq_auth_keys *k, auth_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t j;
        for (j = 0; j < k->nnames && strcmp(k->names[j], e[i].name) != 0; j++)
            ;
        if (j == k->nnames) {
            if (k->nnames == k->capnames) {
                size_t nc = k->capnames ? 2 * k->capnames : 16;
                char **nn = realloc(k->names, nc * sizeof *nn);
                if (nn == NULL)
                    return KQ_ENOMEM;
                k->names = nn;
                k->capnames = nc;
            }
            if ((k->names[j] = strdup(e[i].name)) == NULL)
                return KQ_ENOMEM;
            k->nnames++;
        }
        e[i].stable = k->names[j];
    }
    return 0;
}

int kq_auth_watch(kq_auth_keys *keys, const char *path, int interval_ms, char *errstr,
                  size_t errlen)
{
    if (keys == NULL || interval_ms <= 0)
        return 0;
    if (keys->interval_ms > 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "keys already watched");
    if ((keys->path = strdup(path)) == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    if (file_id_of(path, &keys->id) != 0) {
        int e = errno;
        free(keys->path);
        keys->path = NULL;
        return kq_seterr(errstr, errlen, KQ_EIO, "%s: %s", path, strerror(e));
    }
    if (pthread_rwlock_init(&keys->lock, NULL) != 0) {
        free(keys->path);
        keys->path = NULL;
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "rwlock");
    }
    if (intern_names(keys, keys->e, keys->n) != 0) {
        for (size_t i = 0; i < keys->n; i++)
            keys->e[i].stable = NULL;
        for (size_t i = 0; i < keys->nnames; i++)
            free(keys->names[i]);
        free(keys->names);
        keys->names = NULL;
        keys->nnames = keys->capnames = 0;
        pthread_rwlock_destroy(&keys->lock);
        free(keys->path);
        keys->path = NULL;
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    }
    keys->interval_ms = interval_ms;
    atomic_store(&keys->next_ms, kq_time_mono_ms() + interval_ms);
    return 0;
}

unsigned long kq_auth_reloads(const kq_auth_keys *keys)
{
    return keys && keys->interval_ms > 0 ? atomic_load(&((kq_auth_keys *)keys)->reloads) : 0;
}

/*
 * At most once per interval (the caller that wins the compare-and-swap does
 * it; the others go on with the current set): stat the file and, when its
 * identity changed, parse it and swap the entries in. A file that cannot be
 * read or parsed leaves the current set in place (logged once per change).
 */
static void maybe_reload(kq_auth_keys *k)
{
    int64_t now = kq_time_mono_ms(), next = atomic_load(&k->next_ms);
    kq_auth_keys *fresh = NULL;
    file_id id;
    char err[512];

    if (now < next || !atomic_compare_exchange_strong(&k->next_ms, &next, now + k->interval_ms))
        return;
    if (file_id_of(k->path, &id) != 0) {
        memset(&id, 0, sizeof id); /* gone: logged once, until it is back */
        pthread_rwlock_rdlock(&k->lock);
        int same = file_id_eq(&id, &k->id);
        pthread_rwlock_unlock(&k->lock);
        if (!same) {
            kq_log_warn("API keys: %s: %s; keeping the %zu keys loaded", k->path, strerror(errno),
                        k->n);
            pthread_rwlock_wrlock(&k->lock);
            k->id = id;
            pthread_rwlock_unlock(&k->lock);
        }
        return;
    }
    pthread_rwlock_rdlock(&k->lock);
    int same = file_id_eq(&id, &k->id);
    pthread_rwlock_unlock(&k->lock);
    if (same)
        return;
    if (kq_auth_load(k->path, &fresh, err, sizeof err) != 0) {
        kq_log_warn("API keys: %s; keeping the %zu keys loaded", err, k->n);
        pthread_rwlock_wrlock(&k->lock);
        k->id = id;
        pthread_rwlock_unlock(&k->lock);
        return;
    }
    pthread_rwlock_wrlock(&k->lock);
    if (intern_names(k, fresh->e, fresh->n) != 0) {
        pthread_rwlock_unlock(&k->lock);
        kq_log_warn("API keys: out of memory reloading %s", k->path);
        kq_auth_free(fresh);
        return;
    }
    {
        auth_entry *olde = k->e;
        size_t oldn = k->n;
        k->e = fresh->e;
        k->n = fresh->n;
        k->id = id;
        fresh->e = olde;
        fresh->n = oldn;
    }
    pthread_rwlock_unlock(&k->lock);
    atomic_fetch_add(&k->reloads, 1);
    kq_log_info("API keys: reloaded %s: %zu keys", k->path, k->n);
    kq_auth_free(fresh);
}

size_t kq_auth_count(const kq_auth_keys *keys)
{
    return keys ? keys->n : 0;
}

const char *kq_auth_name(const kq_auth_keys *keys, size_t i)
{
    return keys && i < keys->n ? keys->e[i].name : NULL;
}

unsigned kq_auth_roles(const kq_auth_keys *keys, size_t i)
{
    return keys && i < keys->n ? keys->e[i].roles : 0;
}

static int lookup_in(const kq_auth_keys *keys, const unsigned char h[HASH_LEN], const char **name,
                     unsigned *roles)
{
    size_t match = 0;
    unsigned found = 0;

    /* Visit every entry; select the match without a data-dependent branch. */
    for (size_t i = 0; i < keys->n; i++) {
        unsigned eq = (unsigned)(CRYPTO_memcmp(keys->e[i].hash, h, HASH_LEN) == 0);
        size_t mask = (size_t)0 - (size_t)(eq & (found ^ 1u));
        match = (match & ~mask) | (i & mask);
        found |= eq;
    }
    if (!found)
        return KQ_ENOTFOUND;
    *name = keys->e[match].stable ? keys->e[match].stable : keys->e[match].name;
    *roles = keys->e[match].roles;
    return 0;
}

int kq_auth_lookup(const kq_auth_keys *keys, const char *token, size_t len, const char **name,
                   unsigned *roles)
{
    unsigned char h[HASH_LEN];
    int rc;

    if (keys == NULL || token == NULL || len == 0 || len > KQ_AUTH_TOKEN_MAX)
        return KQ_ENOTFOUND;
    if (sha256(token, len, h) != 0)
        return KQ_ENOTFOUND;
    if (keys->interval_ms > 0) {
        /* The reload state is the one mutable part of a set shared read-only. */
        kq_auth_keys *k = (kq_auth_keys *)keys;
        maybe_reload(k);
        pthread_rwlock_rdlock(&k->lock);
        rc = lookup_in(k, h, name, roles);
        pthread_rwlock_unlock(&k->lock);
    } else {
        rc = lookup_in(keys, h, name, roles);
    }
    OPENSSL_cleanse(h, sizeof h);
    return rc;
}

int kq_auth_generate_key(char *out, size_t outlen, char *errstr, size_t errlen)
{
    unsigned char r[32];

    if (outlen <= KQ_AUTH_KEY_LEN)
        return kq_seterr(errstr, errlen, KQ_ERANGE, "key buffer too small");
    if (kq_rand_bytes(r, sizeof r) != 0)
        return kq_seterr(errstr, errlen, KQ_EIO, "getrandom: %s", strerror(errno));
    memcpy(out, "kq_", 3);
    kq_b64_encode(r, sizeof r, out + 3); /* 32 bytes: 43 characters */
    OPENSSL_cleanse(r, sizeof r);
    return 0;
}

/*
 * Open `path` with `flags` and take its exclusive flock. A rewrite replaces
 * the file by rename, so a lock taken on the old inode is retried on the new
 * one: the lock is held on the file that `path` names.
 */
static int lock_file(const char *path, int flags, int *out, char *errstr, size_t errlen)
{
    for (int tries = 0; tries < 100; tries++) {
        struct stat a, b;
        int fd = open(path, flags | O_CLOEXEC, 0600);
        if (fd < 0)
            return kq_seterr(errstr, errlen, errno == ENOENT ? KQ_ENOTFOUND : KQ_EIO, "%s: %s",
                             path, strerror(errno));
        if (flock(fd, LOCK_EX) != 0) {
            int e = errno;
            close(fd);
            return kq_seterr(errstr, errlen, KQ_EIO, "%s: lock: %s", path, strerror(e));
        }
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            *out = fd;
            return 0;
        }
        close(fd);
    }
    return kq_seterr(errstr, errlen, KQ_EIO, "%s: replaced while locking, 100 times", path);
}

int kq_auth_file_change(const char *path, const char *name, const char *hash_hex, char *errstr,
                        size_t errlen)
{
    kq_auth_keys *k = NULL;
    char *buf = NULL, *out = NULL, tmp[4096];
    size_t len = 0, olen = 0, pos = 0, found = 0;
    int fd = -1, tfd = -1, rc;

    if (!kq_auth_name_valid(name))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "name '%s' does not match [A-Za-z0-9._-]{1,64}",
                         name ? name : "");
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "%s: path too long", path);
    if ((rc = lock_file(path, O_RDWR, &fd, errstr, errlen)) != 0)
        return rc;
    if ((rc = read_fd(fd, path, &buf, &len, errstr, errlen)) != 0 ||
        (rc = kq_auth_parse(buf, len, path, &k, errstr, errlen)) != 0)
        goto out;
    if ((out = malloc(len + 2 * LINE_MAX_LEN)) == NULL) {
        rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
        goto out;
    }
    /* Every line as it is, but the entry of `name`: left out, or with the new hash. */
    while (pos < len) {
        const char *line = buf + pos, *nl = memchr(line, '\n', len - pos), *f[4];
        size_t llen = nl ? (size_t)(nl - line) + 1 : len - pos, flen[4];
        size_t nf = split_fields(line, nl ? llen - 1 : llen, f, flen);
        pos += llen;
        if (nf == 3 && flen[0] == strlen(name) && memcmp(f[0], name, flen[0]) == 0) {
            found++;
            if (hash_hex != NULL) {
                int n = snprintf(out + olen, 2 * LINE_MAX_LEN, "%s %.*s %s\n", name, (int)flen[1],
                                 f[1], hash_hex);
                if (n < 0 || n >= 2 * LINE_MAX_LEN) {
                    rc = kq_seterr(errstr, errlen, KQ_EINVAL, "entry too long");
                    goto out;
                }
                olen += (size_t)n;
            }
            continue;
        }
        memcpy(out + olen, line, llen);
        olen += llen;
    }
    if (found == 0) {
        rc = kq_seterr(errstr, errlen, KQ_ENOTFOUND, "%s: no key named '%s'", path, name);
        goto out;
    }
    kq_auth_free(k);
    k = NULL;
    if ((rc = kq_auth_parse(out, olen, path, &k, errstr, errlen)) != 0)
        goto out;
    /* Write a new file beside it and rename it over: a reader sees the old or the new one. */
    if ((tfd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        rc = kq_seterr(errstr, errlen, KQ_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if (fchmod(tfd, 0600) != 0 || write(tfd, out, olen) != (ssize_t)olen || fsync(tfd) != 0 ||
        rename(tmp, path) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_EIO, "%s: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
out:
    if (tfd >= 0)
        close(tfd);
    kq_auth_free(k);
    if (out != NULL)
        OPENSSL_cleanse(out, olen);
    free(out);
    free(buf);
    close(fd);
    return rc;
}

int kq_auth_file_append(const char *path, const char *name, unsigned roles, const char *hash_hex,
                        char *errstr, size_t errlen)
{
    kq_auth_keys *k = NULL;
    char *buf = NULL, line[LINE_MAX_LEN], rs[64];
    size_t len = 0;
    int fd = -1, rc = 0, n;

    if (!kq_auth_name_valid(name))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "name '%s' does not match [A-Za-z0-9._-]{1,64}",
                         name ? name : "");
    if (roles == 0 || (roles & ~KQ_AUTH_ROLE_ALL))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "invalid roles");
    kq_auth_roles_format(roles, rs, sizeof rs);
    n = snprintf(line, sizeof line, "%s %s %s\n", name, rs, hash_hex);
    if (n < 0 || (size_t)n >= sizeof line)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "entry too long");
    if ((rc = lock_file(path, O_RDWR | O_APPEND | O_CREAT, &fd, errstr, errlen)) != 0)
        return rc;
    if ((rc = read_fd(fd, path, &buf, &len, errstr, errlen)) != 0)
        goto out;
    /* Check the new line parses in context: catches a broken file, a duplicate name or hash. */
    {
        size_t extra = (len > 0 && buf[len - 1] != '\n') ? 1 : 0;
        char *all = malloc(len + extra + (size_t)n);
        if (all == NULL) {
            rc = kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(all, buf, len);
        if (extra)
            all[len] = '\n';
        memcpy(all + len + extra, line, (size_t)n);
        if ((rc = kq_auth_parse(buf, len, path, &k, errstr, errlen)) == 0) {
            for (size_t i = 0; i < k->n; i++)
                if (strcmp(k->e[i].name, name) == 0)
                    rc = kq_seterr(errstr, errlen, KQ_EEXIST, "%s: a key named '%s' exists already",
                                   path, name);
            kq_auth_free(k);
            k = NULL;
            if (rc == 0)
                rc = kq_auth_parse(all, len + extra + (size_t)n, path, &k, errstr, errlen);
        }
        free(all);
        if (rc != 0)
            goto out;
        if (extra && write(fd, "\n", 1) != 1) {
            rc = kq_seterr(errstr, errlen, KQ_EIO, "%s: write: %s", path, strerror(errno));
            goto out;
        }
    }
    if (write(fd, line, (size_t)n) != n || fsync(fd) != 0) {
        rc = kq_seterr(errstr, errlen, KQ_EIO, "%s: write: %s", path, strerror(errno));
        goto out;
    }
out:
    kq_auth_free(k);
    free(buf);
    close(fd);
    return rc;
}
