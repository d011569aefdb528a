/*
 * kq_version.c — see kq_version.h. The two strings themselves are generated
 * by the Makefile (build/gen/kq_version_gen.c).
 */
#include "kq_version.h"

void kq_version_print(FILE *out, const char *prog)
{
    fprintf(out, "%s %s (commit %s)\n", prog, kq_version, kq_version_commit);
}
