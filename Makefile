# kcqrs — one non-recursive Makefile (see ARCHITECTURE.md, "Build").
#
#   make                      build every binary into build/bin/
#   make test                 install what is missing, unit tests, conformance, end-to-end
#   make SANITIZE=address,undefined test
#                             same sources built into build/san-address-undefined/, then
#                             unit and conformance tests under the sanitizers
#   make up / make down       start / stop Kafka, PostgreSQL (and later the services) in var/
#   make bench                benchmark table (medians and ratios to baselines)
#   make fuzz                 libFuzzer targets with clang (tests/fuzz/)
#   make fuzz-http            the HTTP parser's fuzz target, FUZZ_RUNS (10M) executions; fuzz-long: 100M
#   make check-layers         which folder includes which (LAYERS below); every build runs it
#   make test-faults          the fault campaign (tests/faults/run.sh, at most 40 minutes);
#                             make test-faults-short: its 5-minute version (in .ci/run)
#
# Conventions that keep this file short:
#   - every .c in lib/ events/ commands/ projections/ query-api/ replay/ worker/ goes into
#     one static library, except files named kcqrs_*.c: each of those is a main() and
#     becomes build/bin/kcqrs-* (underscores turn into dashes);
#   - tests/unit/test_*.c, tests/tools/*.c and bench/*.c are one program each;
#   - layering: each source folder compiles with the include paths of the folders it may
#     use (LAYERS below) and nothing else, so an include of a forbidden folder's header
#     fails with "No such file or directory"; before that, `make check-layers` (run by
#     every build) names the file, the line and the rule. tests/, bench/ and the fuzz
#     targets see every folder.

CC       ?= cc
WERROR   ?= 1
SANITIZE ?=

MODULES  := lib events commands projections query-api replay worker
PKGS     := rdkafka libpq lmdb libcurl jansson libssl libcrypto
# libmicrohttpd is no part of the services (lib/kq_http.c is our own server); it stays an
# independent HTTP peer for the programs in MHD_PROGS only (a webhook sink, a baseline).
MHD_PKG  := libmicrohttpd

comma    := ,
ifeq ($(SANITIZE),)
BUILD    := build
else
BUILD    := build/san-$(subst $(comma),-,$(SANITIZE))
endif
BIN      := $(BUILD)/bin
OBJ      := $(BUILD)/obj

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla \
            -Wpointer-arith -Wcast-align -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN     += -Werror
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) $(MHD_PKG) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lrdkafka -lpq -llmdb -lcurl -ljansson -lssl -lcrypto)
MHD_LIBS   := $(shell pkg-config --libs $(MHD_PKG) 2>/dev/null || echo -lmicrohttpd)
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -pthread $(WARN) $(PKG_CFLAGS) -MMD -MP
LDLIBS   += $(PKG_LIBS) -pthread -lm
ifneq ($(SANITIZE),)
CFLAGS   += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all -O1
LDFLAGS  += -fsanitize=$(SANITIZE)
endif

# Layering: FOLDER:the folders whose headers it may include. Each folder compiles with
# exactly these -I paths (INC_<folder>); ops/check-layers.sh checks the same table on the
# #include lines and names any offender. tests/ (unit, tools, fuzz) and bench/ see every
# folder (INC_ALL); the generated SQL file compiles as a file of projections/.
LAYERS   := lib:lib \
            events:events,lib \
            commands:commands,events,lib \
            projections:projections,events,lib \
            query-api:query-api,events,lib \
            worker:worker,events,lib \
            replay:replay,projections,events,lib
$(foreach l,$(LAYERS),$(eval INC_$(firstword $(subst :, ,$(l))) := \
    $(addprefix -I,$(subst $(comma), ,$(word 2,$(subst :, ,$(l)))))))
INC_ALL  := $(addprefix -I,$(MODULES))
# The -I flags of source file $(1): its folder's, or every folder's.
inc_of    = $(or $(INC_$(firstword $(subst /, ,$(1)))),$(INC_ALL))

