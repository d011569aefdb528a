/*
 * test_proj_runner.c — the runner's record checks (projections/
 * proj_runner_batch.c, proj_runner_check_event): what the projector
 * dead-letters before a target sees it (and a replay skips), on crafted
 * records; and the aggregate table both targets dispatch through
 * (proj_aggregate.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kq_kafka.h"
#include "proj_aggregate.h"
#include "proj_runner_int.h"
#include "test_proj_fixture.h"

#define NP 6

/* A record of topic "t.resource.events" holding `buf` under key `key`. */
static void record(proj_event *ev, const uint8_t *buf, size_t len, const char *key, int32_t part)
{
    memset(ev, 0, sizeof *ev);
    ev->topic = "t.resource.events";
    ev->partition = part;
    ev->offset = 7;
    ev->value = buf;
    ev->len = len;
    ev->key = key;
    ev->keylen = key ? strlen(key) : 0;
}

static void test_check_event(void **state)
{
    ev_envelope e;
    proj_event ev;
    uint8_t *buf;
    size_t len;
    char key[128], why[256];
    const char *bad;
    int part = kq_kafka_partition_for("res-1", 5, NP);
    (void)state;

    proj_test_make(&e, &buf, &len, "resource", "res-1", 3, "ResourceUpdated", "{\"name\":\"n\"}");
    assert_true(kq_kafka_record_key("res-1", 3, key, sizeof key) > 0);

    record(&ev, buf, len, key, part); /* valid */
    assert_null(proj_runner_check_event(&ev, EV_AGG_RESOURCE, NP, why, sizeof why));
    assert_int_equal(ev.decoded, 1);
    assert_int_equal(ev.env.version, 3);

    record(&ev, NULL, 0, key, part);
    bad = proj_runner_check_event(&ev, EV_AGG_RESOURCE, NP, why, sizeof why);
    assert_string_equal(bad, "empty value (tombstone or null)");
    assert_int_equal(ev.decoded, 0);

    record(&ev, (const uint8_t *)"not an envelope", 15, key, part);
    bad = proj_runner_check_event(&ev, EV_AGG_RESOURCE, NP, why, sizeof why);
    assert_non_null(bad);
    assert_non_null(strstr(bad, "undecodable envelope"));

    record(&ev, buf, len, key, part); /* a resource event in the workflow topic */
    bad = proj_runner_check_event(&ev, EV_AGG_WORKFLOW, NP, why, sizeof why);
    assert_non_null(bad);
    assert_non_null(strstr(bad, "a resource event (ResourceUpdated) in topic"));

    record(&ev, buf, len, "res-1", part);
    assert_string_equal(proj_runner_check_event(&ev, EV_AGG_RESOURCE, NP, why, sizeof why),
                        "record key is not <aggregate id>/<version:020>");
    assert_true(kq_kafka_record_key("res-1", 4, key, sizeof key) > 0);
    record(&ev, buf, len, key, part);
    assert_string_equal(proj_runner_check_event(&ev, EV_AGG_RESOURCE, NP, why, sizeof why),
                        "record key does not match the envelope's aggregate id and version");

    assert_true(kq_kafka_record_key("res-1", 3, key, sizeof key) > 0);
    record(&ev, buf, len, key, (part + 1) % NP);
    bad = proj_runner_check_event(&ev, EV_AGG_RESOURCE, NP, why, sizeof why);
    assert_non_null(bad);
    assert_non_null(strstr(bad, "aggregate belongs to partition"));
    assert_int_equal(ev.decoded, 0);
    free(buf);
}

/* Every aggregate type has its row: an LMDB apply and a PostgreSQL write
 * (a fold into the merge statement or a statement per event). */
static void test_aggregate_table(void **state)
{
    static const int types[] = {EV_AGG_RESOURCE, EV_AGG_WORKFLOW, EV_AGG_RUN};
    (void)state;

    for (size_t i = 0; i < 3; i++) {
        const proj_aggregate *ag = proj_aggregate_of(types[i]);
        assert_int_equal(ag->type, types[i]);
        assert_string_equal(ag->name, ev_aggregate_type_name(types[i]));
        assert_non_null(ag->lmdb_apply);
        assert_true((ag->pg_fold != NULL) != (ag->pg_stmt != NULL));
    }
    assert_string_equal(proj_aggregate_of(EV_AGG_UNKNOWN)->name, "unknown");
    assert_null(proj_aggregate_of(99)->lmdb_apply);
    assert_null(proj_aggregate_of(-1)->pg_stmt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_event),
        cmocka_unit_test(test_aggregate_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
