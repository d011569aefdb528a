/*
 * kq_version.h — the version and the git commit of the build.
 *
 * The version has one home: the file VERSION at the top of the tree. The
 * Makefile writes both strings into a generated source
 * (build/gen/kq_version_gen.c) at every build, rewriting it only when they
 * change, so a new commit relinks the binaries and nothing else. `commit` is the short
 * hash of HEAD, with "-dirty" when tracked files differ from it, or "unknown"
 * outside a git checkout. Both are constant strings; any thread may read them.
 */
#ifndef KQ_VERSION_H
#define KQ_VERSION_H

#include <stdio.h>

extern const char kq_version[];        /* "0.3.0", from VERSION */
extern const char kq_version_commit[]; /* "1a2b3c4d5e6f", "...-dirty" or "unknown" */

/* One line: "<prog> <version> (commit <commit>)\n". */
void kq_version_print(FILE *out, const char *prog);

#endif
