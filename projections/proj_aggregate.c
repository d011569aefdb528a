/*
 * proj_aggregate.c — the table of proj_aggregate.h.
 */
#include "proj_aggregate.h"

static const proj_aggregate aggregates[] = {
    {EV_AGG_UNKNOWN, "unknown", NULL, NULL, NULL, NULL},
    {EV_AGG_RESOURCE, "resource", proj_lmdb_resource_apply, NULL, proj_pg_resource_fold, NULL},
    {EV_AGG_WORKFLOW, "workflow", proj_lmdb_workflow_apply, proj_pg_wfrun_check, NULL,
     proj_pg_workflow_stmt},
    {EV_AGG_RUN, "run", proj_lmdb_run_apply, proj_pg_wfrun_check, NULL, proj_pg_run_stmt},
};

const proj_aggregate *proj_aggregate_of(int type)
{
    if (type <= 0 || (size_t)type >= sizeof aggregates / sizeof aggregates[0])
        return &aggregates[0];
    return &aggregates[type];
}