ALL_SRC  := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
MAIN_SRC := $(foreach m,$(MODULES),$(wildcard $(m)/kcqrs_*.c))
LIB_SRC  := $(filter-out $(MAIN_SRC),$(ALL_SRC))
LIB_OBJ  := $(LIB_SRC:%.c=$(OBJ)/%.o)
LIBKQ    := $(BUILD)/libkcqrs.a
# ops/sql/*.sql embedded into the library (projections/proj_migrate.h), sorted by name.
SQL_SRC  := $(sort $(wildcard ops/sql/*.sql))
SQL_GEN  := $(BUILD)/gen/proj_sql_embed.c
LIB_OBJ  += $(OBJ)/gen/proj_sql_embed.o
# query-api/console/* (the web console) embedded into kcqrs-query (query-api/qry_console.h).
CONSOLE_SRC := $(sort $(wildcard query-api/console/*.html query-api/console/*.css \
                                  query-api/console/*.js))
CONSOLE_GEN := $(BUILD)/gen/qry_console_embed.c
LIB_OBJ  += $(OBJ)/gen/qry_console_embed.o
# The OpenAPI documents embedded into the library (lib/kq_openapi.h): name:file.
OPENAPI_DOCS := commands:commands/openapi.json query:query-api/openapi.json \
                admin:lib/openapi-admin.json
OPENAPI_GEN  := $(BUILD)/gen/kq_openapi_docs.c
LIB_OBJ  += $(OBJ)/gen/kq_openapi_docs.o
# The version (file VERSION) and the git commit, generated at every build into a C file
# rewritten only when they change (lib/kq_version.h).
VERSION_GEN := $(BUILD)/gen/kq_version_gen.c
LIB_OBJ  += $(OBJ)/gen/kq_version_gen.o
BINS     := $(foreach f,$(MAIN_SRC),$(BIN)/$(subst _,-,$(basename $(notdir $(f)))))

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/tools/%)
BENCH_SRC:= $(wildcard bench/*.c)
BENCH_BIN:= $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
FUZZ_SRC := $(filter-out tests/fuzz/fuzz_driver.c,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_REPLAY := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/fuzz/%-replay)

.PHONY: FORCE all deps test test-unit test-conformance test-e2e test-fuzz-replay test-faults \
        test-faults-short up down bench fuzz fuzz-http fuzz-long \
        clean format format-check docs check-layers status
.DEFAULT_GOAL := all
.SECONDARY:

all: check-layers $(BINS) $(UNIT_BIN) $(TOOL_BIN) $(BENCH_BIN) $(FUZZ_REPLAY)

# Order-only: checked on every build (a fraction of a second), never a reason to recompile.
$(OBJ)/%.o: %.c | check-layers
	@mkdir -p $(dir $@)
	$(CC) $(call inc_of,$<) $(CFLAGS) -c $< -o $@

check-layers:
	@ops/check-layers.sh $(LAYERS)

# The generated file is rewritten only when its content changes (the file list is part
# of it, so adding or removing a migration rebuilds it too).
$(SQL_GEN): FORCE
	@mkdir -p $(dir $@)
	@{ echo '/* generated by the Makefile from the files in ops/sql; do not edit */'; \
	  echo '#include "proj_migrate.h"'; i=0; \
	  for f in $(SQL_SRC); do echo "static const char sql_$$i[] = {"; \
	    od -An -v -tx1 "$$f" | sed -e 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; echo '0};'; i=$$((i+1)); done; \
	  echo 'const proj_migration proj_migrations[] = {'; i=0; \
	  for f in $(SQL_SRC); do echo "{\"$$(basename $$f)\", sql_$$i, sizeof sql_$$i - 1},"; i=$$((i+1)); done; \
	  echo '{0, 0, 0}};'; echo "const size_t proj_migrations_count = $$i;"; } > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(OBJ)/gen/proj_sql_embed.o: $(SQL_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(INC_projections) $(CFLAGS) -Wno-missing-prototypes -c $< -o $@

$(CONSOLE_GEN): FORCE
	@mkdir -p $(dir $@)
	@{ echo '/* generated by the Makefile from the files in query-api/console; do not edit */'; \
	  echo '#include "qry_console.h"'; i=0; \
	  for f in $(CONSOLE_SRC); do echo "static const unsigned char con_$$i[] = {"; \
	    od -An -v -tx1 "$$f" | sed -e 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; echo '0};'; i=$$((i+1)); done; \
	  echo 'const qry_console_asset qry_console_assets[] = {'; i=0; \
	  for f in $(CONSOLE_SRC); do echo "{\"$$(basename $$f)\", con_$$i, sizeof con_$$i - 1},"; i=$$((i+1)); done; \
	  echo '{0, 0, 0}};'; echo "const size_t qry_console_assets_count = $$i;"; } > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(OBJ)/gen/qry_console_embed.o: $(CONSOLE_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(INC_query-api) $(CFLAGS) -Wno-missing-prototypes -c $< -o $@

# Each document as bytes (no path at run time); rewritten only when its content changes.
$(OPENAPI_GEN): FORCE
	@mkdir -p $(dir $@)
	@{ echo '/* generated by the Makefile from the OpenAPI documents; do not edit */'; \
	  echo '#include "kq_openapi.h"'; \
	  for d in $(OPENAPI_DOCS); do n=$${d%%:*}; f=$${d#*:}; \
	    echo "static const char doc_$$n[] = {"; \
	    od -An -v -tx1 "$$f" | sed -e 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; echo '0};'; \
	    echo "const kq_openapi_doc kq_openapi_$$n = {\"$$n\", doc_$$n, sizeof doc_$$n - 1};"; \
	  done; } > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(OBJ)/gen/kq_openapi_docs.o: $(OPENAPI_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(INC_lib) $(CFLAGS) -c $< -o $@

$(VERSION_GEN): FORCE
	@mkdir -p $(dir $@)
	@v=$$(tr -d ' \n' < VERSION); c=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown); \
	if [ "$$c" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then c="$$c-dirty"; fi; \
	{ echo '/* generated by the Makefile from VERSION and git; do not edit */'; \
	  echo '#include "kq_version.h"'; echo "const char kq_version[] = \"$$v\";"; \
	  echo "const char kq_version_commit[] = \"$$c\";"; } > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(OBJ)/gen/kq_version_gen.o: $(VERSION_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(INC_lib) $(CFLAGS) -c $< -o $@

$(LIBKQ): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && $(AR) rcs $@ $^

# kcqrs_foo_bar.c -> build/bin/kcqrs-foo-bar
define main_rule
$(BIN)/$(subst _,-,$(basename $(notdir $(1)))): $(OBJ)/$(1:.c=.o) $(LIBKQ)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach f,$(MAIN_SRC),$(eval $(call main_rule,$(f))))

# The programs that use libmicrohttpd as an independent peer (and link it); nothing else does.
MHD_PROGS := $(BUILD)/tests/tools/kq_receiver $(BUILD)/bench/bench_http_noop \
             $(BUILD)/bench/bench_worker \
             $(addprefix $(BUILD)/tests/unit/,test_wk_record test_wk_http test_wk_service \
                                              test_trace)
$(MHD_PROGS): LDLIBS += $(MHD_LIBS)

$(BUILD)/tests/unit/%: $(OBJ)/tests/unit/%.o $(LIBKQ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/tests/tools/%: $(OBJ)/tests/tools/%.o $(LIBKQ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(OBJ)/bench/%.o $(LIBKQ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# bench/pgpaths/: the PostgreSQL target's alternative write paths (bench_pg_paths.h), linked
# into the two programs that choose a path.
PGPATHS_OBJ := $(OBJ)/bench/pgpaths/bench_pg_paths.o
$(BUILD)/bench/bench_pg_apply $(BUILD)/tests/tools/kq_pgapply: $(PGPATHS_OBJ)

# Fuzz targets also build with gcc as "replay" programs: they run every file of the
# checked-in corpus (and any path given) through LLVMFuzzerTestOneInput.
$(BUILD)/tests/fuzz/%-replay: $(OBJ)/tests/fuzz/%.o $(OBJ)/tests/fuzz/fuzz_driver.o $(LIBKQ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---------------------------------------------------------------- tests
# `make test` first installs whatever is missing (idempotent, quick when present).
deps:
	@ops/install-deps.sh
# The test-only tools (ops/install-test-tools.sh: a browser driver, API and manifest
# validators, Jaeger built from source) take minutes on a fresh machine, which
# `make up` and `make bench` do not need to wait for.
up bench: export KQ_SKIP_TEST_TOOLS := 1

test: deps
	$(MAKE) --no-print-directory all
	$(MAKE) --no-print-directory test-unit
	$(MAKE) --no-print-directory test-conformance
	$(MAKE) --no-print-directory test-fuzz-replay
ifeq ($(SANITIZE),)
	$(MAKE) --no-print-directory test-e2e
endif

# The unit programs mostly wait on clocks and the mock cluster (the longest,
# the writer's, use well under a second of CPU in half a minute), so they run
# UNIT_JOBS at a time; -Otarget keeps each program's output together.
UNIT_JOBS ?= 6
UNIT_RUN := $(UNIT_BIN:=.run)
.PHONY: test-unit unit-run $(UNIT_RUN)
test-unit: $(UNIT_BIN)
	@$(MAKE) --no-print-directory -j$(UNIT_JOBS) -Otarget unit-run

unit-run: $(UNIT_RUN)

$(UNIT_RUN): %.run: %
	@echo "== $<"; KCQRS_SRCDIR=$(CURDIR) $<

test-conformance: $(BINS)
	KCQRS_BIN=$(CURDIR)/$(BIN) bats tests/conformance

test-fuzz-replay: $(FUZZ_REPLAY)
	@set -e; for t in $(FUZZ_REPLAY); do n=$$(basename $$t -replay); \
	  echo "== $$t"; $$t tests/fuzz/corpus/$$n; done

# Under a sanitizer the e2e files run again for memory and undefined-behaviour
# reports in the services' logs, except those that time brokers, clocks and
# latency rather than new C paths (a latency bound is a property of the
# optimised build; a 3-node cluster or a 20 s idempotency window only wait),
# that mostly wait for kill -9 recoveries and broker outages (their C paths
# are the unit tests' and the fault campaign's), or that drive a browser or a
# spec fuzzer, or that spend about a minute streaming 20,000 events
# (stream.bats; its HTTP paths run under the sanitizers in test_http_stream):
# those run once, in the plain pass of `make test`; so does deploy.bats, which
# starts no binary (it validates ops/systemd and ops/k8s), and traces.bats, which
# mostly waits for a Jaeger (the exporter's C paths are test_trace's; every other
# file propagates traceparent under the sanitizers).
E2E_PLAIN_ONLY := tests/e2e/cluster.bats tests/e2e/kafka_sasl.bats tests/e2e/commands_ttl.bats \
                  tests/e2e/http_flood.bats tests/e2e/commands_kafka_down.bats \
                  tests/e2e/projector_crash.bats tests/e2e/openapi.bats tests/e2e/console.bats \
                  tests/e2e/stream.bats tests/e2e/deploy.bats tests/e2e/traces.bats
ifeq ($(SANITIZE),)
E2E_FILES := tests/e2e
else
E2E_FILES := $(filter-out $(E2E_PLAIN_ONLY),$(sort $(wildcard tests/e2e/*.bats)))
endif

test-e2e: $(BINS) $(TOOL_BIN)
	KCQRS_BIN=$(CURDIR)/$(BIN) KCQRS_TOOLS=$(CURDIR)/$(BUILD)/tests/tools bats --timing $(E2E_FILES)

# The fault campaign (tests/faults/README.md): real brokers, PostgreSQL and every service
# under load while faults are injected; the checks and the table at the end. Bounded by
# timeout so that a hung run cannot hold CI.
FAULTS_ENV = KCQRS_BIN=$(CURDIR)/$(BIN) KCQRS_TOOLS=$(CURDIR)/$(BUILD)/tests/tools
test-faults: $(BINS) $(TOOL_BIN)
	$(FAULTS_ENV) timeout -k 30 2400 tests/faults/run.sh

test-faults-short: $(BINS) $(TOOL_BIN)
	$(FAULTS_ENV) FAULTS_SHORT=1 timeout -k 30 600 tests/faults/run.sh

# ---------------------------------------------------------------- running
# deps runs first and the build in a sub-make, so pkg-config sees freshly installed packages.
# make up KAFKA_NODES=3 (a 3-node cluster), make up KAFKA_SECURITY=sasl_ssl, make up HTTPS=1,
# make up QUERIES=2 (two query hosts, each with its own LMDB projector)
# (a local CA and certificate in var/tls); see ops/up.sh.
up: deps
	@$(MAKE) --no-print-directory all
	@$(if $(KAFKA_NODES),KCQRS_KAFKA_NODES=$(KAFKA_NODES)) \
	  $(if $(KAFKA_SECURITY),KCQRS_KAFKA_SECURITY=$(KAFKA_SECURITY)) \
	  $(if $(HTTPS),KCQRS_HTTPS=$(HTTPS)) $(if $(QUERIES),KCQRS_QUERIES=$(QUERIES)) ops/up.sh

# make status: every service `make up` started, with URL, pid, role and health
# (ops/status.sh; ops/status.sh --json for scripts)
status:
	@ops/status.sh

down:
	@ops/down.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) bench/run.sh

FUZZ_CC ?= clang
fuzz: $(LIB_SRC) $(SQL_GEN) $(OPENAPI_GEN) $(VERSION_GEN)
	@mkdir -p $(BUILD)/fuzz
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  $(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined $(INC_ALL) \
	    $(PKG_CFLAGS) $$f $(LIB_SRC) $(SQL_GEN) $(OPENAPI_GEN) $(VERSION_GEN) -o $(BUILD)/fuzz/$$n $(LDLIBS) || exit 1; \
	  echo "built $(BUILD)/fuzz/$$n  (run: $(BUILD)/fuzz/$$n -max_total_time=60 tests/fuzz/corpus/$$n)"; done

# The HTTP request parser's fuzz target (tests/fuzz/fuzz_http_parse.c, lib/kq_http_parse) under
# ASan+UBSan for FUZZ_RUNS executions in all, split over FUZZ_JOBS processes (libFuzzer -jobs;
# they share new inputs through the corpus folder). CI runs `make fuzz-http` (10,000,000);
# `make fuzz-long` runs 100,000,000. The checked-in corpus is only read: new inputs go to
# $(BUILD)/fuzz/corpus-http, a finding to $(BUILD)/fuzz/crash-* (replay it with
# `$(BUILD)/fuzz/fuzz_http_parse <file>`) and the run fails.
FUZZ_RUNS ?= 10000000
FUZZ_JOBS ?= 2
FUZZ_HTTP := $(BUILD)/fuzz/fuzz_http_parse
FUZZ_HTTP_SRC := tests/fuzz/fuzz_http_parse.c lib/kq_http_parse.c lib/kq_err.c lib/kq_rand.c
$(FUZZ_HTTP): $(FUZZ_HTTP_SRC) lib/kq_http_parse.h lib/kq_err.h lib/kq_rand.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=all -Ilib $(FUZZ_HTTP_SRC) -o $@

fuzz-http: $(FUZZ_HTTP)
	@rm -f $(BUILD)/fuzz/fuzz-*.log; mkdir -p $(BUILD)/fuzz/corpus-http
	@start=$$(date +%s); cd $(BUILD)/fuzz && \
	./fuzz_http_parse -jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS) \
	  -runs=$$(( $(FUZZ_RUNS) / $(FUZZ_JOBS) )) -print_final_stats=1 \
	  corpus-http $(CURDIR)/tests/fuzz/corpus/fuzz_http_parse >/dev/null 2>&1; rc=$$?; \
	for f in fuzz-*.log; do grep -E '^(Done|stat::number_of_executed_units)' $$f | tr '\n' ' '; \
	  echo "($$f)"; done; \
	if [ $$rc -ne 0 ]; then for f in fuzz-*.log; do tail -n 40 $$f; done; \
	  echo "fuzz-http: FAILED, see $(BUILD)/fuzz/fuzz-*.log and $(BUILD)/fuzz/crash-*"; exit 1; fi; \
	echo "fuzz-http: $(FUZZ_RUNS) runs on $(FUZZ_JOBS) processes, no finding, $$(( $$(date +%s) - start ))s"

fuzz-long:
	@$(MAKE) --no-print-directory fuzz-http FUZZ_RUNS=100000000

# ---------------------------------------------------------------- docs and hygiene
# The configuration table in README.md is generated from lib/kq_config.c.
docs: $(BIN)/kcqrs-events
	@ops/gen-config-doc.sh $(BIN)/kcqrs-events README.md

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@out=$$(for f in $$(git ls-files '*.c' '*.h'); do clang-format "$$f" | cmp -s - "$$f" || echo "$$f"; done); \
	if [ -n "$$out" ]; then echo "not clang-formatted (run 'make format'):"; echo "$$out"; exit 1; fi; \
	echo "format-check: all C sources are clang-formatted"

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
