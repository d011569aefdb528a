/*
 * aud_query.h — `kcqrs-audit query`: read the chosen partitions, keep the
 * events that pass the filters, print them oldest first.
 *
 * What it is for
 *   The query command's work, linkable by tests: which topics and
 *   partitions to read (--aggregate-type or --event-type name one topic,
 *   --aggregate-id one partition), the filters record by record
 *   (aud_filter.h: key, event_type header, then the envelope), the order
 *   (occurred_at, then topic, partition, offset), --limit, and the two
 *   output forms: JSON lines (the envelope as kcqrs-events decode prints it
 *   plus topic, partition, offset) or an aligned table (time, type, id,
 *   version, event type, actor). Records that are tombstones or do not
 *   decode are named on stderr and skipped.
 *
 * Threads: the caller's; one call at a time.
 */
#ifndef AUD_QUERY_H
#define AUD_QUERY_H

#include <stddef.h>
#include <stdio.h>

#include "aud_cli.h"
#include "kq_config.h"

/*
 * Run the query of `o` against the log of `cfg`, printing the results to
 * `out`. 0; KQ_EKAFKA / KQ_ETIMEDOUT (reading), KQ_ENOMEM, KQ_EIO (writing
 * `out`) with a sentence in errstr.
 */
int aud_query_run(const kq_config *cfg, const aud_query_opts *o, FILE *out, char *errstr,
                  size_t errlen);

#endif
