/*
 * test_kq_rm.c — the LMDB read model's shared layout (lib/kq_rm.c): record
 * round trip and rejection of malformed records, key builders, and opening
 * the environment (parents created; readers told when there is none yet).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kq_err.h"
#include "kq_rm.h"

static void test_resource_round_trip(void **state)
{
    kq_rm_resource r = {7, 1000, 2000, 2, "printer", 7, "3rd floor", 9}, d;
    uint8_t buf[128];
    size_t n = kq_rm_resource_size(&r);
    (void)state;

    assert_true(n <= sizeof buf);
    kq_rm_resource_encode(&r, buf);
    assert_int_equal(kq_rm_resource_decode(buf, n, &d), 0);
    assert_int_equal(d.version, 7);
    assert_int_equal(d.created_at_us, 1000);
    assert_int_equal(d.updated_at_us, 2000);
    assert_int_equal(d.status, 2);
    assert_int_equal(d.name_len, 7);
    assert_memory_equal(d.name, "printer", 7);
    assert_int_equal(d.description_len, 9);
    assert_memory_equal(d.description, "3rd floor", 9);

    /* every truncation and one byte too many are refused */
    for (size_t len = 0; len < n; len++)
        assert_int_equal(kq_rm_resource_decode(buf, len, &d), KQ_ECORRUPT);
    buf[n] = 0;
    assert_int_equal(kq_rm_resource_decode(buf, n + 1, &d), KQ_ECORRUPT);
    /* an unknown status is refused */
    buf[32] = 3;
    assert_int_equal(kq_rm_resource_decode(buf, n, &d), KQ_ECORRUPT);
    assert_int_equal(kq_rm_resource_decode(NULL, 0, &d), KQ_ECORRUPT);
}

static void test_keys(void **state)
{
    char k[64];
    uint8_t pk[600];
    char id[600];
    (void)state;

    assert_int_equal(kq_rm_offset_key("kcqrs.resource.events", 5, k, sizeof k), 23);
    assert_string_equal(k, "kcqrs.resource.events/5");
    assert_int_equal(kq_rm_offset_key("kcqrs.resource.events", 5, k, 10), KQ_ERANGE);
    assert_int_equal(kq_rm_prefixed_key(1, "r1", 2, pk, sizeof pk), 3);
    assert_int_equal(pk[0], 1);
    assert_memory_equal(pk + 1, "r1", 2);
    memset(id, 'a', sizeof id);
    assert_int_equal(kq_rm_prefixed_key(1, id, 510, pk, sizeof pk), 511);
    assert_int_equal(kq_rm_prefixed_key(1, id, 511, pk, sizeof pk), KQ_ERANGE); /* LMDB key max */
    assert_int_equal(kq_rm_prefixed_key(1, "r1", 2, pk, 2), KQ_ERANGE);
}

static void test_doc_record(void **state)
{
    kq_rm_doc d = {42, 3, "{\"id\":\"r\"}", 10}, out;
    uint8_t buf[64], kb[600];
    char big[300];
    (void)state;

    kq_rm_doc_encode(&d, buf);
    assert_int_equal(kq_rm_doc_decode(buf, KQ_RM_DOC_HDR + 10, &out), 0);
    assert_int_equal(out.version, 42);
    assert_int_equal(out.flag, 3);
    assert_int_equal(out.text_len, 10);
    assert_memory_equal(out.text, "{\"id\":\"r\"}", 10);
    assert_int_equal(kq_rm_doc_decode(buf, KQ_RM_DOC_HDR, &out), KQ_ECORRUPT); /* no text */
    assert_int_equal(kq_rm_doc_decode(NULL, 20, &out), KQ_ECORRUPT);
    buf[KQ_RM_DOC_HDR] = '[';
    assert_int_equal(kq_rm_doc_decode(buf, KQ_RM_DOC_HDR + 10, &out), KQ_ECORRUPT);
    buf[KQ_RM_DOC_HDR] = '{';
    buf[KQ_RM_DOC_HDR + 3] = '\0';
    assert_int_equal(kq_rm_doc_decode(buf, KQ_RM_DOC_HDR + 10, &out), KQ_ECORRUPT);

    assert_int_equal(kq_rm_run_wf_key("wf", 2, "run", 3, kb, sizeof kb), 6);
    assert_memory_equal(kb, "\002wfrun", 6);
    assert_int_equal(kq_rm_run_wf_key("wf", 2, "", 0, kb, sizeof kb), 3); /* a prefix */
    assert_int_equal(kq_rm_run_wf_key("", 0, "run", 3, kb, sizeof kb), KQ_ERANGE);
    memset(big, 'a', sizeof big);
    assert_int_equal(kq_rm_run_wf_key(big, 256, "r", 1, kb, sizeof kb), KQ_ERANGE);
    assert_int_equal(kq_rm_run_wf_key(big, 255, big, 255, kb, sizeof kb), 511);
    assert_int_equal(kq_rm_run_wf_key(big, 255, big, 256, kb, sizeof kb), KQ_ERANGE); /* > 511 */
    assert_int_equal(kq_rm_run_wf_key("wf", 2, "run", 3, kb, 5), KQ_ERANGE);
}

static void test_env_open(void **state)
{
    char tmpl[] = "/tmp/kq_rm_test.XXXXXX", dir[256], err[256];
    MDB_env *env = NULL;
    struct stat st;
    (void)state;

    assert_non_null(mkdtemp(tmpl));
    snprintf(dir, sizeof dir, "%s/a/b/readmodel", tmpl);
    /* a reader before any projector: not found, nothing created */
    assert_int_equal(kq_rm_env_open(dir, 1 << 20, 0, &env, err, sizeof err), KQ_ENOTFOUND);
    assert_null(env);
    assert_int_not_equal(stat(dir, &st), 0);
    /* the writer creates missing parents (a fresh KCQRS_LMDB_DIR) */
    assert_int_equal(kq_rm_env_open(dir, 1 << 20, 1, &env, err, sizeof err), 0);
    assert_non_null(env);
    mdb_env_close(env);
    env = NULL;
    assert_int_equal(kq_rm_env_open(dir, 1 << 20, 0, &env, err, sizeof err), 0);
    mdb_env_close(env);
    {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
        assert_int_equal(system(cmd), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resource_round_trip),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_doc_record),
        cmocka_unit_test(test_env_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
