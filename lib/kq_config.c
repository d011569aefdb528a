/*
 * kq_config.c — the settings table and its parser; see kq_config.h.
 *
 * To add a setting: add a field to struct kq_config and a row to `settings`
 * below, then run `make docs` to refresh README.md.
 */
#include "kq_config.h"
#include "kq_err.h"
#include "kq_kprops.h"
#include "kq_util.h"
#include "kq_version.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    CFG_STRING,
    CFG_INT,
    CFG_LOG_LEVEL,
    CFG_LOG_FORMAT,
    CFG_DURATION,
    CFG_ACCESS_LOG
} cfg_type;

typedef struct cfg_setting {
    const char *name;
    const char *def;
    cfg_type type;
    size_t offset;
    long min, max; /* CFG_INT bounds; CFG_DURATION bounds in seconds (field: long) */
    const char *help;
} cfg_setting;

#define F(field) offsetof(kq_config, field)

static const cfg_setting settings[] = {
    {"KCQRS_BROKERS", "127.0.0.1:9092", CFG_STRING, F(brokers), 0, 0,
     "Kafka bootstrap servers, comma-separated host:port"},
    {"KCQRS_PG_DSN", "postgresql://kcqrs@127.0.0.1:5432/kcqrs", CFG_STRING, F(pg_dsn), 0, 0,
     "PostgreSQL connection string (libpq URI or key=value)"},
    {"KCQRS_TOPIC_PREFIX", "kcqrs", CFG_STRING, F(topic_prefix), 0, 0,
     "Topic prefix: topics are PREFIX.resource.events, ... and PREFIX.dlq"},
    {"KCQRS_PARTITIONS", "6", CFG_INT, F(partitions), 1, 10000,
     "Partitions per event topic, fixed when a topic is created"},
    {"KCQRS_REPLICATION_FACTOR", "1", CFG_INT, F(replication_factor), 1, 32,
     "Replication factor of created topics (3 on a cluster)"},
    {"KCQRS_MIN_INSYNC_REPLICAS", "1", CFG_INT, F(min_insync_replicas), 1, 32,
     "min.insync.replicas of created topics (2 on a cluster)"},
    {"KCQRS_KAFKA_QUEUE_KB", "8192", CFG_INT, F(kafka_queue_kb), 1024, 2097151,
     "Bytes (KiB) a Kafka consumer may prefetch (each of the projector's, the worker's, "
     "catch-up's)"},
    {"KCQRS_KAFKA_TIMEOUT_MS", "10000", CFG_INT, F(kafka_timeout_ms), 100, 600000,
     "Bound on Kafka admin, produce and commit calls, in milliseconds"},
    {"KCQRS_KAFKA_PROPERTIES", "none", CFG_STRING, F(kafka_properties), 0, 0,
     "File of librdkafka key=value lines (TLS, SASL, tuning) for every Kafka client; secrets "
     "are never printed (none: no file)"},
    {"KCQRS_KEYS_FILE", "var/keys", CFG_STRING, F(keys_file), 0, 0,
     "API keys file: name, roles, SHA-256 of the key per line (kcqrs-keys)"},
    {"KCQRS_KEK_FILE", "var/kek", CFG_STRING, F(kek_file), 0, 0,
     "Key-encryption keys file (0600/0640, nothing for others): \"VERSION HEX\" lines, the highest "
     "version wraps new data keys (kcqrs-keys kek-add); kcqrs-commands, kcqrs-worker and "
     "kcqrs-query stop at start without it; kcqrs-projector, kcqrs-replay, kcqrs-dlq and "
     "kcqrs-audit read it at the first sealed personal data"},
    {"KCQRS_KEYS_RELOAD_MS", "1000", CFG_INT, F(keys_reload_ms), 0, 3600000,
     "How often (at most) a service looks at the keys file for changes (kcqrs-keys revoke, "
     "rotate, create), in milliseconds; 0 = read it only at start"},
    {"KCQRS_LOG_LEVEL", "info", CFG_LOG_LEVEL, F(log_level), 0, 0,
     "Log level: debug, info, warn, error, off"},
    {"KCQRS_LOG_FORMAT", "human", CFG_LOG_FORMAT, F(log_format), 0, 0,
     "Log format on stderr: human or json (one object per line; access log lines add "
     "request_id, route, status, duration_ms, actor, aggregate_id, trace_id)"},
    {"KCQRS_LOG_FLUSH_MS", "100", CFG_INT, F(log_flush_ms), 0, 60000,
     "Log lines wait in a per-thread buffer at most this long (WARN and ERROR lines, exit: "
     "at once); 0 = one write per line"},
    {"KCQRS_LMDB_DIR", "var/lmdb", CFG_STRING, F(lmdb_dir), 0, 0,
     "LMDB directory; kcqrs-commands keeps its state snapshot in DIR/commands"},
    {"KCQRS_COMMANDS_ADDR", "127.0.0.1:8080", CFG_STRING, F(commands_addr), 0, 0,
     "host:port the command API listens on"},
    {"KCQRS_COMMANDS_INTERNAL_ADDR", "127.0.0.1:8090", CFG_STRING, F(cmd_internal_addr), 0, 0,
     "host:port of the command API's internal listener (same routes and keys, own connection "
     "budget, no per-IP limit; kcqrs-worker records there); none: no internal listener"},
    {"KCQRS_HTTP_MAX_BODY", "65536", CFG_INT, F(http_max_body), 1, 1073741824,
     "Request body cap in bytes (larger: 413)"},
    {"KCQRS_HTTP_MAX_CONNECTIONS", "4096", CFG_INT, F(http_max_conns), 1, 1000000,
     "Concurrent HTTP connections per listener (at least KCQRS_HTTP_THREADS); at the limit the "
     "one waiting longest for a request head is closed, else 503"},
    {"KCQRS_HTTP_MAX_PER_IP", "64", CFG_INT, F(http_max_per_ip), 0, 1000000,
     "Concurrent HTTP connections per client IP on the public port (0: no limit); more: 503"},
    {"KCQRS_HTTP_TIMEOUT_S", "30", CFG_INT, F(http_timeout_s), 0, 86400,
     "Idle keep-alive HTTP connection timeout in seconds (0: none)"},
    {"KCQRS_HTTP_CONN_MEMORY", "65536", CFG_INT, F(http_conn_memory), 4096, 16777216,
     "Read buffer cap per HTTP connection (request head and pipelined bytes), in bytes"},
    {"KCQRS_HTTP_THREADS", "4", CFG_INT, F(http_threads), 1, 1024,
     "HTTP server threads, each polling its connections with epoll"},
    {"KCQRS_HTTP_MAX_BODY_PUBLIC", "16384", CFG_INT, F(http_max_body_public), 1, 1073741824,
     "Request body cap in bytes of routes that need no key, e.g. webhooks (larger: 413)"},
    {"KCQRS_HTTP_HEADER_TIMEOUT_MS", "10000", CFG_INT, F(http_head_timeout_ms), 0, 3600000,
     "A request head must arrive within this many ms of its first byte (or the accept); else "
     "408 (0: none)"},
    {"KCQRS_HTTP_MIN_BODY_RATE", "1024", CFG_INT, F(http_min_body_rate), 0, 1073741824,
     "A request body must arrive at this many bytes/s after a 2 s grace; else 408 (0: none)"},
    {"KCQRS_HTTP_TLS_CERT", "none", CFG_STRING, F(http_tls_cert), 0, 0,
     "PEM certificate chain: with KCQRS_HTTP_TLS_KEY every HTTP listener speaks HTTPS (none: "
     "plain HTTP)"},
    {"KCQRS_HTTP_TLS_KEY", "none", CFG_STRING, F(http_tls_key), 0, 0,
     "PEM private key of KCQRS_HTTP_TLS_CERT"},
    {"KCQRS_HTTP_TLS_CA", "system", CFG_STRING, F(http_tls_ca), 0, 0,
     "PEM CA bundle the kcqrs clients (kcqrs-worker's records, tools) trust for https (system: "
     "the system's)"},
    {"KCQRS_HTTP_TRUSTED_PROXIES", "none", CFG_STRING, F(http_proxies), 0, 0,
     "Comma-separated CIDRs of proxies whose X-Forwarded-For names the client (logs); exempt "
     "from KCQRS_HTTP_MAX_PER_IP (none: trust none)"},
    {"KCQRS_CORS_ORIGINS", "none", CFG_STRING, F(cors_origins), 0, 0,
     "Browser origins allowed to call the HTTP APIs (CORS): comma-separated "
     "scheme://host[:port], or * for any (none: no CORS headers)"},
    {"KCQRS_ACCESS_LOG", "all", CFG_ACCESS_LOG, F(access_log_every), 0, 0,
     "HTTP access log lines (at info; /health, /ready and /metrics at debug): all, errors "
     "(4xx/5xx only) or sample:N (every N-th success and every error)"},
    {"KCQRS_OTLP_ENDPOINT", "none", CFG_STRING, F(otlp_endpoint), 0, 0,
     "OTLP/HTTP base URL spans are exported to as JSON (POST <url>/v1/traces, e.g. "
     "http://127.0.0.1:4318); none: no export (traceparent still propagated)"},
    {"KCQRS_OTLP_QUEUE", "4096", CFG_INT, F(otlp_queue), 1, 1000000,
     "Spans waiting for export at most; when full, new spans are dropped (counted in "
     "kcqrs_trace_spans_dropped_total)"},
    {"KCQRS_RATE_KEY_PER_S", "200000", CFG_INT, F(rate_key_per_s), 0, 100000000,
     "Requests per second each API key may make to a service (a token bucket per key and "
     "process; more: 429 rate_limited with Retry-After); 0: no limit"},
    {"KCQRS_RATE_KEY_BURST", "400000", CFG_INT, F(rate_key_burst), 1, 100000000,
     "Requests an API key may make at once above KCQRS_RATE_KEY_PER_S (the bucket's size)"},
    {"KCQRS_RATE_LIMIT_ENTRIES", "16384", CFG_INT, F(rate_entries), 16, 16777216,
     "Buckets each rate limiter keeps (API keys; webhook failures per address and per "
     "workflow); the least recently used is forgotten when full"},
    {"KCQRS_HOOK_FAIL_BURST", "20", CFG_INT, F(hook_fail_burst), 1, 1000000,
     "Failed webhook attempts (401) a client address, or a workflow, may make before POST "
     "/hooks answers 429 rate_limited with Retry-After"},
    {"KCQRS_HOOK_FAIL_PER_MIN", "10", CFG_INT, F(hook_fail_per_min), 1, 1000000,
     "Failed webhook attempts per minute regained by each address and each workflow"},
    {"KCQRS_BATCH_MAX", "256", CFG_INT, F(batch_max), 1, 100000,
     "Group commit: most commands in one Kafka transaction"},
    {"KCQRS_BATCH_LINGER_US", "1000", CFG_INT, F(batch_linger_us), 0, 1000000,
     "Group commit: how long a batch waits for more commands, in microseconds"},
    {"KCQRS_BATCH_LINGER_MAX_US", "4000", CFG_INT, F(batch_linger_max_us), 0, 1000000,
     "Group commit: wait up to half the last commit time, at most this (us), for as many "
     "commands as were just answered; 0 = only KCQRS_BATCH_LINGER_US"},
    {"KCQRS_SNAPSHOT_EVERY", "10000", CFG_INT, F(snapshot_every), 1, 100000000,
     "kcqrs-commands snapshots its state to LMDB after this many new events"},
    {"KCQRS_IDEMPOTENCY_TTL", "24h", CFG_DURATION, F(idempotency_ttl_s), 1, 3650L * 86400,
     "kcqrs-commands keeps an Idempotency-Key's answer, and a finished run, this long after "
     "its event's time (a number with s, m, h or d: 24h, 90m, 3600s)"},
    {"KCQRS_QUERY_ADDR", "127.0.0.1:8081", CFG_STRING, F(query_addr), 0, 0,
     "host:port the query API listens on"},
    {"KCQRS_PROJECTOR_ADDR", "127.0.0.1:8082", CFG_STRING, F(projector_addr), 0, 0,
     "host:port of kcqrs-projector's admin endpoints (/health, /ready, /metrics)"},
    {"KCQRS_LMDB_MAP_MB", "4096", CFG_INT, F(lmdb_map_mb), 1, 1048576,
     "Largest size of the LMDB read model (DIR/readmodel), in MiB; the file grows as needed"},
    {"KCQRS_PROJ_BATCH_MAX", "2000", CFG_INT, F(proj_batch_max), 1, 1000000,
     "Projector: most events applied in one LMDB or PostgreSQL transaction"},
    {"KCQRS_PROJ_BATCH_MS", "5", CFG_INT, F(proj_batch_ms), 0, 60000,
     "Projector: how long a batch may wait for more events, in milliseconds"},
    {"KCQRS_QUERY_WAIT_MS", "5000", CFG_INT, F(query_wait_ms), 0, 600000,
     "Query API: longest wait for a consistency token before 503 projection_behind"},
    {"KCQRS_QUERY_READY_LAG", "100000", CFG_INT, F(query_ready_lag), 0, 2147483647,
     "Query API: /ready fails while a read model lags the log by more events than this"},
    {"KCQRS_STREAM_HEARTBEAT_MS", "15000", CFG_INT, F(stream_heartbeat_ms), 10, 3600000,
     "Query API event stream: a heartbeat after this many milliseconds without an event"},
    {"KCQRS_STREAM_BUFFER_KB", "1024", CFG_INT, F(stream_buffer_kb), 4, 1048576,
     "Query API event stream: unsent KiB per stream; while this much waits, the stream "
     "stops reading Kafka"},
    {"KCQRS_STREAM_MAX", "64", CFG_INT, F(stream_max), 0, 100000,
     "Query API event stream: concurrent streams (503 beyond; 0: none)"},
    {"KCQRS_STREAM_STALL_MS", "10000", CFG_INT, F(stream_stall_ms), 10, 3600000,
     "Query API event stream: a client whose buffer is full and that reads nothing this long "
     "is disconnected"},
    {"KCQRS_CONSOLE_COMMANDS_URL", "http://127.0.0.1:8080", CFG_STRING, F(console_cmd_url), 0, 0,
     "Web console (kcqrs-query /console): base URL of kcqrs-commands the browser sends "
     "commands to (http[s]://host[:port]); its KCQRS_CORS_ORIGINS must allow the query API"},
    {"KCQRS_PG_SCHEMA", "kcqrs", CFG_STRING, F(pg_schema), 0, 0,
     "PostgreSQL schema of the read model ([a-z_][a-z0-9_]{0,39}); kcqrs-replay builds shadows "
     "beside it"},
    {"KCQRS_REPLAY_BATCH_MAX", "50000", CFG_INT, F(replay_batch_max), 1, 10000000,
     "kcqrs-replay: most events applied to a shadow read model in one transaction"},
    {"KCQRS_REPLAY_RUNS_KEEP", "100", CFG_INT, F(replay_runs_keep), 1, 1000000,
     "kcqrs-replay: rows of <KCQRS_PG_SCHEMA>_history.replay_runs kept per target (the newest; "
     "each run deletes older ones)"},
    {"KCQRS_WORKER_ADDR", "127.0.0.1:8083", CFG_STRING, F(worker_addr), 0, 0,
     "kcqrs-worker: listen address of /health, /ready and /metrics"},
    {"KCQRS_WORKER_COMMANDS_URL", "auto", CFG_STRING, F(worker_commands_url), 0, 0,
     "kcqrs-worker: base URL of kcqrs-commands for attempt records (auto: "
     "http(s)://KCQRS_COMMANDS_INTERNAL_ADDR, or KCQRS_COMMANDS_ADDR when that is none; https "
     "when KCQRS_HTTP_TLS_CERT is set)"},
    {"KCQRS_WORKER_KEY_FILE", "var/worker.key", CFG_STRING, F(worker_key_file), 0, 0,
     "kcqrs-worker: file holding its API key (role worker), mode 0600"},
    {"KCQRS_WORKER_GROUP", "auto", CFG_STRING, F(worker_group), 0, 0,
     "kcqrs-worker: Kafka consumer group of the workers (auto: <prefix>.worker)"},
    {"KCQRS_WORKER_MAX_RUNS", "1000", CFG_INT, F(worker_max_runs), 1, 1000000,
     "kcqrs-worker: runs with an action in flight at once; more wait their turn"},
    {"KCQRS_WORKER_RECORD_BATCH", "128", CFG_INT, F(worker_record_batch), 0, 256,
     "kcqrs-worker: most attempt records per request to kcqrs-commands (0 or 1: one request "
     "per record)"},
    {"KCQRS_WORKER_CONNECT_TIMEOUT_MS", "5000", CFG_INT, F(worker_connect_timeout_ms), 1, 600000,
     "kcqrs-worker: connect timeout of one action attempt"},
    {"KCQRS_WORKER_TIMEOUT_MS", "30000", CFG_INT, F(worker_timeout_ms), 1, 3600000,
     "kcqrs-worker: total timeout of one action attempt, connect included"},
    {"KCQRS_WORKER_RESPONSE_MAX", "1048576", CFG_INT, F(worker_response_max), 1, 1073741824,
     "kcqrs-worker: largest response body accepted, bytes (more: the attempt fails)"},
    {"KCQRS_WORKER_MAX_CONNECTIONS", "256", CFG_INT, F(worker_max_connections), 1, 100000,
     "kcqrs-worker: outbound connections open at once"},
    {"KCQRS_WORKER_ALLOW_PRIVATE", "0", CFG_INT, F(worker_allow_private), 0, 1,
     "kcqrs-worker: 1 allows actions to loopback, private and link-local addresses"},
    {"KCQRS_WORKER_CA_FILE", "system", CFG_STRING, F(worker_ca_file), 0, 0,
     "kcqrs-worker: PEM CA bundle for https and smtps (system: the system's)"},
    {"KCQRS_WORKER_RETRY_BASE_MS", "1000", CFG_INT, F(worker_retry_base_ms), 1, 3600000,
     "kcqrs-worker: bound of the first retry delay (full jitter)"},
    {"KCQRS_WORKER_RETRY_FACTOR", "2", CFG_INT, F(worker_retry_factor), 1, 100,
     "kcqrs-worker: growth of the retry delay bound per attempt"},
    {"KCQRS_WORKER_RETRY_CAP_MS", "60000", CFG_INT, F(worker_retry_cap_ms), 1, 86400000,
     "kcqrs-worker: cap of every retry delay, Retry-After included"},
    {"KCQRS_WORKER_MAX_ATTEMPTS", "5", CFG_INT, F(worker_max_attempts), 1, 1000,
     "kcqrs-worker: attempts per step in all"},
    {"KCQRS_WORKER_BREAKER_FAILURES", "5", CFG_INT, F(worker_breaker_failures), 1, 100000,
     "kcqrs-worker: consecutive failures that open a destination's circuit breaker"},
    {"KCQRS_WORKER_BREAKER_COOLDOWN_MS", "30000", CFG_INT, F(worker_breaker_cooldown_ms), 1,
     86400000, "kcqrs-worker: how long an open breaker waits before a trial request"},
    {"KCQRS_WORKER_SMTP_URL", "none", CFG_STRING, F(worker_smtp_url), 0, 0,
     "kcqrs-worker: smtp:// or smtps:// server for email actions (none: email steps fail)"},
    {"KCQRS_WORKER_SMTP_FROM", "kcqrs@localhost", CFG_STRING, F(worker_smtp_from), 0, 0,
     "kcqrs-worker: envelope and header sender of emails"},
    {"KCQRS_WORKER_SMTP_USER", "none", CFG_STRING, F(worker_smtp_user), 0, 0,
     "kcqrs-worker: SMTP login (none: no authentication)"},
    {"KCQRS_WORKER_SMTP_PASSWORD", "none", CFG_STRING, F(worker_smtp_password), 0, 0,
     "kcqrs-worker: SMTP password"},
    {"KCQRS_FAILPOINT", "none", CFG_STRING, F(failpoint), 0, 0,
     "Tests only: kcqrs-projector kills itself (SIGKILL) at this named point (none: off)"},
};

