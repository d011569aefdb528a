/*
 * rp_cli.c — kcqrs-replay's command line; see rp_cli.h.
 */
#include "rp_cli.h"

#include <string.h>

#include "kq_err.h"
#include "kq_time.h"
#include "rp_until.h"

static const char *const cmd_names[] = {"rebuild", "rebuild", "verify", "drop-snapshot"};

const char *rp_cmd_name(rp_cmd cmd)
{
    return cmd_names[cmd];
}

int rp_cli_parse(int argc, char **argv, rp_args *a, char *errstr, size_t errlen)
{
    const char *target = NULL;

    memset(a, 0, sizeof *a);
    if (argc < 2)
        return kq_seterr(errstr, errlen, KQ_EINVAL,
                         "missing command: rebuild, verify or drop-snapshot");
    if (strcmp(argv[1], "rebuild") == 0)
        a->cmd = RP_CMD_REBUILD;
    else if (strcmp(argv[1], "verify") == 0)
        a->cmd = RP_CMD_VERIFY;
    else if (strcmp(argv[1], "drop-snapshot") == 0)
        a->cmd = RP_CMD_DROP;
    else
        return kq_seterr(errstr, errlen, KQ_EINVAL, "unknown command '%s'", argv[1]);
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        const char **dst = NULL;

        if (strcmp(arg, "--json") == 0) {
            a->json = 1;
            continue;
        }
        if (strcmp(arg, "--target") == 0)
            dst = &target;
        else if (strcmp(arg, "--until") == 0)
            dst = &a->until_time;
        else if (strcmp(arg, "--until-offsets") == 0)
            dst = &a->until_spec;
        else if (strcmp(arg, "--name") == 0)
            dst = &a->name;
        else
            return kq_seterr(errstr, errlen, KQ_EINVAL, "unexpected argument '%s'", arg);
        if (i + 1 >= argc)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "%s needs a value", arg);
        if (*dst != NULL)
            return kq_seterr(errstr, errlen, KQ_EINVAL, "%s given twice", arg);
        *dst = argv[++i];
    }
    if (target == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "--target lmdb|pg|all is required");
    if (strcmp(target, "lmdb") == 0 || strcmp(target, "all") == 0)
        a->targets[a->ntargets++] = &rp_lmdb_ops;
    if (strcmp(target, "pg") == 0 || strcmp(target, "all") == 0)
        a->targets[a->ntargets++] = &rp_pg_ops;
    if (a->ntargets == 0)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "--target must be lmdb, pg or all, not '%s'",
                         target);
    if (a->until_time != NULL && a->until_spec != NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL,
                         "--until and --until-offsets exclude each other");
    if (a->until_time != NULL || a->until_spec != NULL) {
        if (a->cmd != RP_CMD_REBUILD)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "--until/--until-offsets go with rebuild only");
        a->cmd = RP_CMD_UNTIL;
    }
    if (a->name != NULL && a->cmd != RP_CMD_UNTIL && a->cmd != RP_CMD_DROP)
        return kq_seterr(errstr, errlen, KQ_EINVAL,
                         "--name goes with --until, --until-offsets or drop-snapshot");
    if (a->cmd == RP_CMD_DROP && a->name == NULL)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "drop-snapshot needs --name NAME");
    if (a->cmd == RP_CMD_DROP && a->json)
        return kq_seterr(errstr, errlen, KQ_EINVAL, "--json is not for drop-snapshot");
    if (a->name != NULL && !rp_name_valid(a->name))
        return kq_seterr(errstr, errlen, KQ_EINVAL, "--name '%s' is not [a-z0-9_]{1,32}", a->name);
    if (a->until_time != NULL)
        return kq_time_parse_err(a->until_time, &a->until_us, errstr, errlen);
    return 0;
}
