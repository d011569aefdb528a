/*
 * aud_chain.h — the per-partition hash chain check of kcqrs-audit verify-chain.
 *
 * What it is for
 *   The command writer stores in every envelope the SHA-256 of the value of
 *   the previous record of its topic-partition (prev_hash; the partition's
 *   first event has none; cmd_writer.h "Hash chain"). This module checks one
 *   partition's records, fed in offset order, against that rule. It is a
 *   pure function of the record stream (no Kafka, no I/O), so the unit tests
 *   drive it with crafted records and the writer's tests use it as the
 *   oracle for what the writer produced.
 *
 * What counts as a break (the FIRST one is kept; later records are still
 *   hashed and counted, so the head is always the hash of the last record)
 *   - a tombstone (null value): an event was erased;
 *   - a record that is not a valid envelope (ev_envelope_decode fails);
 *   - a prev_hash that is not the hash of the previous record, or missing on
 *     a later record, or present on the first one: "offset N: prev_hash does
 *     not match offset M (M altered, or records between removed)";
 *   - a forged record: a record F whose successor chains to the record before
 *     F: "offset F is not part of the chain". A mismatch is therefore decided
 *     one record late (a forger may give F a wrong prev_hash; its successor
 *     then tells the two cases apart);
 *   - with aud_chain_expect(): a head an operator stored earlier that is the
 *     hash of no record of the partition (the records it covered were
 *     altered or removed). Found at an earlier offset is fine: the log grew.
 *
 * Hash: SHA-256 over the record value exactly as stored (the whole Envelope
 * buffer), OpenSSL libcrypto's EVP interface.
 *
 * Threads: an aud_chain belongs to one thread; the functions are reentrant.
 */
#ifndef AUD_CHAIN_H
#define AUD_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#define AUD_HASH_LEN 32
#define AUD_HEX_LEN (2 * AUD_HASH_LEN) /* without the NUL */

typedef enum aud_break_kind {
    AUD_INTACT = 0,
    AUD_TOMBSTONE,     /* null value */
    AUD_INVALID,       /* not a valid envelope */
    AUD_PREV_MISMATCH, /* prev_hash wrong, missing, or on a first record */
    AUD_NOT_IN_CHAIN,  /* forged: its successor chains to the record before it */
    AUD_HEAD           /* the expected head is no record's hash */
} aud_break_kind;

typedef struct aud_chain {
    /* results */
    uint64_t records;           /* records fed */
    int has_head;               /* 1 once a record was fed */
    uint8_t head[AUD_HASH_LEN]; /* hash of the last record fed */
    int64_t head_offset;        /* its offset (-1: none) */
    aud_break_kind brk;         /* the first break, AUD_INTACT if none */
    int64_t brk_offset;         /* its offset */
    char brk_msg[320];          /* "offset N: ..." */
    int expect;                 /* aud_chain_expect was called */
    uint8_t expect_hash[AUD_HASH_LEN];
    int64_t expect_offset; /* offset whose hash is the expected head; -1 not seen */
    /* private */
    int nprev;                  /* 0, 1 or 2 of h/off below are valid */
    uint8_t h[2][AUD_HASH_LEN]; /* h[0]: last record, h[1]: the one before */
    int64_t off[2];
    int pending; /* a mismatch at pend_off waits for its successor */
    int64_t pend_off;
    char pend_msg[320];
} aud_chain;

/* Start checking a partition from its first record. */
void aud_chain_init(aud_chain *c);

/* The head an operator stored (aud_chain_finish checks it). */
void aud_chain_expect(aud_chain *c, const uint8_t hash[AUD_HASH_LEN]);

/*
 * Feed the record at `offset` (offsets must increase): `value`/`len` its
 * bytes, value NULL for a tombstone. Returns 0, or KQ_EIO when SHA-256
 * failed (libcrypto). Breaks are recorded in c, not returned.
 */
int aud_chain_add(aud_chain *c, int64_t offset, const void *value, size_t len);

/* After the last record: settle a pending mismatch and the expected head. */
void aud_chain_finish(aud_chain *c);

/* "tombstone", "invalid", "prev_hash", "not_in_chain", "head" ("intact"). */
const char *aud_break_name(aud_break_kind k);

/* SHA-256 of len bytes (buf may be NULL when len is 0). 0 or KQ_EIO. Its
 * text form: kq_hex_encode (lib/kq_rand.h), AUD_HEX_LEN digits. */
int aud_sha256(const void *buf, size_t len, uint8_t out[AUD_HASH_LEN]);

/* Parse exactly AUD_HEX_LEN hex digits (either case). 0 or KQ_EINVAL. */
int aud_hex_parse(const char *s, uint8_t out[AUD_HASH_LEN]);

#endif
