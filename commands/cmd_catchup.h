/*
 * cmd_catchup.h — reading the event topics to their end into the command state.
 *
 * What it is for
 *   Before the writer accepts commands, and again after an unknown outcome or
 *   a fatal producer error, it reads every partition of the CMD_TOPICS event
 *   topics (<prefix>.resource.events, .workflow.events, .run.events) to the
 *   end with one read_committed consumer, from the offsets the state (loaded
 *   from the snapshot, or empty) covers: cmd_catchup_run. Each record moves
 *   the chain head of its partition (whatever it holds: a record the writer
 *   cannot apply, or one written by someone else, is still the previous record
 *   of the next event) and is applied to the state by cmd_aggregate_apply
 *   (events already in the state are skipped by version): the one apply path
 *   of the command side, which the writer also takes for each event it
 *   committed (from the bytes it produced), so the state after a commit is
 *   the state a restart would read back.
 *
 *   First the state is checked against the log (cmd_catchup_check_state): a
 *   state of another Kafka cluster, or covering offsets past a partition's
 *   end (a recreated topic), is discarded (with the chain heads) and the log
 *   read from offset 0.
 *
 * What it owns: nothing past a call (its consumer lives inside
 *   cmd_catchup_run). The state, chain, metrics and topic names are the
 *   caller's.
 * Threads: the writer thread.
 */
#ifndef CMD_CATCHUP_H
#define CMD_CATCHUP_H

#include <stddef.h>
#include <stdint.h>

#include "cmd_chain.h"
#include "cmd_state.h"
#include "cmd_wmetrics.h"
#include "kq_kafka.h"

typedef struct cmd_catchup {
    const kq_config *cfg;      /* borrowed */
    const char *const *topics; /* [CMD_TOPICS] names by topic index, borrowed */
    cmd_state *st;             /* the state read into */
    cmd_chain *chain;          /* its chain heads */
    cmd_wmetrics *metrics;     /* Kafka errors are counted here; NULL = not counted */
    int track;                 /* a discarded state records its delta (snapshots are on) */
    int reset;                 /* out: set to 1 when the state was discarded */
} cmd_catchup;

/* Does the state describe the log `rk` reaches? If not, discard it (c->reset).
 * Sets the state's cluster id. 0, or KQ_EKAFKA / KQ_ENOMEM. */
int cmd_catchup_check_state(cmd_catchup *c, rd_kafka_t *rk, char *errstr, size_t errlen);

/* Check the state (above, through `rk`), then read every partition of the
 * event topics to its end. 0, or KQ_ETIMEDOUT (no progress for twice the
 * Kafka timeout), KQ_EKAFKA, KQ_EIO, KQ_ENOMEM with errstr. */
int cmd_catchup_run(cmd_catchup *c, rd_kafka_t *rk, char *errstr, size_t errlen);

#endif
