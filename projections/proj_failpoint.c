/*
 * proj_failpoint.c — see proj_failpoint.h.
 */
#include "proj_failpoint.h"
#include "kq_log.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fp_name[64];
static long fp_at = 1;        /* crash at the fp_at-th pass */
static atomic_long fp_passes; /* passes so far */
static int fp_on;

void proj_failpoint_init(const char *spec)
{
    const char *colon;
    size_t n;

    fp_on = 0;
    if (spec == NULL || *spec == '\0' || strcmp(spec, "none") == 0)
        return;
    colon = strchr(spec, ':');
    n = colon ? (size_t)(colon - spec) : strlen(spec);
    if (n == 0 || n >= sizeof fp_name)
        return;
    memcpy(fp_name, spec, n);
    fp_name[n] = '\0';
    fp_at = colon ? strtol(colon + 1, NULL, 10) : 1;
    if (fp_at < 1)
        fp_at = 1;
    atomic_store(&fp_passes, 0);
    fp_on = 1;
    kq_log_warn("failpoint armed: SIGKILL at pass %ld of %s", fp_at, fp_name);
}

void proj_failpoint(const char *name)
{
    if (!fp_on || strcmp(name, fp_name) != 0)
        return;
    if (atomic_fetch_add(&fp_passes, 1) + 1 >= fp_at) {
        kq_log_warn("failpoint %s: killing the process", name);
        kill(getpid(), SIGKILL);
    }
}
