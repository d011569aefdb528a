/*
 * test_proj_doc.c — the workflow and run documents (projections/proj_doc.c)
 * folded from crafted envelopes (JSON envelopes encoded with ev_json_encode,
 * as `kcqrs-events encode` does), exactly as the query API serves them; the
 * refusals (payload_json not an object, a step beyond the run's steps, an
 * event before RunStarted); and the LMDB target writing them with their
 * indexes, read back through qry_rm (point reads, listings by enabled, by
 * workflow, by status, both filters, pages), a gap dead-lettered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ev_codec.h"
#include "ev_fb.h"
#include "ev_json.h"
#include "kq_err.h"
#include "kq_rm.h"
#include "proj_doc.h"
#include "proj_lmdb.h"
#include "qry_rm.h"

#include "test_proj_fixture.h"

/* An envelope of aggregate `agg` (see proj_test_make). */
static void make(ev_envelope *e, uint8_t **buf, const char *agg, const char *id, int64_t v,
                 const char *type, const char *payload)
{
    proj_test_make(e, buf, NULL, agg, id, v, type, payload);
}

/* Fold one event into *doc; returns the outcome. */
static int fold(json_t **doc, const char *agg, const char *id, int64_t v, const char *type,
                const char *payload, const char **why)
{
    ev_envelope e;
    uint8_t *buf;
    int rc;

    make(&e, &buf, agg, id, v, type, payload);
    *why = NULL;
    rc = strcmp(agg, "run") == 0 ? proj_doc_run(doc, &e, why) : proj_doc_workflow(doc, &e, why);
    free(buf);
    return rc;
}

static void assert_doc(const json_t *doc, const char *want)
{
    size_t len;
    char *s = proj_doc_dump(doc, &len);

    assert_non_null(s);
    if (strcmp(s, want) != 0)
        fail_msg("document\n got: %s\nwant: %s", s, want);
    free(s);
}

#define STEPS                                                                                      \
    "[{\"name\":\"hook\",\"action_type\":\"HttpAction\",\"action\":{\"method\":\"PUT\","           \
    "\"url\":\"https://h.example/x\",\"headers\":[{\"name\":\"X-A\",\"value\":\"1\"}],"            \
    "\"body_template\":\"{{payload.a}}\"}},"                                                       \
    "{\"action_type\":\"EmailAction\",\"action\":{\"to\":[\"a@b.c\"],\"subject\":\"S\"}}]"
#define ACTIONS                                                                                    \
    "[{\"type\":\"http\",\"name\":\"hook\",\"method\":\"PUT\",\"url\":\"https://h.example/x\","    \
    "\"headers\":{\"X-A\":\"1\"},\"body_template\":\"{{payload.a}}\"},"                            \
    "{\"type\":\"email\",\"to\":[\"a@b.c\"],\"subject\":\"S\"}]"

static void test_workflow_document(void **state)
{
    json_t *doc = NULL;
    const char *why;
    (void)state;

    assert_int_equal(fold(&doc, "workflow", "wf1", 1, "WorkflowCreated",
                          "{\"name\":\"W\",\"webhook_secret\":\"topsecret\",\"steps\":" STEPS "}",
                          &why),
                     PROJ_DOC_OK);
    assert_doc(doc, "{\"id\":\"wf1\",\"name\":\"W\",\"enabled\":true,\"actions\":" ACTIONS
                    ",\"version\":1,\"created_at\":\"2025-11-21T23:16:41.000123Z\","
                    "\"updated_at\":\"2025-11-21T23:16:41.000123Z\"}");
    assert_int_equal(proj_doc_workflow_enabled(doc), 1);
    assert_int_equal(fold(&doc, "workflow", "wf1", 2, "WorkflowDisabled", "{}", &why), PROJ_DOC_OK);
    assert_int_equal(proj_doc_workflow_enabled(doc), 0);
    /* secret-only update: version and time move, nothing else; never the secret */
    assert_int_equal(
        fold(&doc, "workflow", "wf1", 3, "WorkflowUpdated", "{\"webhook_secret\":\"other\"}", &why),
        PROJ_DOC_OK);
    assert_int_equal(fold(&doc, "workflow", "wf1", 4, "WorkflowUpdated",
                          "{\"name\":\"W2\",\"steps\":[{\"action_type\":\"HttpAction\","
                          "\"action\":{\"url\":\"http://x.example\"}}]}",
                          &why),
                     PROJ_DOC_OK);
    assert_int_equal(fold(&doc, "workflow", "wf1", 5, "WorkflowEnabled", "{}", &why), PROJ_DOC_OK);
    assert_doc(doc, "{\"id\":\"wf1\",\"name\":\"W2\",\"enabled\":true,\"actions\":[{\"type\":"
                    "\"http\",\"method\":\"POST\",\"url\":\"http://x.example\"}],\"version\":5,"
                    "\"created_at\":\"2025-11-21T23:16:41.000123Z\","
                    "\"updated_at\":\"2025-11-21T23:16:45.000123Z\"}");
    assert_int_equal(fold(&doc, "workflow", "wf1", 6, "WorkflowDeleted", "{}", &why),
                     PROJ_DOC_DELETED);
    assert_null(doc);
    assert_int_equal(fold(&doc, "workflow", "wf1", 7, "WorkflowEnabled", "{}", &why),
                     PROJ_DOC_SKIP);
    assert_null(doc);
    /* a run event is not a workflow's */
    assert_int_equal(fold(&doc, "workflow", "wf1", 1, "RunSucceeded", "{}", &why),
                     PROJ_DOC_REFUSED);
    assert_non_null(why);
}

