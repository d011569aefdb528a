/*
 * kq_problem.h — the error body of every service: RFC 9457 problem details
 * (`application/problem+json`).
 *
 *   {"type": "urn:kcqrs:problem:<code>", "title": "<fixed title of the code>",
 *    "status": <int>, "detail": "<this occurrence's message>",
 *    "instance": "<request path, no query>", "code": "<code>",
 *    "errors": [{"field", "message", ...}, ...]}
 *
 * `code` is the machine-readable name clients switch on (`not_found`,
 * `validation_failed`, ...); `type` is the same name as a URN, `title` a fixed
 * English sentence per code (the HTTP reason phrase of the status for a code
 * the table does not know). `errors` holds one item per input at fault
 * (empty when none). `instance` is left out when no request path is known
 * (an answer before a request line was read).
 *
 * Pure: no state, any thread.
 */
#ifndef KQ_PROBLEM_H
#define KQ_PROBLEM_H

#include <jansson.h>
#include <stddef.h>

#define KQ_PROBLEM_CTYPE "application/problem+json"
#define KQ_PROBLEM_TYPE_PREFIX "urn:kcqrs:problem:"

/* The fixed title of `code`; for a code not in the table, the HTTP reason
 * phrase of `status`. Static storage. */
const char *kq_problem_title(const char *code, unsigned status);

/* The HTTP reason phrase of `status` ("Not Found"; a class name for a status
 * it does not list). Static storage. */
const char *kq_problem_reason(unsigned status);

/*
 * A new problem object (owned by the caller), or NULL when out of memory.
 * `details` is stolen (NULL: an empty array); `instance` may be NULL (left
 * out) and is written as a URI reference: bytes other than unreserved,
 * sub-delims, ':', '@' and '/' are percent-encoded, so a decoded path with
 * any bytes still makes valid JSON. A message that is not UTF-8 is replaced
 * by the title.
 */
json_t *kq_problem_new(unsigned status, const char *code, const char *message, json_t *details,
                       const char *instance);

#endif
