/*
 * proj_redrive.h — `kcqrs-dlq redrive`: dead letters applied again to the
 * read model that refused them, through the projector's own apply code.
 *
 * What it is for
 *   A dead letter names a record that is still in its event topic at its
 *   origin offset, and the target ("lmdb" or "pg") that refused it. Redrive
 *   appends NOTHING to any topic: for each dead letter it reads the record at
 *   its origin, checks it as the projector's runner does
 *   (proj_runner_check_event: decodes, belongs to the topic's aggregate type,
 *   key matches, right partition), looks up the version that target holds
 *   for the aggregate, and applies the record to that target only when that
 *   version is exactly one below the record's (absent counts as 0), in one
 *   batch of one event through proj_lmdb_apply / proj_pg_apply, with no
 *   offsets (the projector is past that offset already). The apply code
 *   checks the version again inside its transaction (under the read-model
 *   lock, so a running projector is serialised with it); if it refuses, the
 *   record is reported as skipped with its reason and nothing is written (no
 *   new dead letter either). Everything else is skipped with the reason: a
 *   target already at or past the version (it has the event), a gap, an
 *   origin that is gone or not an event topic, a record that does not pass
 *   the runner's check, a DLQ record that is not a dead letter.
 *
 * Each (origin, target) is taken once, the last dead letter of it winning (as
 *   compaction keeps it). With dry_run nothing is opened for writing: the
 *   answer is "would apply" or "skipped" from the same lookups.
 *
 * Output: one line per dead letter, tab-separated:
 *   ORIGIN TARGET applied|would_apply|skipped DETAIL
 * DETAIL names the aggregate, the record's version and the target's.
 *
 * Threads: the caller's. Errors: 0, or KQ_EKAFKA / KQ_ETIMEDOUT (reading
 * Kafka), KQ_ELMDB / KQ_EPG / KQ_EIO (a target could not be opened or
 * written; the item is reported and the run stops), KQ_ENOMEM.
 */
#ifndef PROJ_REDRIVE_H
#define PROJ_REDRIVE_H

#include <stddef.h>
#include <stdio.h>

#include "kq_config.h"

typedef struct proj_redrive_counts {
    long applied, would_apply, skipped;
} proj_redrive_counts;

/* Redrive every dead letter (or only those of `origin`, TOPIC/PARTITION/OFFSET, when not NULL). */
int proj_redrive_run(const kq_config *cfg, int dry_run, const char *origin, FILE *out,
                     proj_redrive_counts *counts, char *errstr, size_t errlen);

#endif
