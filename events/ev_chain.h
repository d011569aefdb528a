/*
 * ev_chain.h — the per-partition hash chain check of kcqrs-audit verify-chain.
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
 *   - with ev_chain_expect(): a head an operator stored earlier that is the
 *     hash of no record of the partition (the records it covered were
 *     altered or removed). Found at an earlier offset is fine: the log grew.
 *
 * Hash: SHA-256 over the record value exactly as stored (the whole Envelope
 * buffer), OpenSSL libcrypto's EVP interface.
 *
 * Threads: an ev_chain belongs to one thread; the functions are reentrant.
 */
#ifndef EV_CHAIN_H
#define EV_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#define EV_HASH_LEN 32
#define EV_HEX_LEN (2 * EV_HASH_LEN) /* without the NUL */

typedef enum ev_chain_break {
    EV_CHAIN_INTACT = 0,
    EV_CHAIN_TOMBSTONE,     /* null value */
    EV_CHAIN_INVALID,       /* not a valid envelope */
    EV_CHAIN_PREV_MISMATCH, /* prev_hash wrong, missing, or on a first record */
    EV_CHAIN_NOT_IN_CHAIN,  /* forged: its successor chains to the record before it */
    EV_CHAIN_HEAD           /* the expected head is no record's hash */
} ev_chain_break;

typedef struct ev_chain {
    /* results */
    uint64_t records;          /* records fed */
    int has_head;              /* 1 once a record was fed */
    uint8_t head[EV_HASH_LEN]; /* hash of the last record fed */
    int64_t head_offset;       /* its offset (-1: none) */
    ev_chain_break brk;        /* the first break, EV_CHAIN_INTACT if none */
    int64_t brk_offset;        /* its offset */
    char brk_msg[320];         /* "offset N: ..." */
    int expect;                /* ev_chain_expect was called */
    uint8_t expect_hash[EV_HASH_LEN];
    int64_t expect_offset; /* offset whose hash is the expected head; -1 not seen */
    /* private */
    int nprev;                 /* 0, 1 or 2 of h/off below are valid */
    uint8_t h[2][EV_HASH_LEN]; /* h[0]: last record, h[1]: the one before */
    int64_t off[2];
    int pending; /* a mismatch at pend_off waits for its successor */
    int64_t pend_off;
    char pend_msg[320];
} ev_chain;

/* Start checking a partition from its first record. */
void ev_chain_init(ev_chain *c);

/* The head an operator stored (ev_chain_finish checks it). */
void ev_chain_expect(ev_chain *c, const uint8_t hash[EV_HASH_LEN]);

/*
 * Feed the record at `offset` (offsets must increase): `value`/`len` its
 * bytes, value NULL for a tombstone. Returns 0, or KQ_EIO when SHA-256
 * failed (libcrypto). Breaks are recorded in c, not returned.
 */
int ev_chain_add(ev_chain *c, int64_t offset, const void *value, size_t len);

/* After the last record: settle a pending mismatch and the expected head. */
void ev_chain_finish(ev_chain *c);

/* "tombstone", "invalid", "prev_hash", "not_in_chain", "head" ("intact"). */
const char *ev_chain_break_name(ev_chain_break k);

/* SHA-256 of len bytes (buf may be NULL when len is 0). 0 or KQ_EIO. Its
 * text form: kq_hex_encode (lib/kq_rand.h), EV_HEX_LEN digits. */
int ev_chain_sha256(const void *buf, size_t len, uint8_t out[EV_HASH_LEN]);

/* Parse exactly EV_HEX_LEN hex digits (either case). 0 or KQ_EINVAL. */
int ev_chain_hex_parse(const char *s, uint8_t out[EV_HASH_LEN]);

#endif
