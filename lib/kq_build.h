/*
 * kq_build.h — what was built: the release version and the git commit.
 *
 * The version comes from one place, the VERSION file at the top of the
 * repository; the commit is `git rev-parse --short=12 HEAD` at build time
 * ("unknown" outside a git checkout). Both are baked in by the Makefile,
 * which writes $(BUILD)/gen/kq_build_info.c (rewritten only when one of them
 * changes, so a commit relinks but recompiles one file). Read-only strings,
 * any thread.
 */
#ifndef KQ_BUILD_H
#define KQ_BUILD_H

extern const char kq_build_version[]; /* "0.9.0" */
extern const char kq_build_commit[];  /* 12 hex digits, or "unknown" */

#endif
