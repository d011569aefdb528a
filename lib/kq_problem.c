/*
 * kq_problem.c — RFC 9457 problem details; see kq_problem.h.
 */
#include "kq_problem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One row per error code the services answer: its fixed title. */
static const struct {
    const char *code;
    const char *title;
} titles[] = {
    {"attempt_gap", "Attempt out of order"},
    {"attempt_recorded", "Attempt already recorded"},
    {"bad_request", "Malformed request"},
    {"conflict", "Resource already exists"},
    {"cors_origin_denied", "Origin not allowed"},
    {"expectation_failed", "Expectation not supported"},
    {"forbidden", "Role not allowed"},
    {"header_fields_too_large", "Request header fields too large"},
    {"http_version_not_supported", "HTTP version not supported"},
    {"idempotency_key_reused", "Idempotency key reused with another request"},
    {"internal", "Internal error"},
    {"invalid_header", "Invalid header"},
    {"invalid_json", "Invalid JSON"},
    {"invalid_request", "Invalid request"},
    {"invalid_steps", "Invalid steps"},
    {"invalid_webhook_secret", "Invalid webhook secret"},
    {"kafka_unavailable", "Event log unavailable"},
    {"method_not_allowed", "Method not allowed"},
    {"not_enough_replicas", "Not enough replicas"},
    {"not_found", "Not found"},
    {"not_implemented", "Not implemented"},
    {"not_ready", "Not ready"},
    {"not_writer", "Not the writer"},
    {"overloaded", "Overloaded"},
    {"payload_too_large", "Request body too large"},
    {"precondition_failed", "Version mismatch"},
    {"projection_behind", "Read model behind"},
    {"rate_limited", "Too many requests"},
    {"request_timeout", "Request timeout"},
    {"run_finished", "Run already finished"},
    {"server_busy", "Server busy"},
    {"snapshot_not_found", "Snapshot not found"},
    {"step_mismatch", "Step mismatch"},
    {"unauthorized", "Authentication required"},
    {"unavailable", "Service unavailable"},
    {"unsupported", "Unsupported"},
    {"unsupported_media_type", "Unsupported media type"},
    {"uri_too_long", "URI too long"},
    {"validation_failed", "Validation failed"},
    {"workflow_disabled", "Workflow disabled"},
};

const char *kq_problem_reason(unsigned s)
{
    switch (s) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return s < 200   ? "Informational"
               : s < 300 ? "OK"
               : s < 400 ? "Redirect"
               : s < 500 ? "Client Error"
                         : "Server Error";
    }
}

const char *kq_problem_title(const char *code, unsigned status)
{
    for (size_t i = 0; code != NULL && i < sizeof titles / sizeof titles[0]; i++)
        if (strcmp(titles[i].code, code) == 0)
            return titles[i].title;
    return kq_problem_reason(status);
}

/* s as a URI reference: malloc'd, owned by the caller; NULL when out of memory. */
static char *uri_ref(const char *s)
{
    static const char keep[] = "-._~!$&'()*+,;=:@/";
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *w = out;

    if (out == NULL)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr(keep, *p) != NULL) {
            *w++ = (char)*p;
        } else {
            *w++ = '%';
            *w++ = hex[*p >> 4];
            *w++ = hex[*p & 15];
        }
    }
    *w = '\0';
    return out;
}

json_t *kq_problem_new(unsigned status, const char *code, const char *message, json_t *details,
                       const char *instance)
{
    const char *title;
    char type[128];
    json_t *p = NULL, *msg;
    char *inst = NULL;

    if (details == NULL)
        details = json_array();
    if (code == NULL || *code == '\0')
        code = status >= 500 ? "internal" : "bad_request";
    title = kq_problem_title(code, status);
    if (message == NULL || (msg = json_string(message)) == NULL)
        msg = json_string(title);
    snprintf(type, sizeof type, KQ_PROBLEM_TYPE_PREFIX "%s", code);
    if (instance != NULL && (inst = uri_ref(instance)) == NULL)
        goto out;
    p = json_pack("{s:s, s:s, s:i, s:o, s:s*, s:s, s:o}", "type", type, "title", title, "status",
                  (int)status, "detail", msg, "instance", inst, "code", code, "errors", details);
    msg = NULL;
    details = NULL;
out:
    json_decref(msg);
    json_decref(details);
    free(inst);
    return p;
}