#define NSETTINGS (sizeof settings / sizeof settings[0])

/*
 * Which binaries read which setting (--help lists only a binary's own). A
 * name ending in '*' covers every setting it prefixes; the first match wins;
 * a setting no row matches is listed by every binary. Kept apart from
 * `settings` so that a new setting needs no entry here to be shown.
 */
#define B_KAFKA                                                                                    \
    (KQ_BIN_COMMANDS | KQ_BIN_QUERY | KQ_BIN_PROJECTOR | KQ_BIN_WORKER | KQ_BIN_REPLAY |           \
     KQ_BIN_AUDIT | KQ_BIN_EVENTS | KQ_BIN_DLQ)
#define B_HTTPD (KQ_BIN_COMMANDS | KQ_BIN_QUERY | KQ_BIN_PROJECTOR | KQ_BIN_WORKER)
#define B_TOPICS (KQ_BIN_COMMANDS | KQ_BIN_PROJECTOR | KQ_BIN_QUERY)

static const struct cfg_readers {
    const char *name;
    unsigned bins;
} readers[] = {
    {"KCQRS_LOG_*", KQ_BIN_ALL},
    {"KCQRS_BROKERS", B_KAFKA},
    {"KCQRS_TOPIC_PREFIX", B_KAFKA},
    {"KCQRS_PARTITIONS", B_KAFKA},
    {"KCQRS_KAFKA_*", B_KAFKA},
    {"KCQRS_REPLICATION_FACTOR", B_TOPICS},
    {"KCQRS_MIN_INSYNC_REPLICAS", B_TOPICS},
    {"KCQRS_PG_DSN", KQ_BIN_PROJECTOR | KQ_BIN_QUERY | KQ_BIN_REPLAY},
    {"KCQRS_PG_SCHEMA", KQ_BIN_PROJECTOR | KQ_BIN_QUERY | KQ_BIN_REPLAY},
    {"KCQRS_KEYS_FILE", KQ_BIN_COMMANDS | KQ_BIN_QUERY | KQ_BIN_KEYS},
    {"KCQRS_KEYS_RELOAD_MS", KQ_BIN_COMMANDS | KQ_BIN_QUERY},
    {"KCQRS_KEK_FILE", KQ_BIN_COMMANDS | KQ_BIN_WORKER | KQ_BIN_KEYS | KQ_BIN_QUERY |
                           KQ_BIN_PROJECTOR | KQ_BIN_REPLAY | KQ_BIN_AUDIT | KQ_BIN_DLQ},
    {"KCQRS_LMDB_DIR", KQ_BIN_COMMANDS | KQ_BIN_PROJECTOR | KQ_BIN_QUERY | KQ_BIN_REPLAY},
    {"KCQRS_LMDB_MAP_MB", KQ_BIN_PROJECTOR | KQ_BIN_QUERY | KQ_BIN_REPLAY},
    {"KCQRS_COMMANDS_ADDR", KQ_BIN_COMMANDS | KQ_BIN_WORKER},
    {"KCQRS_COMMANDS_INTERNAL_ADDR", KQ_BIN_COMMANDS | KQ_BIN_WORKER},
    {"KCQRS_HTTP_TLS_CA", KQ_BIN_WORKER},
    {"KCQRS_HTTP_*", B_HTTPD},
    {"KCQRS_CORS_ORIGINS", KQ_BIN_COMMANDS | KQ_BIN_QUERY},
    {"KCQRS_ACCESS_LOG", B_HTTPD},
    {"KCQRS_OTLP_*", B_HTTPD},
    {"KCQRS_RATE_*", KQ_BIN_COMMANDS | KQ_BIN_QUERY},
    {"KCQRS_HOOK_*", KQ_BIN_COMMANDS},
    {"KCQRS_BATCH_MAX", KQ_BIN_COMMANDS | KQ_BIN_WORKER},
    {"KCQRS_BATCH_*", KQ_BIN_COMMANDS},
    {"KCQRS_SNAPSHOT_EVERY", KQ_BIN_COMMANDS},
    {"KCQRS_IDEMPOTENCY_TTL", KQ_BIN_COMMANDS},
    {"KCQRS_QUERY_ADDR", KQ_BIN_QUERY | KQ_BIN_REPLAY},
    {"KCQRS_QUERY_READY_LAG", KQ_BIN_QUERY | KQ_BIN_PROJECTOR},
    {"KCQRS_QUERY_*", KQ_BIN_QUERY},
    {"KCQRS_STREAM_*", KQ_BIN_QUERY},
    {"KCQRS_CONSOLE_*", KQ_BIN_QUERY},
    {"KCQRS_PROJECTOR_ADDR", KQ_BIN_PROJECTOR},
    {"KCQRS_PROJ_*", KQ_BIN_PROJECTOR | KQ_BIN_REPLAY},
    {"KCQRS_REPLAY_*", KQ_BIN_REPLAY},
    {"KCQRS_WORKER_*", KQ_BIN_WORKER},
    {"KCQRS_FAILPOINT", KQ_BIN_PROJECTOR},
};

