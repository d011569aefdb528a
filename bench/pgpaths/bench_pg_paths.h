/*
 * bench_pg_paths.h — the PostgreSQL target's write paths it was measured
 * against (projections/proj_pg.c explains the choice), kept for
 * bench/bench_pg_apply and tests/tools/kq_pgapply. kcqrs-projector and
 * kcqrs-replay always write with PROJ_PG_PATH_COPY (proj_pg_write_merge).
 *
 * Every path writes the same rows; tests/e2e/projector_pg.bats runs the
 * content tests on all three.
 *
 * Owns: nothing (the paths run on the proj_pg's connection and buffers).
 * Threads: the proj_pg's.
 */
#ifndef BENCH_PG_PATHS_H
#define BENCH_PG_PATHS_H

#include <stddef.h>

#include "proj_pg.h"

typedef enum proj_pg_path {
    PROJ_PG_PATH_COPY = 0,         /* COPY into events + one merge statement from arrays */
    PROJ_PG_PATH_PIPELINE = 1,     /* pipeline mode, one prepared statement per row */
    PROJ_PG_PATH_COPY_STAGING = 2, /* COPY into events and into temporary staging tables */
} proj_pg_path;

/* Choose the write path of pg and synchronous_commit (default off, see
 * proj_pg.c for why that keeps exactly-once). 0 or KQ_EINVAL / KQ_EPG. */
int proj_pg_set_path(proj_pg *pg, proj_pg_path path, int synchronous_commit, char *errstr,
                     size_t errlen);

#endif