#define RUN_STARTED                                                                                \
    "{\"workflow_id\":\"wf1\",\"workflow_version\":3,\"trigger\":\"webhook\","                     \
    "\"payload_json\":\"{\\\"a\\\":{\\\"b\\\":[1,2]},\\\"s\\\":\\\"x\\\"}\",\"step_count\":2,"     \
    "\"steps\":" STEPS ",\"signing_secret\":\"topsecret\"}"

static void test_run_document(void **state)
{
    json_t *doc = NULL;
    const char *why;
    (void)state;

    assert_int_equal(fold(&doc, "run", "r1", 1, "RunStarted", RUN_STARTED, &why), PROJ_DOC_OK);
    assert_int_equal(proj_doc_run_status(doc), EV_RUN_IS_PENDING);
    assert_doc(doc,
               "{\"id\":\"r1\",\"workflow_id\":\"wf1\",\"workflow_version\":3,\"trigger\":"
               "\"webhook\",\"status\":\"pending\",\"payload\":{\"a\":{\"b\":[1,2]},\"s\":\"x\"},"
               "\"version\":1,\"created_at\":\"2025-11-21T23:16:41.000123Z\",\"updated_at\":"
               "\"2025-11-21T23:16:41.000123Z\",\"steps\":[{\"index\":0,\"name\":\"hook\",\"type\":"
               "\"http\",\"status\":\"pending\",\"attempts\":[]},{\"index\":1,\"type\":\"email\","
               "\"status\":\"pending\",\"attempts\":[]}]}");
    assert_int_equal(fold(&doc, "run", "r1", 2, "StepAttempted",
                          "{\"step\":0,\"attempt\":1,\"status_code\":503,\"duration_ms\":12,"
                          "\"next_delay_ms\":1000,\"delivery_id\":\"r1.0\"}",
                          &why),
                     PROJ_DOC_OK);
    assert_int_equal(proj_doc_run_status(doc), EV_RUN_IS_RUNNING);
    assert_int_equal(fold(&doc, "run", "r1", 3, "StepAttempted",
                          "{\"step\":0,\"attempt\":2,\"status_code\":200,\"duration_ms\":7,"
                          "\"delivery_id\":\"r1.0\"}",
                          &why),
                     PROJ_DOC_OK);
    assert_int_equal(fold(&doc, "run", "r1", 4, "StepSucceeded",
                          "{\"step\":0,\"attempt\":2,\"status_code\":200}", &why),
                     PROJ_DOC_OK);
    assert_int_equal(fold(&doc, "run", "r1", 5, "StepAttempted",
                          "{\"step\":1,\"attempt\":1,\"error\":\"connection refused\","
                          "\"duration_ms\":3,\"delivery_id\":\"r1.1\"}",
                          &why),
                     PROJ_DOC_OK);
    /* the run fold (ev_run.h): a step other than the current one is refused,
     * the document unchanged (the target dead-letters the event) */
    {
        json_t *before = json_deep_copy(doc);
        assert_int_equal(fold(&doc, "run", "r1", 6, "StepFailed",
                              "{\"step\":2,\"attempt\":1,\"error\":\"x\"}", &why),
                         PROJ_DOC_REFUSED);
        assert_non_null(why);
        assert_true(json_equal(doc, before));
        /* an attempt out of order (attempt 3 after 1) too */
        assert_int_equal(fold(&doc, "run", "r1", 6, "StepAttempted",
                              "{\"step\":1,\"attempt\":3,\"duration_ms\":1}", &why),
                         PROJ_DOC_REFUSED);
        assert_true(json_equal(doc, before));
        json_decref(before);
    }
    assert_int_equal(fold(&doc, "run", "r1", 6, "StepFailed",
                          "{\"step\":1,\"attempt\":1,\"error\":\"connection refused\"}", &why),
                     PROJ_DOC_OK);
    /* StepFailed fails the run at once */
    assert_int_equal(proj_doc_run_status(doc), EV_RUN_IS_FAILED);
    assert_int_equal(fold(&doc, "run", "r1", 7, "RunFailed",
                          "{\"step\":1,\"error\":\"connection refused\"}", &why),
                     PROJ_DOC_OK);
    assert_int_equal(proj_doc_run_status(doc), EV_RUN_IS_FAILED);
    assert_doc(
        doc,
        "{\"id\":\"r1\",\"workflow_id\":\"wf1\",\"workflow_version\":3,\"trigger\":\"webhook\","
        "\"status\":\"failed\",\"payload\":{\"a\":{\"b\":[1,2]},\"s\":\"x\"},\"error\":"
        "\"connection refused\",\"version\":7,\"created_at\":\"2025-11-21T23:16:41.000123Z\","
        "\"updated_at\":\"2025-11-21T23:16:47.000123Z\",\"steps\":[{\"index\":0,\"name\":\"hook\","
        "\"type\":\"http\",\"status\":\"succeeded\",\"attempts\":[{\"attempt\":1,\"status_code\":"
        "503,\"at\":\"2025-11-21T23:16:42.000123Z\",\"duration_ms\":12,\"next_delay_ms\":1000,"
        "\"delivery_id\":\"r1.0\"},{\"attempt\":2,\"status_code\":200,\"at\":"
        "\"2025-11-21T23:16:43.000123Z\",\"duration_ms\":7,\"next_delay_ms\":null,"
        "\"delivery_id\":\"r1.0\"}]},{\"index\":1,\"type\":\"email\",\"status\":\"failed\","
        "\"attempts\":[{\"attempt\":1,\"error\":\"connection refused\",\"at\":"
        "\"2025-11-21T23:16:45.000123Z\",\"duration_ms\":3,\"next_delay_ms\":null,"
        "\"delivery_id\":\"r1.1\"}]}]}");
    /* anything after RunFailed is refused */
    assert_int_equal(fold(&doc, "run", "r1", 8, "RunSucceeded", "{}", &why), PROJ_DOC_REFUSED);
    json_decref(doc);
    doc = NULL;

    /* a run of zero steps is succeeded at its RunStarted */
    assert_int_equal(fold(&doc, "run", "r0", 1, "RunStarted",
                          "{\"workflow_id\":\"wf1\",\"workflow_version\":1,\"step_count\":0}",
                          &why),
                     PROJ_DOC_OK);
    assert_int_equal(proj_doc_run_status(doc), EV_RUN_IS_SUCCEEDED);
    assert_int_equal(fold(&doc, "run", "r0", 2, "StepAttempted",
                          "{\"step\":0,\"attempt\":1,\"duration_ms\":1}", &why),
                     PROJ_DOC_REFUSED);
    json_decref(doc);
    doc = NULL;

    /* a run that succeeds; steps absent (schema v1 events): index and status only */
    assert_int_equal(fold(&doc, "run", "r2", 1, "RunStarted",
                          "{\"workflow_id\":\"wf1\",\"workflow_version\":1,\"step_count\":1}",
                          &why),
                     PROJ_DOC_OK);
    assert_int_equal(fold(&doc, "run", "r2", 2, "RunSucceeded", "{}", &why), PROJ_DOC_OK);
    assert_doc(doc, "{\"id\":\"r2\",\"workflow_id\":\"wf1\",\"workflow_version\":1,\"trigger\":"
                    "\"manual\",\"status\":\"succeeded\",\"payload\":{},\"version\":2,"
                    "\"created_at\":\"2025-11-21T23:16:41.000123Z\",\"updated_at\":"
                    "\"2025-11-21T23:16:42.000123Z\",\"steps\":[{\"index\":0,\"status\":"
                    "\"pending\",\"attempts\":[]}]}");
    json_decref(doc);
    doc = NULL;

    /* refusals */
    assert_int_equal(fold(&doc, "run", "r3", 1, "RunStarted",
                          "{\"workflow_id\":\"wf1\",\"payload_json\":\"[1]\"}", &why),
                     PROJ_DOC_REFUSED);
    assert_int_equal(fold(&doc, "run", "r3", 1, "RunStarted",
                          "{\"workflow_id\":\"wf1\",\"payload_json\":\"{bad\"}", &why),
                     PROJ_DOC_REFUSED);
    assert_int_equal(fold(&doc, "run", "r3", 1, "RunStarted",
                          "{\"workflow_id\":\"wf1\",\"step_count\":101}", &why),
                     PROJ_DOC_REFUSED);
    /* a run event without RunStarted (version 1 of a crafted log): refused (unknown run) */
    assert_int_equal(fold(&doc, "run", "r3", 1, "RunSucceeded", "{}", &why), PROJ_DOC_REFUSED);
    assert_null(doc);
    assert_int_equal(fold(&doc, "run", "r3", 1, "WorkflowEnabled", "{}", &why), PROJ_DOC_REFUSED);
}