#define NREADERS (sizeof readers / sizeof readers[0])

static const struct cfg_bin {
    const char *prog;
    unsigned bit;
} bins_by_name[] = {
    {"kcqrs-commands", KQ_BIN_COMMANDS},
    {"kcqrs-query", KQ_BIN_QUERY},
    {"kcqrs-projector", KQ_BIN_PROJECTOR},
    {"kcqrs-worker", KQ_BIN_WORKER},
    {"kcqrs-replay", KQ_BIN_REPLAY},
    {"kcqrs-audit", KQ_BIN_AUDIT},
    {"kcqrs-events", KQ_BIN_EVENTS},
    {"kcqrs-keys", KQ_BIN_KEYS},
    {"kcqrs-dlq", KQ_BIN_DLQ},
};

unsigned kq_config_bin_of(const char *prog)
{
    for (size_t i = 0; i < sizeof bins_by_name / sizeof bins_by_name[0]; i++)
        if (strcmp(prog, bins_by_name[i].prog) == 0)
            return bins_by_name[i].bit;
    return 0;
}

static unsigned readers_of(const char *name)
{
    for (size_t i = 0; i < NREADERS; i++) {
        size_t n = strlen(readers[i].name);
        if (n > 0 && readers[i].name[n - 1] == '*' ? strncmp(name, readers[i].name, n - 1) == 0
                                                   : strcmp(name, readers[i].name) == 0)
            return readers[i].bins;
    }
    return KQ_BIN_ALL;
}

