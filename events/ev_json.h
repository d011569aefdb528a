/*
 * ev_json.h — Envelope buffers <-> the JSON that flatc prints for events.fbs.
 *
 * Both directions are generic over the descriptors of ev_schema.h; nothing in
 * here knows an event by name.
 *
 * Output (ev_json_decode) is byte-identical to
 *     flatc --json --strict-json --raw-binary events/events.fbs -- file.kqev
 * for every buffer that passes ev_schema_verify(): fields in schema order,
 * 2-space indent, one array element per line, enums and union types by name,
 * [ubyte] (event_id, prev_hash) as arrays of numbers, strings escaped as flatc
 * does (\" \\ \b \f \n \r \t, other bytes outside 0x20..0x7e as \uXXXX with
 * upper-case hex, astral characters as surrogate pairs, '/' not escaped), and
 * a final newline. Like flatc, a field is printed iff it is PRESENT in the
 * buffer, even when it holds its default value; buffers written by flatc or by
 * ev_codec omit defaults, so their JSON does too.
 *
 * Input (ev_json_encode) is strict:
 *   - UTF-8 JSON text of at most EV_JSON_MAX_INPUT bytes whose root is an object;
 *   - no unknown fields, no duplicate keys, no null anywhere;
 *   - integers only for integer fields (no 1.0, no "1"), within the field's
 *     range; true/false only for bools;
 *   - enums and union types by name; a NUMBER is accepted too when it is the
 *     value of a known name (flatc accepts numbers; we accept only known ones,
 *     since verification would reject anything else anyway);
 *   - [ubyte] as an array of numbers 0..255; event_id must have exactly 16
 *     (EV_EVENT_ID_LEN: the verifier rejects any other length);
 *   - required fields present; a union value needs its "<field>_type" and a
 *     union type other than NONE needs its value;
 *   - strings may contain \u0000 (flatc prints NUL that way).
 * The encoder writes exactly the fields present in the JSON, including ones
 * equal to their default (flatc -b drops those). So decode(encode(j)) == j for
 * every j that ev_json_decode can print, and buffers from JSON written by flatc
 * itself reproduce it byte for byte.
 *
 * Thread-safety: reentrant; a builder belongs to one thread at a time.
 */
#ifndef EV_JSON_H
#define EV_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "ev_fb.h"

#define EV_JSON_MAX_INPUT (1u << 20) /* bytes of JSON text ev_json_encode accepts */

/*
 * Parse a JSON envelope (`len` bytes at `json`, need not be NUL-terminated),
 * reset `b` and build the buffer in it, finished with file identifier "KQEV".
 * The result is read with ev_fb_builder_data(b, ...) and is owned by `b`.
 * Returns 0; KQ_EINVAL with errstr naming the JSON path at fault, e.g.
 * "payload.name: expected string, got number"; KQ_ENOMEM / KQ_ERANGE from
 * the builder.
 */
int ev_json_encode(const char *json, size_t len, ev_fb_builder *b, char *errstr, size_t errlen);

/*
 * Verify `len` bytes at `buf` (ev_schema_verify), then print them as JSON.
 * On success *json is a malloc'd, NUL-terminated string of *json_len bytes
 * (NUL not counted) that the caller frees. Returns 0, KQ_ECORRUPT with the
 * verifier's message, or KQ_ENOMEM. On failure *json is NULL.
 */
int ev_json_decode(const uint8_t *buf, size_t len, char **json, size_t *json_len, char *errstr,
                   size_t errlen);

/*
 * Append the payload table (the union value) of an envelope that has already
 * passed ev_schema_verify() (ev_envelope_decode does that) to the growable
 * buffer *json (*len bytes used of *cap; realloc'd as needed, owned by the
 * caller, may start NULL/0/0), printed exactly as ev_json_decode prints it
 * under "payload" but at indent 0, i.e. the same JSON value. The result is
 * NUL-terminated (NUL not counted in *len). No verification here: never pass
 * an unverified buffer. Returns 0, KQ_ENOTFOUND (no payload) or KQ_ENOMEM
 * (*len unchanged, *json still valid).
 */
int ev_json_payload_append(const uint8_t *buf, char **json, size_t *len, size_t *cap);

#endif