/* ------------------------------------------------------------ LMDB target + qry_rm */

typedef struct lm {
    char dir[256];
    proj_lmdb *t;
    proj_event ev[32];
    uint8_t *bufs[32];
    size_t n;
    int64_t off;
    int dl;
    char dl_reason[256];
} lm;

static int dl_cb(void *arg, const proj_event *ev, const char *target, const char *reason)
{
    lm *l = arg;
    (void)ev;
    assert_string_equal(target, "lmdb");
    l->dl++;
    snprintf(l->dl_reason, sizeof l->dl_reason, "%s", reason);
    return 0;
}

static void lm_add(lm *l, const char *agg, const char *id, int64_t v, const char *type,
                   const char *payload)
{
    proj_event *ev = &l->ev[l->n];

    memset(ev, 0, sizeof *ev);
    make(&ev->env, &l->bufs[l->n], agg, id, v, type, payload);
    ev->topic = strcmp(agg, "run") == 0 ? "t.run.events" : "t.workflow.events";
    ev->offset = l->off++;
    ev->value = l->bufs[l->n];
    ev->decoded = 1;
    ev->key = id;
    ev->keylen = strlen(id);
    l->n++;
}

static void lm_apply(lm *l)
{
    proj_offset nx[2] = {{"t.run.events", 0, l->off}, {"t.workflow.events", 0, l->off}};
    proj_batch b = {l->ev, l->n, nx, 2};
    char err[256];

    assert_int_equal(proj_lmdb_apply(l->t, &b, dl_cb, l, err, sizeof err), 0);
    for (size_t i = 0; i < l->n; i++)
        free(l->bufs[i]);
    l->n = 0;
}