int kq_config_reads(const char *name, unsigned bins)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return (readers_of(name) & bins) != 0;
    return 0;
}

static int set_one(kq_config *cfg, const cfg_setting *s, const char *val, char *errstr,
                   size_t errlen)
{
    char *base = (char *)cfg + s->offset;
    long v;

    switch (s->type) {
    case CFG_STRING:
        if (*val == '\0')
            return kq_seterr(errstr, errlen, KQ_ECONFIG, "%s must not be empty", s->name);
        if ((*(char **)base = strdup(val)) == NULL)
            return kq_seterr(errstr, errlen, KQ_ENOMEM, "%s: out of memory", s->name);
        return 0;
    case CFG_INT:
        if (kq_parse_long(val, s->min, s->max, &v) != 0)
            return kq_seterr(errstr, errlen, KQ_ECONFIG, "%s='%s' is not an integer in %ld..%ld",
                             s->name, val, s->min, s->max);
        *(int *)base = (int)v;
        return 0;
    case CFG_DURATION:
        if (kq_parse_duration_s(val, s->min, s->max, &v) != 0)
            return kq_seterr(errstr, errlen, KQ_ECONFIG,
                             "%s='%s' is not a duration of %lds..%ldd (like 24h, 90m, 3600s)",
                             s->name, val, s->min, s->max / 86400);
        *(long *)base = v;
        return 0;
    case CFG_LOG_LEVEL: {
        kq_log_level l;
        if (kq_log_level_parse(val, &l) != 0)
            return kq_seterr(errstr, errlen, KQ_ECONFIG,
                             "%s='%s' is not one of debug, info, warn, error, off", s->name, val);
        *(int *)base = (int)l;
        return 0;
    }
    case CFG_ACCESS_LOG: {
        long every = -1;
        if (strcmp(val, "all") == 0)
            every = 1;
        else if (strcmp(val, "errors") == 0)
            every = 0;
        else if (strncmp(val, "sample:", 7) != 0 || kq_parse_long(val + 7, 1, 1000000, &every) != 0)
            every = -1;
        if (every < 0)
            return kq_seterr(errstr, errlen, KQ_ECONFIG,
                             "%s='%s' is not all, errors or sample:N (N in 1..1000000)", s->name,
                             val);
        *(int *)base = (int)every;
        return 0;
    }
    case CFG_LOG_FORMAT: {
        kq_log_format f;
        if (kq_log_format_parse(val, &f) != 0)
            return kq_seterr(errstr, errlen, KQ_ECONFIG, "%s='%s' is not human or json", s->name,
                             val);
        *(int *)base = (int)f;
        return 0;
    }
    }
    return KQ_EINVAL;
}

