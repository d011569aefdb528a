/*
 * aud_verify.h — `kcqrs-audit verify-chain`: every partition of the three
 * event topics through the hash chain (ev_chain.h), and the report.
 *
 * What it is for
 *   The verify-chain command's work, linkable by tests: one ev_chain per
 *   partition, the expected heads of --expect-head attached to theirs, one
 *   read of the log (aud_read.h), then the report: one line per partition
 *   "TOPIC:PARTITION=HEAD records=N intact" (or "BROKEN <kind> at offset O:
 *   <why>") and a summary line, or with --json one JSON document
 *   {"intact", "records", "partitions": [{topic, partition, records,
 *   end_offset, head, head_offset, intact, break}]}.
 *
 * Threads: the caller's; one call at a time.
 */
#ifndef AUD_VERIFY_H
#define AUD_VERIFY_H

#include <stddef.h>
#include <stdio.h>

#include "aud_cli.h"
#include "kq_config.h"

/*
 * Verify every partition and print the report to `out`. 0 with *broken set
 * (0: every chain intact, 1: some partition broken); KQ_EINVAL when an
 * --expect-head names no partition of the event topics; KQ_EKAFKA /
 * KQ_ETIMEDOUT / KQ_ENOMEM / KQ_EIO (writing `out`). errstr says which.
 * Marks o->ex[].used.
 */
int aud_verify_run(const kq_config *cfg, aud_verify_opts *o, FILE *out, int *broken, char *errstr,
                   size_t errlen);

#endif
