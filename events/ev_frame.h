/*
 * ev_frame.h — a stream of several event records on one byte stream.
 *
 * Framing: each record is a 4-byte little-endian unsigned length N followed
 * by the N bytes of the record, exactly as a Kafka record value carries it (a
 * FlatBuffers Envelope, file identifier KQEV, aligned to its own first byte).
 * A stream is any number of such frames back to back; it ends cleanly only
 * between two frames. This is the layout of FlatBuffers' size-prefixed
 * buffers, except for alignment: flatc --size-prefixed aligns counting the
 * prefix, so its 8-byte fields land 4 bytes off the record's start and the
 * verifier refuses them; frame flatc -b output instead.
 *
 * A bare (unframed) Envelope has its identifier "KQEV" at bytes 4..7; in a
 * framed stream those bytes are the first record's root offset, which is
 * below the record's size and so never "KQEV" (0x5645514B, more than
 * EV_FRAME_MAX). ev_frame_is_bare() tells the two apart from 8 bytes.
 *
 * ev_json_compact() turns the JSON ev_json_decode prints into one line (for
 * JSON-lines output).
 *
 * No state; any thread. Memory is the caller's as said per function.
 */
#ifndef EV_FRAME_H
#define EV_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Largest record a frame may announce (bigger: KQ_ERANGE). */
#define EV_FRAME_MAX (16u << 20)

/* 1 when the first `len` (>= 8) bytes are the start of a bare Envelope. */
int ev_frame_is_bare(const uint8_t *head, size_t len);

/*
 * Read the next frame from `f` into *buf (malloc'd/realloc'd, *cap bytes,
 * owned by the caller, may start NULL/0); *len is the record's size. `pre`
 * (`npre` bytes, at most 8) are bytes already read from the stream's start,
 * consumed first (pass NULL/0 afterwards). Returns 1 for a record, 0 at a
 * clean end of the stream, or KQ_ECORRUPT (the stream ends inside a frame),
 * KQ_ERANGE (length 0 or above EV_FRAME_MAX), KQ_EIO, KQ_ENOMEM.
 */
int ev_frame_read(FILE *f, const uint8_t *pre, size_t npre, uint8_t **buf, size_t *cap, size_t *len,
                  char *errstr, size_t errlen);

/* Write one frame (length then bytes) to `f`. 0 or KQ_EIO / KQ_ERANGE. */
int ev_frame_write(FILE *f, const void *rec, size_t len, char *errstr, size_t errlen);

/* Remove every whitespace byte outside JSON strings, in place; returns the new
 * length (the string stays NUL-terminated if it was). */
size_t ev_json_compact(char *json, size_t len);

#endif