int kq_config_load(kq_config *cfg, char *errstr, size_t errlen)
{
    int rc = 0;

    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *val = getenv(settings[i].name);
        if (val == NULL)
            val = settings[i].def;
        if ((rc = set_one(cfg, &settings[i], val, errstr, errlen)) != 0)
            goto out;
    }
    if (cfg->min_insync_replicas > cfg->replication_factor) {
        rc = kq_seterr(errstr, errlen, KQ_ECONFIG,
                       "KCQRS_MIN_INSYNC_REPLICAS (%d) exceeds KCQRS_REPLICATION_FACTOR (%d)",
                       cfg->min_insync_replicas, cfg->replication_factor);
        goto out;
    }
    for (const char *p = cfg->topic_prefix; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-')) {
            rc = kq_seterr(errstr, errlen, KQ_ECONFIG,
                           "KCQRS_TOPIC_PREFIX='%s' may only hold [A-Za-z0-9._-]",
                           cfg->topic_prefix);
            goto out;
        }
    }
    if ((strcmp(cfg->http_tls_cert, "none") == 0) != (strcmp(cfg->http_tls_key, "none") == 0)) {
        rc = kq_seterr(errstr, errlen, KQ_ECONFIG,
                       "KCQRS_HTTP_TLS_CERT and KCQRS_HTTP_TLS_KEY: set both or neither");
        goto out;
    }
    if (cfg->http_max_conns < cfg->http_threads) {
        rc = kq_seterr(errstr, errlen, KQ_ECONFIG,
                       "KCQRS_HTTP_MAX_CONNECTIONS (%d) is below KCQRS_HTTP_THREADS (%d)",
                       cfg->http_max_conns, cfg->http_threads);
        goto out;
    }
    {
        const char *p = cfg->pg_schema;
        size_t n = strlen(p);
        int ok = n >= 1 && n <= 40 && ((*p >= 'a' && *p <= 'z') || *p == '_');
        for (; ok && *p; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        if (!ok) {
            rc = kq_seterr(errstr, errlen, KQ_ECONFIG,
                           "KCQRS_PG_SCHEMA='%s' must match [a-z_][a-z0-9_]{0,39}", cfg->pg_schema);
            goto out;
        }
    }
    if (strlen(cfg->topic_prefix) > 200) {
        rc = kq_seterr(errstr, errlen, KQ_ECONFIG, "KCQRS_TOPIC_PREFIX is longer than 200");
        goto out;
    }
    if (strcmp(cfg->kafka_properties, "none") != 0)
        rc = kq_kprops_load(cfg->kafka_properties, &cfg->kafka_props, errstr, errlen);
out:
    if (rc != 0)
        kq_config_free(cfg);
    return rc;
}

