/*
 * cmd_pii.h — personal data kept by the command side as digests, not text.
 *
 * What it is for
 *   kcqrs-commands needs a resource's name and description only to tell
 *   whether an update changes them (an update that changes nothing emits no
 *   event). With keys loaded (KCQRS_KEK_FILE, ev_pii.h) its state and its
 *   LMDB snapshot hold a digest of each instead of the text:
 *   "k:" + hex HMAC-SHA256 under the resource's data key when the key is held
 *   (an erased key makes the digest unconfirmable, like the events), else
 *   "u:" + hex SHA-256 (a resource known only from plain events written
 *   before sealing, whose key does not exist). A comparison digests the new
 *   value the same way as the stored one; a mismatch of schemes only counts
 *   as a change (one more event, never a lost one). Without keys (unit tests)
 *   the text is kept as before.
 *
 * Ownership: *dst is malloc'd (freed by the caller's free). Threads: any.
 */
#ifndef CMD_PII_H
#define CMD_PII_H

#include <stddef.h>

#include "kq_keyring.h"

#define CMD_PII_DIGEST_LEN (2 + 64)

/* Set *dst (freed first) to what the state keeps of s[0..len) of resource id:
 * a digest with kr, a copy without. s NULL: *dst NULL. 0 or KQ_ENOMEM. */
int cmd_pii_store(kq_keyring *kr, const char *id, const char *s, size_t len, char **dst);

/* 1 when the value s (NUL-terminated; NULL reads as "") is what `stored`
 * keeps (NULL: nothing, the same as ""). */
int cmd_pii_same(kq_keyring *kr, const char *id, const char *stored, const char *s);

#endif
