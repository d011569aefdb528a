/* rp_fp.c — order-independent read-model fingerprints and their diff; see rp_fp.h. */
#include "rp_fp.h"
#include "kq_err.h"
#include "kq_rand.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct fp_row {
    unsigned table;
    unsigned char hash[RP_FP_LEN];
    size_t klen;
    unsigned char *key;
} fp_row;

typedef struct fp_table {
    char *name;
    size_t rows;
    unsigned char sum[RP_FP_LEN];
} fp_table;

struct rp_fp {
    int keep_rows;
    fp_table tables[RP_FP_MAX_TABLES];
    unsigned ntables;
    size_t rows;
    unsigned char sum[RP_FP_LEN];
    fp_row *row;
    size_t nrow, caprow;
    EVP_MD_CTX *ctx;
};

rp_fp *rp_fp_new(int keep_rows)
{
    rp_fp *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    f->keep_rows = keep_rows;
    if ((f->ctx = EVP_MD_CTX_new()) == NULL) {
        free(f);
        return NULL;
    }
    return f;
}

void rp_fp_free(rp_fp *f)
{
    if (f == NULL)
        return;
    for (unsigned i = 0; i < f->ntables; i++)
        free(f->tables[i].name);
    for (size_t i = 0; i < f->nrow; i++)
        free(f->row[i].key);
    free(f->row);
    EVP_MD_CTX_free(f->ctx);
    free(f);
}

/* acc += x, both 256-bit little-endian, modulo 2^256 */
static void add256(unsigned char acc[RP_FP_LEN], const unsigned char x[RP_FP_LEN])
{
    unsigned carry = 0;
    for (int i = 0; i < RP_FP_LEN; i++) {
        unsigned s = (unsigned)acc[i] + x[i] + carry;
        acc[i] = (unsigned char)s;
        carry = s >> 8;
    }
}

static int table_index(rp_fp *f, const char *table, unsigned *out)
{
    for (unsigned i = 0; i < f->ntables; i++) {
        if (strcmp(f->tables[i].name, table) == 0) {
            *out = i;
            return 0;
        }
    }
    if (f->ntables == RP_FP_MAX_TABLES)
        return KQ_EINVAL;
    if ((f->tables[f->ntables].name = strdup(table)) == NULL)
        return KQ_ENOMEM;
    *out = f->ntables++;
    return 0;
}

int rp_fp_table(rp_fp *f, const char *table)
{
    unsigned t;
    return table_index(f, table, &t);
}

static void put_len(EVP_MD_CTX *ctx, size_t n)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    EVP_DigestUpdate(ctx, b, sizeof b);
}

int rp_fp_add(rp_fp *f, const char *table, const void *key, size_t klen, const void *val,
              size_t vlen)
{
    unsigned t;
    unsigned char h[RP_FP_LEN];
    unsigned hl = 0;
    size_t tl = strlen(table);
    int rc;

    if ((rc = table_index(f, table, &t)) != 0)
        return rc;
    if (EVP_DigestInit_ex(f->ctx, EVP_sha256(), NULL) != 1)
        return KQ_ENOMEM;
    put_len(f->ctx, tl);
    EVP_DigestUpdate(f->ctx, table, tl);
    put_len(f->ctx, klen);
    EVP_DigestUpdate(f->ctx, key, klen);
    put_len(f->ctx, vlen);
    EVP_DigestUpdate(f->ctx, val, vlen);
    if (EVP_DigestFinal_ex(f->ctx, h, &hl) != 1 || hl != RP_FP_LEN)
        return KQ_ENOMEM;

    if (f->keep_rows) {
        if (f->nrow == f->caprow) {
            size_t cap = f->caprow ? f->caprow * 2 : 1024;
            fp_row *nr = realloc(f->row, cap * sizeof *nr);
            if (nr == NULL)
                return KQ_ENOMEM;
            f->row = nr;
            f->caprow = cap;
        }
        fp_row *r = &f->row[f->nrow];
        if ((r->key = malloc(klen ? klen : 1)) == NULL)
            return KQ_ENOMEM;
        memcpy(r->key, key, klen);
        r->klen = klen;
        r->table = t;
        memcpy(r->hash, h, RP_FP_LEN);
        f->nrow++;
    }
    add256(f->tables[t].sum, h);
    f->tables[t].rows++;
    add256(f->sum, h);
    f->rows++;
    return 0;
}

