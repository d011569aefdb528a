/*
 * rp_progress.c — kcqrs-replay's progress and result output; see rp_progress.h.
 */
#include "rp_progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kq_log.h"

static void measure(rp_job *j, rp_meter *m, long long *done, long long *total, double *eta)
{
    unsigned long long applied;
    double now = rp_mono_s(), dt = now - m->t_last;

    rp_job_progress(j, done, total, &applied);
    if (dt >= 0.5) {
        double r = (double)(*done - m->done_last) / dt;
        m->rate = m->rate == 0 ? r : 0.5 * m->rate + 0.5 * r;
        m->t_last = now;
        m->done_last = *done;
    }
    *eta = m->rate > 0 && *total > *done ? (double)(*total - *done) / m->rate : -1;
}

void rp_progress_show(rp_job *jobs, size_t n, rp_meter *ms, int json, int tty)
{
    char line[512];
    size_t off = 0;

    line[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        long long done, total;
        double eta;
        const char *ph = rp_phase_name(atomic_load(&jobs[i].phase));

        measure(&jobs[i], &ms[i], &done, &total, &eta);
        if (json) {
            printf("{\"target\":\"%s\",\"phase\":\"%s\",\"events\":%lld,\"total\":%lld,"
                   "\"rate\":%.0f,\"eta_s\":%.1f}\n",
                   jobs[i].t->name, ph, done, total, ms[i].rate, eta < 0 ? 0 : eta);
            fflush(stdout);
        } else if (tty) {
            off += (size_t)snprintf(
                line + off, sizeof line - off, "%s%s %s %lld/%lld events %.0f/s ETA %.0fs",
                i ? " | " : "", jobs[i].t->name, ph, done, total, ms[i].rate, eta < 0 ? 0 : eta);
            if (off >= sizeof line)
                off = sizeof line - 1;
        } else {
            kq_log_info("%s: %s %lld/%lld events, %.0f events/s, ETA %.0f s", jobs[i].t->name, ph,
                        done, total, ms[i].rate, eta < 0 ? 0 : eta);
        }
    }
    if (tty && !json) {
        fprintf(stderr, "\r%-100s", line);
        fflush(stderr);
    }
}

static const char *result_word(int exit_code)
{
    return exit_code == 0 ? "ok" : exit_code == 1 ? "differences" : "failed";
}

static void report_json(rp_job *jobs, size_t n, rp_cmd cmd, const char *name, int exit_code,
                        double total_s)
{
    json_t *o = json_object(), *arr = json_array();
    char *s;

    json_object_set_new(o, "result", json_string(result_word(exit_code)));
    json_object_set_new(o, "command", json_string(rp_cmd_name(cmd)));
    if (name != NULL)
        json_object_set_new(o, "snapshot", json_string(name));
    json_object_set_new(o, "exit", json_integer(exit_code));
    json_object_set_new(o, "seconds", json_real(total_s));
    for (size_t i = 0; i < n; i++) {
        rp_job *j = &jobs[i];
        json_t *t = json_object(), *d = json_object();
        long long done, total;
        unsigned long long a;

        rp_job_progress(j, &done, &total, &a);
        json_object_set_new(t, "target", json_string(j->t->name));
        json_object_set_new(t, "result", json_string(result_word(j->exit)));
        json_object_set_new(t, "events", json_integer(done));
        json_object_set_new(t, "skipped", json_integer((json_int_t)j->skipped));
        for (int p = RP_PH_BULK; p < RP_PH_DONE; p++)
            if (j->dur[p] > 0)
                json_object_set_new(d, rp_phase_name(p), json_real(j->dur[p]));
        json_object_set_new(t, "durations", d);
        if (j->rc != 0)
            json_object_set_new(t, "error", json_string(j->err));
        if (cmd == RP_CMD_VERIFY && j->rc == 0) {
            json_object_set_new(t, "differences", json_integer(j->ndiff));
            if (j->diff != NULL)
                json_object_set_new(t, "diff", json_string(j->diff));
        }
        json_array_append_new(arr, t);
    }
    json_object_set_new(o, "targets", arr);
    if ((s = json_dumps(o, JSON_COMPACT)) != NULL) {
        printf("%s\n", s);
        free(s);
    }
    json_decref(o);
    fflush(stdout);
}

void rp_progress_report(rp_job *jobs, size_t n, rp_cmd cmd, const char *name, const kq_config *cfg,
                        int json, int exit_code, double total_s)
{
    if (json) {
        report_json(jobs, n, cmd, name, exit_code, total_s);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        rp_job *j = &jobs[i];
        long long done, total;
        unsigned long long a;

        rp_job_progress(j, &done, &total, &a);
        if (j->rc != 0) {
            fprintf(stderr, "%s: %s: %s\n", RP_PROG, j->t->name, j->err);
            continue;
        }
        if (cmd == RP_CMD_VERIFY) {
            if (j->ndiff == 0) {
                printf("%s: equal to the log (%lld offsets replayed)\n", j->t->name, done);
            } else {
                const char *p = j->diff ? j->diff : "";
                printf("%s: %ld rows differ from the log:\n", j->t->name, j->ndiff);
                while (*p) { /* prefix each line with the target */
                    const char *nl = strchr(p, '\n');
                    int len = nl ? (int)(nl - p) : (int)strlen(p);
                    printf("%s: %.*s\n", j->t->name, len, p);
                    p += len + (nl ? 1 : 0);
                }
            }
        } else {
            printf("%s: %s: %lld offsets replayed (%llu records skipped) in %.1f s "
                   "(bulk %.1f s, finish %.1f s, catch-up %.1f s, tail under lock %.1f s)\n",
                   j->t->name, cmd == RP_CMD_UNTIL ? "snapshot built" : "rebuilt and switched live",
                   done, j->skipped,
                   j->dur[RP_PH_BULK] + j->dur[RP_PH_FINISH] + j->dur[RP_PH_CATCHUP] +
                       j->dur[RP_PH_LOCK] + j->dur[RP_PH_TAIL] + j->dur[RP_PH_SWITCH],
                   j->dur[RP_PH_BULK], j->dur[RP_PH_FINISH], j->dur[RP_PH_CATCHUP],
                   j->dur[RP_PH_LOCK] + j->dur[RP_PH_TAIL] + j->dur[RP_PH_SWITCH]);
        }
    }
    if (cmd == RP_CMD_UNTIL && exit_code == 0)
        printf("query it: curl -H \"Authorization: Bearer $TOKEN\" "
               "'http://%s/api/v1/resources?snapshot=%s'\n",
               cfg->query_addr, name);
    fflush(stdout);
}
