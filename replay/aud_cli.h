/*
 * aud_cli.h — kcqrs-audit's command line: the options of `query` and
 * `verify-chain` parsed into structs, every refusal a sentence.
 *
 * What it is for
 *   The main (replay/kcqrs_audit.c) only dispatches on the command and wires
 *   these to aud_query.h / aud_verify.h; what a user may type is decided
 *   here, where a unit test can link it. TIME values go through kq_time
 *   (lib/kq_time.h), the parser of the query API's ?since=/?until= too, so
 *   both accept and refuse the same inputs.
 *
 * Options are "--name value" or "--name=value". On a refusal the functions
 * return KQ_EINVAL with the sentence (without the program name) in errstr;
 * the main prints "kcqrs-audit: <sentence>" and exits 2.
 *
 * Ownership: the structs borrow strings from argv; aud_verify_opts owns its
 * expected heads (aud_verify_opts_free).
 *
 * Threads: reentrant.
 */
#ifndef AUD_CLI_H
#define AUD_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "ev_chain.h"
#include "aud_filter.h"
#include "kq_kafka.h"

#define AUD_PROG "kcqrs-audit"
#define AUD_MAX_EXPECT 1024

/* `query`'s options. */
typedef struct aud_query_opts {
    aud_filter f;    /* what to match */
    int table;       /* --format table (else json) */
    long long limit; /* --limit, -1 when not given */
} aud_query_opts;

/* One --expect-head TOPIC:PARTITION=HEX. */
typedef struct aud_expect {
    char topic[KQ_KAFKA_TOPIC_MAX];
    int32_t partition;
    uint8_t hash[EV_HASH_LEN];
    int used; /* set by aud_verify_run when the partition is read */
} aud_expect;

/* `verify-chain`'s options. */
typedef struct aud_verify_opts {
    int json;       /* --json */
    aud_expect *ex; /* malloc'd, nex of them */
    size_t nex;
} aud_verify_opts;

/*
 * Parse query's options argv[1..argc) (argv[0] is "query") into *o. Also
 * warns (kq_log) when --event-type is not an event of --aggregate-type.
 * 0 or KQ_EINVAL.
 */
int aud_cli_query(int argc, char **argv, aud_query_opts *o, char *errstr, size_t errlen);

/* Parse verify-chain's options argv[1..argc). 0, KQ_EINVAL or KQ_ENOMEM; on
 * failure nothing is left to free. */
int aud_cli_verify(int argc, char **argv, aud_verify_opts *o, char *errstr, size_t errlen);
void aud_verify_opts_free(aud_verify_opts *o);

/* "TOPIC:PARTITION=HEX" (64 hex digits) into *e. 0 or KQ_EINVAL. */
int aud_expect_parse(const char *s, aud_expect *e);

#endif
