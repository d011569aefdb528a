/*
 * cmd_answer.c — the writer's answers; see cmd_answer.h.
 */
#include "cmd_answer.h"
#include "cmd_aggregate.h"
#include "kq_token.h"

#include <string.h>

static void answer_error(cmd_item *it, unsigned status, const char *code, const char *msg,
                         int64_t current, int retry_after)
{
    cmd_result r;
    memset(&r, 0, sizeof r);
    r.status = status;
    r.code = code;
    r.message = msg;
    r.current_version = current;
    r.retry_after = retry_after;
    it->done(it, &r);
}

static void answer_refused(cmd_item *it, const cmd_decision *d)
{
    cmd_result r;
    memset(&r, 0, sizeof r);
    r.status = d->status;
    r.code = d->code;
    r.message = d->message;
    r.current_version = d->current_version;
    r.has_attempt_detail = d->has_attempt_detail;
    r.current_step = d->current_step;
    r.recorded_attempts = d->recorded_attempts;
    it->done(it, &r);
}

/* `topic`: topic index of the aggregate (the token's topic); `secret`: shown
 * as webhook_secret or NULL. */
static void answer_ok(const char *const *topics, cmd_item *it, unsigned status, const char *id,
                      int64_t version, int topic, int32_t partition, int64_t offset,
                      const char *secret)
{
    char token[KQ_TOKEN_MAX] = "";
    cmd_result r;

    memset(&r, 0, sizeof r);
    if (topic < 0 || topic >= CMD_TOPICS)
        topic = CMD_TOPIC_RESOURCE;
    if (offset >= 0)
        kq_token_encode(topics[topic], partition, offset, token, sizeof token);
    r.status = status;
    r.id = id;
    r.version = version;
    r.token = token;
    r.secret = secret;
    it->done(it, &r);
}

static void answer_failed(cmd_item *it, int fenced, const char *code, const char *msg)
{
    if (fenced)
        answer_error(it, 503, "not_writer", "this instance was fenced by another writer", 0, 5);
    else
        answer_error(it, 503, code ? code : "unavailable", msg, 0, 1);
}

void cmd_answer_unavailable(cmd_item *it, int fenced, const char *msg)
{
    answer_failed(it, fenced, NULL, msg);
}

/*
 * Answering an item frees it. A CMD_D_FOLLOW item reads its lead, which
 * always has a smaller index: so answer from the last item to the first.
 */
void cmd_answer_batch(const char *const *topics, const cmd_state *st, cmd_item **items, size_t n,
                      int failed, const char *fail_code, int fenced)
{
    for (size_t i = n; i-- > 0;) {
        cmd_item *it = items[i];
        cmd_decision *d = &it->d;
        int topic = cmd_kind_topic(it->cmd.kind);

        if (failed && (d->kind == CMD_D_APPEND || d->kind == CMD_D_FOLLOW || d->pending)) {
            answer_failed(it, fenced, fail_code,
                          fail_code && strcmp(fail_code, "not_enough_replicas") == 0
                              ? "fewer replicas in sync than min.insync.replicas; retry"
                              : "the Kafka transaction failed; retry");
            continue;
        }
        switch (d->kind) {
        case CMD_D_APPEND:
            answer_ok(topics, it, cmd_success_status(it->cmd.kind), it->cmd.id, d->version, topic,
                      it->partition, it->offset,
                      cmd_aggregate_answer_secret(st, &it->cmd, it->cmd.id, 0));
            break;
        case CMD_D_FOLLOW: {
            cmd_item *lead;
            if (d->follow >= i) { /* cannot happen: decisions are made in order */
                cmd_answer_unavailable(it, fenced, "internal error; retry");
                break;
            }
            lead = items[d->follow];
            answer_ok(topics, it, cmd_success_status(lead->cmd.kind), lead->cmd.id, lead->d.version,
                      cmd_kind_topic(lead->cmd.kind), lead->partition, lead->offset,
                      cmd_aggregate_answer_secret(st, &lead->cmd, lead->cmd.id, 0));
            break;
        }
        case CMD_D_REPLAY:
            answer_ok(topics, it, d->idem.status, d->idem.id, d->idem.version,
                      d->idem.aggregate >= 1 ? d->idem.aggregate - 1 : CMD_TOPIC_RESOURCE,
                      d->idem.partition, d->idem.offset,
                      cmd_aggregate_answer_secret(st, &it->cmd, d->idem.id, 1));
            break;
        case CMD_D_NOOP: {
            int64_t version;
            int32_t partition;
            int64_t offset;
            if (cmd_aggregate_position(st, topic, it->cmd.id, &version, &partition, &offset) != 0)
                cmd_answer_unavailable(it, fenced, "state changed; retry");
            else
                answer_ok(topics, it, 200, it->cmd.id, version, topic, partition, offset, NULL);
            break;
        }
        case CMD_D_ERROR:
        default:
            answer_refused(it, d);
            break;
        }
    }
}
