/*
 * kq_tool_json.h — what the HTTP test tools (kq_hammer, kq_faults) read from the
 * services' JSON answers. Header-only (each tool is one program).
 *
 * Threads: reentrant, no global state.
 */
#ifndef KQ_TOOL_JSON_H
#define KQ_TOOL_JSON_H

#include <jansson.h>

/* First integer member named `name` anywhere in `v` (depth first), or -1. */
static inline long long kq_tool_find_int(const json_t *v, const char *name)
{
    const char *k;
    json_t *x;
    size_t i;
    if (json_is_object(v)) {
        x = json_object_get(v, name);
        if (json_is_integer(x))
            return json_integer_value(x);
        json_object_foreach((json_t *)v, k, x)
        {
            long long r = kq_tool_find_int(x, name);
            if (r >= 0)
                return r;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x)
        {
            long long r = kq_tool_find_int(x, name);
            if (r >= 0)
                return r;
        }
    }
    return -1;
}

#endif
