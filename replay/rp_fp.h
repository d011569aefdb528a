/*
 * rp_fp.h — the fingerprint of a read model: an order-independent digest of
 * every row and key, and the diff of two fingerprints (kcqrs-replay verify).
 *
 * Every row is hashed on its own: SHA-256 over the length-prefixed table
 * name, key and value. A table's digest is the SUM of its rows' hashes as
 * 256-bit little-endian integers modulo 2^256 (a multiset hash: the order in
 * which rows are added does not matter, and unlike XOR two equal rows do not
 * cancel out). The whole fingerprint is the sum over its tables. Two read
 * models holding the same rows in any order have the same fingerprint.
 *
 * With keep_rows, the fingerprint also remembers (table, key, row hash) for
 * every row, so rp_fp_diff() can name the first rows that differ. Values are
 * not kept, only their hashes (32 bytes plus the key per row).
 *
 * The caller chooses what a "row" is: for LMDB one key/value pair of a named
 * database, for PostgreSQL one row of a table with its primary key as `key`
 * and its canonical text as `val`. Both sides of a comparison must of course
 * make the same choice.
 */
#ifndef RP_FP_H
#define RP_FP_H

#include <stddef.h>
#include <stdio.h>

#define RP_FP_LEN 32
#define RP_FP_MAX_TABLES 32

typedef struct rp_fp rp_fp;

/* A new, empty fingerprint; NULL when out of memory. */
rp_fp *rp_fp_new(int keep_rows);
void rp_fp_free(rp_fp *f);

/* Add one row. `table` is copied on first use (at most RP_FP_MAX_TABLES). 0 or KQ_ENOMEM/KQ_EINVAL.
 */
int rp_fp_add(rp_fp *f, const char *table, const void *key, size_t klen, const void *val,
              size_t vlen);

/* Declare a table (so an empty table still appears in rp_fp_print). */
int rp_fp_table(rp_fp *f, const char *table);

/* The digest of everything added, and the number of rows. */
void rp_fp_digest(const rp_fp *f, unsigned char out[RP_FP_LEN]);
size_t rp_fp_rows(const rp_fp *f);

/* 1 when both hold the same rows (digest and row count equal). */
int rp_fp_equal(const rp_fp *a, const rp_fp *b);

/*
 * Print one line per table, "<label> <table> rows=N digest=<hex>", then
 * "<label> total rows=N digest=<hex>".
 */
void rp_fp_print(const rp_fp *f, const char *label, FILE *out);

/*
 * Compare `live` with `shadow` (both made with keep_rows) row by row and
 * print up to `max` lines, each one of
 *   "<table> <key>: missing in live"   (the rebuilt model has it, live does not)
 *   "<table> <key>: missing in shadow" (live has a row the log does not explain)
 *   "<table> <key>: differs"
 * in table, then key order; keys are printed with C escapes for bytes outside
 * printable ASCII. Returns the number of differing rows (all of them, not
 * only the printed ones), or -1 when either side did not keep its rows or
 * memory runs out.
 */
long rp_fp_diff(rp_fp *live, rp_fp *shadow, FILE *out, size_t max);

#endif
