/*
 * kq_rmtool — look into (and damage) an LMDB read model directly, for the
 * kcqrs-replay end-to-end tests (tests/e2e/replay_lmdb.bats).
 *
 *   kq_rmtool dump DIR          one line per resource, in id order:
 *                               "<id> <status> <version> <name>"
 *   kq_rmtool offsets DIR       one line per stored offset: "<topic>/<partition> <next>"
 *   kq_rmtool del DIR DB KEY    delete KEY (text) from named database DB
 *                               (resources, versions: use "resource:<id>" for
 *                               the versions key of a resource)
 *
 * DIR is the environment directory (e.g. $KCQRS_LMDB_DIR/readmodel or
 * $KCQRS_LMDB_DIR/snapshots/NAME). Exit status: 0 ok, 1 error (not found
 * included), 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "ev_codec.h"
#include "kq_err.h"
#include "kq_rm.h"

static const char usage[] = "usage: kq_rmtool dump DIR\n"
                            "       kq_rmtool offsets DIR\n"
                            "       kq_rmtool del DIR DB KEY\n";

static const char *const status_names[] = {"active", "inactive", "archived"};

static int fail(const char *what, int rc)
{
    fprintf(stderr, "kq_rmtool: %s: %s\n", what, mdb_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    char err[512];
    int rc, del, ret = 0;

    if (argc < 3 || (strcmp(argv[1], "del") == 0 ? argc != 5 : argc != 3) ||
        (strcmp(argv[1], "dump") != 0 && strcmp(argv[1], "offsets") != 0 &&
         strcmp(argv[1], "del") != 0)) {
        fputs(usage, stderr);
        return 2;
    }
    del = strcmp(argv[1], "del") == 0;
    if (kq_rm_env_open(argv[2], (size_t)1 << 30, 0, &env, err, sizeof err) != 0) {
        fprintf(stderr, "kq_rmtool: %s\n", err);
        return 1;
    }
    if ((rc = mdb_txn_begin(env, NULL, del ? 0 : MDB_RDONLY, &txn)) != 0) {
        mdb_env_close(env);
        return fail("begin", rc);
    }
    if (del) {
        uint8_t kb[512];
        const char *key = argv[4];
        int n;

        if ((rc = mdb_dbi_open(txn, argv[3], 0, &dbi)) != 0) {
            ret = fail(argv[3], rc);
            goto out;
        }
        if (strncmp(key, "resource:", 9) == 0) {
            n = kq_rm_prefixed_key((uint8_t)EV_AGG_RESOURCE, key + 9, strlen(key + 9), kb,
                                   sizeof kb);
            if (n < 0) {
                fprintf(stderr, "kq_rmtool: key too long\n");
                ret = 1;
                goto out;
            }
            k.mv_data = kb;
            k.mv_size = (size_t)n;
        } else {
            k.mv_data = (void *)key;
            k.mv_size = strlen(key);
        }
        if ((rc = mdb_del(txn, dbi, &k, NULL)) != 0) {
            ret = fail("del", rc);
            goto out;
        }
        rc = mdb_txn_commit(txn);
        mdb_env_close(env);
        return rc != 0 ? fail("commit", rc) : 0;
    }
    if ((rc =
             mdb_dbi_open(txn, strcmp(argv[1], "dump") == 0 ? KQ_RM_DB_RESOURCES : KQ_RM_DB_OFFSETS,
                          0, &dbi)) != 0 ||
        (rc = mdb_cursor_open(txn, dbi, &cur)) != 0) {
        ret = fail("open", rc);
        goto out;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (strcmp(argv[1], "dump") == 0) {
            kq_rm_resource r;
            if (kq_rm_resource_decode(v.mv_data, v.mv_size, &r) != 0) {
                fprintf(stderr, "kq_rmtool: malformed record\n");
                ret = 1;
                break;
            }
            printf("%.*s %s %lld %.*s\n", (int)k.mv_size, (const char *)k.mv_data,
                   status_names[r.status], (long long)r.version, (int)r.name_len, r.name);
        } else {
            int64_t off = -1;
            if (v.mv_size == sizeof off)
                memcpy(&off, v.mv_data, sizeof off);
            printf("%.*s %lld\n", (int)k.mv_size, (const char *)k.mv_data, (long long)off);
        }
    }
    mdb_cursor_close(cur);
out:
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return ret;
}