void rp_fp_digest(const rp_fp *f, unsigned char out[RP_FP_LEN])
{
    memcpy(out, f->sum, RP_FP_LEN);
}

size_t rp_fp_rows(const rp_fp *f)
{
    return f->rows;
}

int rp_fp_equal(const rp_fp *a, const rp_fp *b)
{
    return a->rows == b->rows && memcmp(a->sum, b->sum, RP_FP_LEN) == 0;
}

void rp_fp_print(const rp_fp *f, const char *label, FILE *out)
{
    char hex[2 * RP_FP_LEN + 1];
    for (unsigned i = 0; i < f->ntables; i++) {
        kq_hex_encode(f->tables[i].sum, RP_FP_LEN, hex);
        fprintf(out, "%s %s rows=%zu digest=%s\n", label, f->tables[i].name, f->tables[i].rows,
                hex);
    }
    kq_hex_encode(f->sum, RP_FP_LEN, hex);
    fprintf(out, "%s total rows=%zu digest=%s\n", label, f->rows, hex);
}

/* ---- diff ---- */

/* Rows are compared by table NAME (the two sides may have met tables in another order). */
typedef struct fp_ref {
    const char *table;
    const fp_row *row;
} fp_ref;

static int ref_cmp(const void *pa, const void *pb)
{
    const fp_ref *a = pa, *b = pb;
    int c = strcmp(a->table, b->table);
    if (c != 0)
        return c;
    size_t n = a->row->klen < b->row->klen ? a->row->klen : b->row->klen;
    c = n ? memcmp(a->row->key, b->row->key, n) : 0;
    if (c != 0)
        return c;
    return (a->row->klen > b->row->klen) - (a->row->klen < b->row->klen);
}

static fp_ref *sorted_refs(const rp_fp *f)
{
    fp_ref *v = malloc((f->nrow ? f->nrow : 1) * sizeof *v);
    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < f->nrow; i++) {
        v[i].table = f->tables[f->row[i].table].name;
        v[i].row = &f->row[i];
    }
    qsort(v, f->nrow, sizeof *v, ref_cmp);
    return v;
}

static void print_key(FILE *out, const unsigned char *k, size_t n)
{
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        if (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '"' && k[i] != '\\')
            fputc(k[i], out);
        else
            fprintf(out, "\\x%02x", k[i]);
    }
    fputc('"', out);
}

static void report(FILE *out, long *count, size_t max, const fp_ref *r, const char *what)
{
    if ((size_t)*count < max) {
        fprintf(out, "%s ", r->table);
        print_key(out, r->row->key, r->row->klen);
        fprintf(out, ": %s\n", what);
    }
    (*count)++;
}

long rp_fp_diff(rp_fp *live, rp_fp *shadow, FILE *out, size_t max)
{
    if (!live->keep_rows || !shadow->keep_rows)
        return -1;
    fp_ref *a = sorted_refs(live), *b = sorted_refs(shadow);
    long count = 0;
    size_t i = 0, j = 0;

    if (a == NULL || b == NULL) {
        free(a);
        free(b);
        return -1;
    }
    while (i < live->nrow || j < shadow->nrow) {
        int c = i == live->nrow ? 1 : j == shadow->nrow ? -1 : ref_cmp(&a[i], &b[j]);
        if (c < 0) {
            report(out, &count, max, &a[i++], "missing in shadow");
        } else if (c > 0) {
            report(out, &count, max, &b[j++], "missing in live");
        } else {
            if (memcmp(a[i].row->hash, b[j].row->hash, RP_FP_LEN) != 0)
                report(out, &count, max, &a[i], "differs");
            i++;
            j++;
        }
    }
    if ((size_t)count > max)
        fprintf(out, "... and %ld more\n", count - (long)max);
    free(a);
    free(b);
    return count;
}
