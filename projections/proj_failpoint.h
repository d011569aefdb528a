/*
 * proj_failpoint.h — named crash points for the crash-safety tests.
 *
 * proj_failpoint("pg_before_commit") kills the process with SIGKILL when
 * KCQRS_FAILPOINT names that point (optionally "name:N" to crash at the N-th
 * pass). Call proj_failpoint_init() once from main(); when the variable is
 * "none" (the default) a failpoint costs one load and a branch.
 *
 * Points: lmdb_after_put, lmdb_before_commit, lmdb_after_commit,
 * pg_after_insert, pg_before_commit, pg_after_commit, dlq_after_produce.
 */
#ifndef PROJ_FAILPOINT_H
#define PROJ_FAILPOINT_H

void proj_failpoint_init(const char *spec);
void proj_failpoint(const char *name);

#endif
