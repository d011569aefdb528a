/*
 * kq_keyring.h — the subjects' data keys: the key topic, read and written.
 *
 * What it is for
 *   Envelope encryption (kq_crypto.h) needs each subject's 32-byte data key
 *   (DEK). The keys live in one compacted topic, <prefix>.keys, created like
 *   the event topics (kq_kafka_ensure_topics): record key = the subject
 *   ("workflow/<id>"), value = the DEK wrapped by the KEK (kq_kek_wrap, 63
 *   bytes: format, KEK version, nonce, ciphertext, tag), partition =
 *   kq_kafka_partition_for(subject). Compaction keeps the last record per
 *   subject; a subject's key is written once and never changes (a KEK
 *   rotation wraps new keys with the new version; old ones stay wrapped by
 *   theirs). A record with no value (a tombstone) is an erased subject.
 *
 *   kq_keyring_new loads the KEK file (KCQRS_KEK_FILE): missing or malformed
 *   stops the service at once. kq_keyring_load (the service's Kafka thread,
 *   retried while Kafka is unreachable) makes sure the topic exists, reads it
 *   to its end and unwraps every key: a KEK version missing from the file or
 *   a KEK that does not open a key is KQ_ECONFIG and the service stops, with a
 *   sentence that says which; a record that is not a wrapped key at all is
 *   logged and ignored (its subject's key counts as missing), so one bad record
 *   stops nothing. Tombstones stay for good (KQ_KAFKA_DELETE_RETENTION_MS on
 *   the topic), so an erasure is never forgotten. The keys are then held in memory; a subject not
 *   held is looked for again in the topic (records written since) before it
 *   is reported missing.
 *
 * Who writes: kcqrs-commands only (kq_keyring_get_or_create, a synchronous
 *   acks=all produce before the first event sealed with the key is produced:
 *   a key in the topic whose event never committed is harmless; an event whose
 *   key was lost cannot happen). Readers: kcqrs-commands, kcqrs-worker.
 *
 * Ownership: the keyring owns its Kafka clients and key copies; callers get
 *   copies of keys. Threads: every function is thread-safe (one mutex).
 * Errors: 0 or a negative KQ_E* code with a sentence in errstr.
 */
#ifndef KQ_KEYRING_H
#define KQ_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#include "kq_config.h"
#include "kq_crypto.h"

typedef struct kq_keyring kq_keyring;

/* Longest subject, bytes: "workflow/" + a 64-byte id, with room to spare. */
#define KQ_SUBJECT_MAX 128

/*
 * Load cfg->kek_file (nothing else: no Kafka yet). *out is owned by the
 * caller (kq_keyring_free). KQ_ENOTFOUND ("KEK file PATH is missing"),
 * KQ_ECONFIG (mode), KQ_EINVAL (format).
 */
int kq_keyring_new(const kq_config *cfg, const char *client_id, kq_keyring **out, char *errstr,
                   size_t errlen);

/*
 * Connect (the first time: the consumer, the topic created if missing), read
 * the topic's new records to its end and unwrap their keys. KQ_ECONFIG: a
 * key's KEK version is not in the KEK file, or the KEK does not open it (the
 * sentence says which): fatal, the caller stops. KQ_EKAFKA / KQ_ETIMEDOUT:
 * Kafka; try again later.
 */
int kq_keyring_load(kq_keyring *kr, char *errstr, size_t errlen);

/*
 * Copy subject's data key into dek. When the subject is not held, read the
 * topic's new records first. KQ_ENOTFOUND: no key (or erased);
 * KQ_EKAFKA/KQ_ETIMEDOUT: the topic could not be read.
 */
int kq_keyring_get(kq_keyring *kr, const char *subject, uint8_t dek[KQ_CRYPTO_KEY_LEN],
                   char *errstr, size_t errlen);

/* 1 and subject's data key in dek when it is held in memory; 0 otherwise
 * (the topic is not read). */
int kq_keyring_held(kq_keyring *kr, const char *subject, uint8_t dek[KQ_CRYPTO_KEY_LEN]);

/* kq_keyring_get, else a new random key, wrapped, written to the topic (acks=all, waited for)
 * and held. */
int kq_keyring_get_or_create(kq_keyring *kr, const char *subject, uint8_t dek[KQ_CRYPTO_KEY_LEN],
                             char *errstr, size_t errlen);

/*
 * New keys for those of subjects[0..n) that have none held (and are not
 * erased), written to the topic together and waited for once (acks=all):
 * what a batch of creates costs one round trip instead of one each. A
 * subject whose write did not complete is not held (its key, if it landed,
 * is never used: harmless). 0 or the error of the first failure.
 */
int kq_keyring_create_many(kq_keyring *kr, const char *const *subjects, size_t n, char *errstr,
                           size_t errlen);

/* Keys held; keys wrapped by each KEK version is not tracked. */
size_t kq_keyring_count(kq_keyring *kr);

/* 1 when the last record read for subject is a tombstone (an erased
 * subject): a missing key is then expected, not an error. */
int kq_keyring_erased(kq_keyring *kr, const char *subject);

/* 1 once kq_keyring_load (or a lookup) has read the topic to its end. */
int kq_keyring_loaded(kq_keyring *kr);

/* The KEK version new keys are wrapped with. */
unsigned kq_keyring_kek_version(const kq_keyring *kr);

/* The key topic's name for cfg: "<prefix>.keys". KQ_ERANGE if it does not fit. */
int kq_keyring_topic(const kq_config *cfg, char *out, size_t outlen);

/* Wipe the keys, close the clients, free. NULL is fine. */
void kq_keyring_free(kq_keyring *kr);

#endif