void kq_config_free(kq_config *cfg)
{
    kq_kprops_free(cfg->kafka_props);
    cfg->kafka_props = NULL;
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (settings[i].type == CFG_STRING) {
            char **p = (char **)((char *)cfg + settings[i].offset);
            free(*p);
            *p = NULL;
        }
    }
}

int kq_config_load_and_init_log(kq_config *cfg, const char *prog, char *errstr, size_t errlen)
{
    int rc = kq_config_load(cfg, errstr, errlen);
    if (rc == 0) {
        kq_log_init(prog, (kq_log_level)cfg->log_level, (kq_log_format)cfg->log_format);
        kq_log_set_flush_ms(cfg->log_flush_ms);
        kq_config_log_kafka_properties(cfg);
    }
    return rc;
}

void kq_config_log_kafka_properties(const kq_config *cfg)
{
    const kq_kprops *p = cfg->kafka_props;
    char line[2048];
    size_t off = 0;

    if (p == NULL)
        return;
    line[0] = '\0';
    for (size_t i = 0; i < p->n && off < sizeof line; i++) {
        int n =
            snprintf(line + off, sizeof line - off, " %s=%s", p->keys[i], kq_kprops_shown(p, i));
        if (n < 0)
            break;
        off += (size_t)n;
    }
    kq_log(KQ_LOG_INFO, "kafka properties from %s (%zu):%s", p->path, p->n, line);
}

