/*
 * cmd_expiry.c — the FIFO of due times; see cmd_expiry.h.
 */
#include "cmd_expiry.h"
#include "kq_err.h"

#include <stdlib.h>
#include <string.h>

#define EXPIRY_MIN_CAP 64

/* Move the entries into a new ring of `cap` slots (>= n), in order. */
static int resize(cmd_expiry *q, size_t cap)
{
    cmd_expiry_ent *e = malloc(cap * sizeof *e);

    if (e == NULL)
        return KQ_ENOMEM;
    for (size_t i = 0; i < q->n; i++)
        e[i] = q->e[(q->head + i) % q->cap];
    free(q->e);
    q->e = e;
    q->cap = cap;
    q->head = 0;
    return 0;
}

int cmd_expiry_push(cmd_expiry *q, int64_t due_us, void *val)
{
    if (q->n == q->cap && resize(q, q->cap ? q->cap * 2 : EXPIRY_MIN_CAP) != 0)
        return KQ_ENOMEM;
    q->e[(q->head + q->n) % q->cap] = (cmd_expiry_ent){due_us, val};
    q->n++;
    return 0;
}

const cmd_expiry_ent *cmd_expiry_peek(const cmd_expiry *q)
{
    return q->n > 0 ? &q->e[q->head] : NULL;
}

void cmd_expiry_pop(cmd_expiry *q)
{
    if (q->n == 0)
        return;
    q->head = (q->head + 1) % q->cap;
    q->n--;
    if (q->cap > EXPIRY_MIN_CAP && q->n < q->cap / 4)
        (void)resize(q, q->cap / 2); /* out of memory: keep the larger ring */
}

size_t cmd_expiry_count(const cmd_expiry *q)
{
    return q->n;
}

size_t cmd_expiry_bytes(const cmd_expiry *q)
{
    return q->cap * sizeof(cmd_expiry_ent);
}

void cmd_expiry_free(cmd_expiry *q)
{
    free(q->e);
    memset(q, 0, sizeof *q);
}
