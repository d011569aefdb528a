/*
 * rp_until.h — kcqrs-replay's bounds: snapshot names, SPEC parsing
 * (replay/README.md), and TIME -> per-partition exclusive end offsets (TIME
 * itself is parsed by lib/kq_time.h, as everywhere).
 */
#ifndef RP_UNTIL_H
#define RP_UNTIL_H

#include <stddef.h>
#include <stdint.h>

#include "kq_config.h"
#include "proj_batch.h"

#define RP_NAME_MAX 32

/* 1 when `name` is [a-z0-9_]{1,32}. */
int rp_name_valid(const char *name);

/*
 * SPEC: "topic:partition=next_offset[,...]". Each topic must be one of
 * topics[0..ntopics), each partition in [0, np), each offset >= 0, no
 * partition twice. Fills out[0..*n) (at most max; topic points into
 * topics[]). 0 or KQ_EINVAL with the reason in errstr.
 */
int rp_parse_offsets(const char *spec, const char *const *topics, int ntopics, int np,
                     proj_offset *out, size_t max, size_t *n, char *errstr, size_t errlen);

/* The default snapshot name of a bound: "until_YYYYmmddtHHMMSS" (UTC). */
void rp_default_name(int64_t us, char *out, size_t len);

/*
 * TIME -> exclusive end offsets of every partition of the three event topics
 * (out holds 3 * cfg->partitions; *n set): per partition
 * rd_kafka_offsets_for_times at floor(us / 1000) ms (Kafka's record
 * timestamp, set when the command service produces, is never earlier than
 * the envelope's occurred_at), then reading forward (read_committed) to the
 * first record whose envelope has occurred_at_us > us: its offset is the
 * end; none before the end of the partition: the end offset. Records that do
 * not decode are passed over. `topics` holds the three names (kept by the
 * caller; out[].topic points into it). 0, KQ_EKAFKA, KQ_ETIMEDOUT.
 */
int rp_until_resolve(const kq_config *cfg, const char *const *topics, int64_t us, proj_offset *out,
                     size_t *n, char *errstr, size_t errlen);

/*
 * The bounds of a snapshot: --until-offsets SPEC (spec != NULL, parsed as
 * above) or else --until TIME (`us`, resolved as above), into out (3 *
 * cfg->partitions entries; *n set); when *name is NULL it becomes the
 * default name of the bound (for SPEC: of now) written into defname. The
 * resolved offsets are logged. 0; KQ_EINVAL (bad SPEC) or the errors of
 * rp_until_resolve, with errstr.
 */
int rp_until_bounds(const kq_config *cfg, const char *const *topics, const char *spec, int64_t us,
                    proj_offset *out, size_t *n, const char **name, char *defname, size_t deflen,
                    char *errstr, size_t errlen);

#endif