void kq_config_print_help_for(FILE *out, unsigned bins)
{
    fprintf(out, "Configuration (environment variables):\n");
    for (size_t i = 0; i < NSETTINGS; i++)
        if (readers_of(settings[i].name) & bins)
            fprintf(out, "  %-26s %-40s %s\n", settings[i].name, settings[i].def, settings[i].help);
}

void kq_config_print_help(FILE *out)
{
    kq_config_print_help_for(out, KQ_BIN_ALL);
}

void kq_config_print_markdown(FILE *out)
{
    fprintf(out, "| variable | default | meaning |\n|---|---|---|\n");
    for (size_t i = 0; i < NSETTINGS; i++)
        fprintf(out, "| `%s` | `%s` | %s |\n", settings[i].name, settings[i].def, settings[i].help);
}

int kq_config_topic(const kq_config *cfg, const char *aggregate_type, char *out, size_t outlen)
{
    return snprintf(out, outlen, "%s.%s.events", cfg->topic_prefix, aggregate_type);
}

int kq_config_handle_flags(int argc, char **argv, const char *prog, const char *usage)
{
    unsigned bin = kq_config_bin_of(prog);

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            kq_version_print(stdout, prog);
            return 1;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            fputc('\n', stdout);
            kq_config_print_help_for(stdout, bin ? bin : KQ_BIN_ALL);
            return 1;
        }
    }
    return kq_config_handle_help(argc, argv, usage);
}

int kq_config_handle_help(int argc, char **argv, const char *usage)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            fputc('\n', stdout);
            kq_config_print_help(stdout);
            return 1;
        }
        if (strcmp(argv[i], "--config-markdown") == 0) {
            kq_config_print_markdown(stdout);
            return 1;
        }
    }
    return 0;
}