/* ids of a listing, comma-separated */
static void list_ids(qry_rm_view *v, qry_doc_kind kind, int flag, const char *wf, const char *after,
                     int limit, char *out, int *more)
{
    json_t *items, *it;
    size_t i, used = 0;
    char err[256];

    assert_int_equal(
        qry_rm_doc_list(v, kind, flag, wf, after, limit, &items, more, err, sizeof err), 0);
    out[0] = '\0';
    json_array_foreach(items, i, it) used += (size_t)snprintf(
        out + used, 256 - used, "%s%s", i ? "," : "", json_string_value(json_object_get(it, "id")));
    json_decref(items);
}

static void test_lmdb_documents(void **state)
{
    lm l;
    qry_rm *rm;
    qry_rm_view *v;
    char err[256], ids[256], cmd[300];
    char *text;
    size_t len;
    int64_t version;
    int more;
    (void)state;

    memset(&l, 0, sizeof l);
    snprintf(l.dir, sizeof l.dir, "/tmp/test_proj_doc.XXXXXX");
    assert_non_null(mkdtemp(l.dir));
    strcat(l.dir, "/readmodel");
    assert_int_equal(proj_lmdb_open_dir(l.dir, 16u << 20, 0, &l.t, err, sizeof err), 0);

    lm_add(&l, "workflow", "wa", 1, "WorkflowCreated",
           "{\"name\":\"A\",\"webhook_secret\":\"sekret-a\",\"steps\":" STEPS "}");
    lm_add(&l, "workflow", "wb", 1, "WorkflowCreated",
           "{\"name\":\"B\",\"enabled\":false,\"webhook_secret\":\"sekret-b\",\"steps\":[]}");
    lm_add(&l, "workflow", "wc", 1, "WorkflowCreated",
           "{\"name\":\"C\",\"webhook_secret\":\"sekret-c\",\"steps\":[]}");
    lm_add(&l, "workflow", "wc", 2, "WorkflowDisabled", "{}");
    lm_add(&l, "workflow", "wc", 3, "WorkflowDeleted", "{}");
    lm_add(&l, "run", "r1", 1, "RunStarted", RUN_STARTED);
    lm_add(&l, "run", "r2", 1, "RunStarted", RUN_STARTED);
    lm_add(&l, "run", "r3", 1, "RunStarted",
           "{\"workflow_id\":\"wb\",\"workflow_version\":1,\"step_count\":0}");
    lm_apply(&l);
    lm_add(&l, "run", "r1", 2, "StepAttempted",
           "{\"step\":0,\"attempt\":1,\"status_code\":200,\"duration_ms\":1,"
           "\"delivery_id\":\"r1.0\"}");
    lm_add(&l, "run", "r3", 2, "RunSucceeded", "{}");
    lm_add(&l, "run", "r2", 3, "RunSucceeded", "{}"); /* gap: dead-lettered */
    lm_add(&l, "run", "r9", 1, "RunStarted",
           "{\"workflow_id\":\"wb\",\"payload_json\":\"7\"}"); /* not an object */
    lm_apply(&l);
    assert_int_equal(l.dl, 2);
    assert_non_null(strstr(l.dl_reason, "payload_json"));

    assert_int_equal(qry_rm_new(l.dir, 16u << 20, 0, &rm), 0);
    assert_int_equal(qry_rm_acquire(rm, &v, err, sizeof err), 0);
    assert_int_equal(
        qry_rm_doc_get(v, QRY_DOC_WORKFLOW, "wa", &text, &len, &version, err, sizeof err), 0);
    assert_int_equal(version, 1);
    assert_int_equal(len, strlen(text));
    assert_null(strstr(text, "sekret"));
    assert_non_null(strstr(text, "\"actions\":" ACTIONS));
    free(text);
    assert_int_equal(
        qry_rm_doc_get(v, QRY_DOC_WORKFLOW, "wc", &text, &len, &version, err, sizeof err),
        KQ_ENOTFOUND);
    assert_int_equal(qry_rm_doc_get(v, QRY_DOC_RUN, "r9", &text, &len, &version, err, sizeof err),
                     KQ_ENOTFOUND);
    assert_int_equal(qry_rm_doc_get(v, QRY_DOC_RUN, "r1", &text, &len, &version, err, sizeof err),
                     0);
    assert_int_equal(version, 2);
    assert_non_null(strstr(text, "\"status\":\"running\""));
    assert_null(strstr(text, "sekret"));
    free(text);

    list_ids(v, QRY_DOC_WORKFLOW, -1, NULL, NULL, 10, ids, &more);
    assert_string_equal(ids, "wa,wb");
    assert_int_equal(more, 0);
    list_ids(v, QRY_DOC_WORKFLOW, 0, NULL, NULL, 10, ids, &more);
    assert_string_equal(ids, "wb");
    list_ids(v, QRY_DOC_WORKFLOW, 1, NULL, NULL, 10, ids, &more);
    assert_string_equal(ids, "wa");
    list_ids(v, QRY_DOC_RUN, -1, NULL, NULL, 2, ids, &more);
    assert_string_equal(ids, "r1,r2");
    assert_int_equal(more, 1);
    list_ids(v, QRY_DOC_RUN, -1, NULL, "r2", 2, ids, &more);
    assert_string_equal(ids, "r3");
    assert_int_equal(more, 0);
    list_ids(v, QRY_DOC_RUN, -1, "wf1", NULL, 10, ids, &more);
    assert_string_equal(ids, "r1,r2");
    list_ids(v, QRY_DOC_RUN, -1, "wf1", "r1", 10, ids, &more);
    assert_string_equal(ids, "r2");
    list_ids(v, QRY_DOC_RUN, -1, "wf", NULL, 10, ids, &more); /* a prefix is not a match */
    assert_string_equal(ids, "");
    list_ids(v, QRY_DOC_RUN, EV_RUN_IS_PENDING, NULL, NULL, 10, ids, &more);
    assert_string_equal(ids, "r2");
    list_ids(v, QRY_DOC_RUN, EV_RUN_IS_SUCCEEDED, NULL, NULL, 10, ids, &more);
    assert_string_equal(ids, "r3");
    list_ids(v, QRY_DOC_RUN, EV_RUN_IS_RUNNING, "wf1", NULL, 10, ids, &more);
    assert_string_equal(ids, "r1");
    list_ids(v, QRY_DOC_RUN, EV_RUN_IS_SUCCEEDED, "wf1", NULL, 10, ids, &more);
    assert_string_equal(ids, "");
    qry_rm_release(v);
    qry_rm_free(rm);
    proj_lmdb_close(l.t);
    *strrchr(l.dir, '/') = '\0';
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", l.dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workflow_document),
        cmocka_unit_test(test_run_document),
        cmocka_unit_test(test_lmdb_documents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
