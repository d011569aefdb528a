/*
 * rp_cli.h — kcqrs-replay's command line: the command and its options
 * parsed and checked against each other, every refusal a sentence.
 *
 * What it is for
 *   The main (replay/kcqrs_replay.c) wires the result to the targets and
 *   jobs (rp_job.h); what a user may type is decided here, where a unit test
 *   can link it. --until TIME goes through kq_time (lib/kq_time.h), the
 *   parser of the query API's ?since=/?until= and of kcqrs-audit too.
 *
 * On a refusal: KQ_EINVAL with the sentence in errstr (without the program
 * name and " (see --help)", which the main adds).
 *
 * Ownership: the struct borrows argv's strings. Threads: reentrant.
 */
#ifndef RP_CLI_H
#define RP_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "rp_target.h"

#define RP_PROG "kcqrs-replay"
#define RP_MAX_TARGETS 2

/* What a run does. rebuild with --until/--until-offsets is RP_CMD_UNTIL. */
typedef enum rp_cmd { RP_CMD_REBUILD, RP_CMD_UNTIL, RP_CMD_VERIFY, RP_CMD_DROP } rp_cmd;

typedef struct rp_args {
    rp_cmd cmd;
    const rp_target_ops *targets[RP_MAX_TARGETS]; /* --target: lmdb, pg or both */
    size_t ntargets;
    const char *until_time; /* --until as typed, or NULL */
    int64_t until_us;       /* --until parsed */
    const char *until_spec; /* --until-offsets, or NULL (checked later, against topics) */
    const char *name;       /* --name, or NULL */
    int json;               /* --json */
} rp_args;

/* "rebuild" for RP_CMD_REBUILD and RP_CMD_UNTIL, "verify", "drop-snapshot". */
const char *rp_cmd_name(rp_cmd cmd);

/* Parse argv[1..argc) (argv[1] is the command). 0 or KQ_EINVAL. */
int rp_cli_parse(int argc, char **argv, rp_args *a, char *errstr, size_t errlen);

#endif
