# tests/e2e/replay_pg_helpers.bash — kcqrs-replay's PostgreSQL target, black-box,
# for replay_pg.bats.
#
# Load after helpers, commands_helpers and projector_helpers.
#
# rp_replay ARGS...: run build/bin/kcqrs-replay ARGS (LMDB dir of this file,
#   120 s at most), output (stdout and stderr) appended to
#   $BATS_FILE_TMPDIR/replay.log and left in $RP_OUT; sets RP_RC.
# pg_digest [SCHEMA]: one line per read-model table of SCHEMA (default
#   $KCQRS_PG_SCHEMA or kcqrs): "<table> <rows> <md5 of every row's text in
#   primary key order>", computed by psql alone (an oracle independent of
#   rp_fp and rp_pg.c), schema_migrations left out.
# pg_indexes [SCHEMA]: "<table> <index definition without the schema>" per
#   index, sorted.
# pg_schemas: the kcqrs* schemas of the database, one per line (but the run
#   history's, kcqrs_history).
# replay_runs N: the last N recorded kcqrs-replay results (see below).

rp_replay() {
    local out="$BATS_FILE_TMPDIR/replay.out"
    echo "--- kcqrs-replay $*" >>"$BATS_FILE_TMPDIR/replay.log"
    RP_RC=0
    KCQRS_LMDB_DIR="${PROJ_LMDB:-$BATS_FILE_TMPDIR/lmdb}" timeout 120 \
        "$KCQRS_BIN/kcqrs-replay" "$@" >"$out" 2>&1 3>&- </dev/null || RP_RC=$?
    RP_OUT=$(cat "$out")
    cat "$out" >>"$BATS_FILE_TMPDIR/replay.log"
    echo "kcqrs-replay $* -> exit $RP_RC"
    tail -n 30 "$out"
}

pg_digest() {
    local s="${1:-${KCQRS_PG_SCHEMA:-kcqrs}}"
    kq_psql -v s="$s" <<'SQL'
SELECT format('SELECT %L || '' '' || count(*) || '' '' || coalesce(md5(string_agg(t::text, E''\n'' ORDER BY %s)), ''-'') FROM %I.%I t',
              c.relname,
              (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
                 FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                WHERE i.indrelid = c.oid AND i.indisprimary),
              n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = :'s' AND c.relkind = 'r' AND c.relname <> 'schema_migrations'
 ORDER BY c.relname
\gexec
SQL
}

pg_indexes() {
    local s="${1:-${KCQRS_PG_SCHEMA:-kcqrs}}"
    kq_psql -v s="$s" <<<"SELECT tablename || ' ' || replace(indexdef, :'s' || '.', '')
                            FROM pg_indexes WHERE schemaname = :'s' ORDER BY 1"
}

pg_schemas() {
    kq_psql -c "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'kcqrs%'
                AND nspname <> 'kcqrs_history' ORDER BY 1"
}

# replay_runs N: the last N rows of the run history (replay/rp_record.h), oldest
# first: "kind target outcome differences" (differences - when NULL).
replay_runs() {
    kq_psql -F ' ' -c "SELECT kind, target, outcome, coalesce(differences::text, '-') FROM
                       (SELECT * FROM kcqrs_history.replay_runs ORDER BY id DESC LIMIT $1) r
                       ORDER BY id"
}
