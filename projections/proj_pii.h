/*
 * proj_pii.h — opening the sealed personal data of a checked event.
 *
 * What it is for
 *   The read models hold personal data in plain text (they serve it); the log
 *   holds it sealed (events/ev_pii.h). After proj_runner_check_event, an event
 *   with sealed personal data is re-encoded with it opened ("[erased]" for an
 *   erased subject) into ev->plain (malloc'd; the caller frees it), and
 *   ev->env is decoded from there; the targets read proj_event_bytes(ev).
 *   ev->value stays the record as written (dead letters carry it sealed).
 *   Used by the runner (projector and replay) and the dead-letter redrive.
 *
 * Threads: the caller's; *keys is made at the first sealed event and is
 *   then thread-safe (lib/kq_keyring.h).
 */
#ifndef PROJ_PII_H
#define PROJ_PII_H

#include <stddef.h>

#include "kq_config.h"
#include "kq_keyring.h"
#include "proj_batch.h"

/*
 * NULL (nothing sealed, or opened), or why ev is refused (ev->decoded 0): no
 * KEK file, a value that does not open, or the data key of a subject that
 * was not erased is missing (then ev->missing_key is 1: the runner counts it
 * and /ready says so). A key topic that cannot be read is tried again every
 * second for 30 s (the checker waits) before the record is refused.
 * `client` names the keyring's Kafka client.
 */
const char *proj_pii_open(proj_event *ev, kq_keyring **keys, const kq_config *cfg,
                          const char *client, char *why, size_t whylen);

#endif
