/*
 * kcqrs_audit.c — `kcqrs-audit`: who did what, when, and whether anybody
 * tampered with the log (DESIGN.md section 9, replay/README.md).
 *
 * Both commands read the event topics straight from Kafka (aud_read.h:
 * read_committed, up to the end offsets seen at start), so they work with
 * PostgreSQL and LMDB gone.
 *
 *   query         filters (aud_filter.h) over the chosen topic-partitions:
 *                 --aggregate-id reads only that id's partition and decodes
 *                 only its keys, --event-type skips other records by their
 *                 event_type header, --since seeks every partition by time,
 *                 --until ends a partition at its first later event. Matches
 *                 are sorted by (occurred_at, topic, partition, offset) and
 *                 printed up to --limit, as JSON lines or an aligned table.
 *                 Records that are tombstones or do not decode are named on
 *                 stderr and skipped.
 *   verify-chain  every partition of the three event topics through
 *                 ev_chain.h; one line per partition with its head hash,
 *                 then a summary line (or one JSON document with --json).
 *
 * This main parses the command line (aud_cli.h) and wires it to the
 * command's module (aud_query.h, aud_verify.h), which do the work.
 *
 * stdout carries results only; logs and skipped records go to stderr.
 * Exit status: 0 success / chain intact, 1 chain broken, 2 usage or
 * configuration error, 3 Kafka failure (or out of memory).
 */
#include <stdio.h>
#include <string.h>

#include "aud_cli.h"
#include "aud_query.h"
#include "aud_verify.h"
#include "kq_config.h"
#include "kq_err.h"

static const char usage[] =
    "usage: " AUD_PROG " query [--aggregate-type T] [--aggregate-id ID] [--actor A]\n"
    "                   [--event-type E] [--since TIME] [--until TIME]\n"
    "                   [--format json|table] [--limit N]\n"
    "       " AUD_PROG " verify-chain [--json] [--expect-head TOPIC:PARTITION=HEX ...]\n"
    "\n"
    "Reads the event topics straight from Kafka (read_committed, up to the end\n"
    "offsets seen at start): works with every database gone.\n"
    "\n"
    "query: the events that pass every filter, oldest first (occurred_at, then\n"
    "topic, partition, offset).\n"
    "  --aggregate-type T  resource, workflow or run (reads only that topic)\n"
    "  --aggregate-id ID   one aggregate (reads only its partition and keys)\n"
    "  --actor A           events whose actor (API key name) is A\n"
    "  --event-type E      e.g. ResourceCreated (matched on the record header)\n"
    "  --since TIME        occurred_at >= TIME (seeks each partition by time)\n"
    "  --until TIME        occurred_at <= TIME\n"
    "  --format F          json (default: one object per line, the envelope as\n"
    "                      kcqrs-events decode prints it plus topic, partition,\n"
    "                      offset) or table (time, type, id, version, event, actor)\n"
    "  --limit N           at most N events (the oldest)\n"
    "  TIME is RFC 3339 (2026-11-22T10:00:00Z) or @<microseconds since the epoch>.\n"
    "\n"
    "verify-chain: checks the hash chain of every partition (each event's\n"
    "prev_hash is the SHA-256 of the previous record of its partition) and\n"
    "prints one line per partition, TOPIC:PARTITION=HEAD records=N and intact or\n"
    "the first break, then a summary. Store the heads outside Kafka and pass\n"
    "them back with --expect-head: a stored head must still be the hash of a\n"
    "record of its partition.\n"
    "  --json              one JSON document instead of lines\n"
    "\n"
    "Exit status: 0 success (chain intact), 1 chain broken, 2 usage or\n"
    "configuration error, 3 Kafka failure.\n";

/* The exit status of a failed run: 2 for usage or configuration, else 3. */
static int fail(int rc, const char *err)
{
    fprintf(stderr, "%s: %s\n", AUD_PROG, err);
    return rc == KQ_EINVAL || rc == KQ_ECONFIG ? 2 : 3;
}

static int cmd_query(int argc, char **argv)
{
    aud_query_opts o;
    kq_config cfg;
    char err[1024];
    int rc;

    if ((rc = aud_cli_query(argc, argv, &o, err, sizeof err)) != 0)
        return fail(rc, err);
    if (kq_config_load_and_init_log(&cfg, AUD_PROG, err, sizeof err) != 0)
        return fail(KQ_ECONFIG, err);
    rc = aud_query_run(&cfg, &o, stdout, err, sizeof err);
    kq_config_free(&cfg);
    return rc != 0 ? fail(rc, err) : 0;
}

static int cmd_verify_chain(int argc, char **argv)
{
    aud_verify_opts o;
    kq_config cfg;
    char err[1024];
    int rc, broken = 0;

    if ((rc = aud_cli_verify(argc, argv, &o, err, sizeof err)) != 0)
        return fail(rc, err);
    if (kq_config_load_and_init_log(&cfg, AUD_PROG, err, sizeof err) != 0) {
        aud_verify_opts_free(&o);
        return fail(KQ_ECONFIG, err);
    }
    rc = aud_verify_run(&cfg, &o, stdout, &broken, err, sizeof err);
    kq_config_free(&cfg);
    aud_verify_opts_free(&o);
    if (rc != 0)
        return fail(rc, err);
    return broken ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (kq_config_handle_flags(argc, argv, AUD_PROG, usage))
        return 0;
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "query") == 0)
        return cmd_query(argc - 1, argv + 1);
    if (strcmp(argv[1], "verify-chain") == 0)
        return cmd_verify_chain(argc - 1, argv + 1);
    fprintf(stderr, "%s: unknown command '%s' (query or verify-chain; see --help)\n", AUD_PROG,
            argv[1]);
    return 2;
}
