/* proj_pg.c — PostgreSQL target of kcqrs-projector; see proj_pg.h. (first cut) */
#include "proj_pg.h"
#include "kq_err.h"

#include <stdlib.h>

struct proj_pg {
    int unused;
};

int proj_pg_open(const kq_config *cfg, proj_pg **out, char *errstr, size_t errlen)
{
    (void)cfg;
    *out = NULL;
    return kq_seterr(errstr, errlen, KQ_EUNSUPPORTED, "postgresql target: not built yet");
}

int proj_pg_load_offsets(proj_pg *pg, proj_offset_fn cb, void *arg, char *errstr, size_t errlen)
{
    return kq_seterr(errstr, errlen, KQ_EUNSUPPORTED, "postgresql target: not built yet");
}

int proj_pg_apply(proj_pg *pg, const proj_batch *b, proj_dead_letter_fn dl, void *dlarg,
                  char *errstr, size_t errlen)
{
    return kq_seterr(errstr, errlen, KQ_EUNSUPPORTED, "postgresql target: not built yet");
}

void proj_pg_close(proj_pg *pg)
{
    free(pg);
}
