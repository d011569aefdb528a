/*
 * test_cmd_wmetrics.c — the writer's metrics (cmd_wmetrics.h): batch sizes
 * and commit times land in the right cumulative buckets, the hand-over keeps
 * its sum, count and maximum, the aggregate label comes from the table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_aggregate.h"
#include "cmd_wmetrics.h"

static char *print(cmd_wmetrics *m, int ready, int fenced)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    cmd_wmetrics_print(m, f, NULL, ready, fenced);
    fclose(f);
    return out;
}

static void has(const char *text, const char *line)
{
    if (strstr(text, line) == NULL)
        fail_msg("no '%s' in\n%s", line, text);
}

static void test_buckets(void **state)
{
    cmd_wmetrics m;
    char *t;

    (void)state;
    memset(&m, 0, sizeof m);
    cmd_wmetrics_batch(&m, 1);       /* le=1 */
    cmd_wmetrics_batch(&m, 3);       /* le=4 */
    cmd_wmetrics_batch(&m, 4);       /* le=4 */
    cmd_wmetrics_batch(&m, 5000);    /* +Inf */
    cmd_wmetrics_commit(&m, 0.0004); /* le=0.0005 */
    cmd_wmetrics_commit(&m, 0.003);  /* le=0.004 */
    cmd_wmetrics_commit(&m, 9.0);    /* +Inf */
    cmd_wmetrics_handover(&m, 300);
    cmd_wmetrics_handover(&m, 100);
    atomic_fetch_add(&m.events_by[CMD_TOPIC_RUN], 7);
    t = print(&m, 1, 0);
    has(t, "kcqrs_commands_batch_size_bucket{le=\"1\"} 1\n");
    has(t, "kcqrs_commands_batch_size_bucket{le=\"2\"} 1\n");
    has(t, "kcqrs_commands_batch_size_bucket{le=\"4\"} 3\n");
    has(t, "kcqrs_commands_batch_size_bucket{le=\"2048\"} 3\n");
    has(t, "kcqrs_commands_batch_size_bucket{le=\"+Inf\"} 4\n");
    has(t, "kcqrs_commands_batch_size_sum 5008\nkcqrs_commands_batch_size_count 4\n");
    has(t, "kcqrs_commands_commit_seconds_bucket{le=\"0.0005\"} 1\n");
    has(t, "kcqrs_commands_commit_seconds_bucket{le=\"0.002\"} 1\n");
    has(t, "kcqrs_commands_commit_seconds_bucket{le=\"0.004\"} 2\n");
    has(t, "kcqrs_commands_commit_seconds_bucket{le=\"+Inf\"} 3\n");
    has(t, "kcqrs_commands_commit_seconds_count 3\n");
    has(t, "kcqrs_commands_aggregate_events_appended_total{aggregate=\"run\"} 7\n");
    has(t, "kcqrs_commands_aggregate_events_appended_total{aggregate=\"resource\"} 0\n");
    has(t, "kcqrs_commands_ready 1\n");
    has(t, "kcqrs_commands_fenced 0\n");
    assert_null(strstr(t, "snapshot")); /* no snapshotter: no snapshot metrics */
    assert_int_equal(atomic_load(&m.handover_max_us), 300);
    assert_int_equal(atomic_load(&m.handover_sum_us), 400);
    assert_int_equal(atomic_load(&m.handovers), 2);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
