# libtraceagent: build the preloadable agent, its core archive, the OTLP sink, tests and benchmarks.

CC      ?= cc
PREFIX  ?= /usr/local
BUILD   := build
GEN     := $(BUILD)/gen
OBJ     := $(BUILD)/obj

# libpq's and librdkafka's headers give the hooks their types; neither library is linked.
PQ_INC  := $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
CFLAGS_BASE := -std=gnu11 -D_GNU_SOURCE -O2 -g -fPIC -fvisibility=hidden -pthread \
               -Wall -Wextra -Werror -I. -I$(GEN) $(PQ_INC)
CFLAGS  ?=
ALL_CFLAGS := $(CFLAGS_BASE) $(CFLAGS)
# protoc-c output is not ours to keep warning-free.
GEN_CFLAGS := -std=gnu11 -O2 -g -fPIC -fvisibility=hidden -I$(GEN)

CORE_SRC   := $(wildcard agent/*.c) $(wildcard exporter/*.c)
HOOK_SRC   := $(wildcard hooks/*.c)
# The protobuf-c code generated from exporter/otlp.proto is in the core
# archive for the tests (the reference encoder, decoding what we sent); the
# agent encodes and decodes OTLP itself and never links it.
PB_OBJ     := $(OBJ)/gen/otlp.pb-c.o
CORE_OBJ   := $(CORE_SRC:%.c=$(OBJ)/%.o) $(PB_OBJ)
HOOK_OBJ   := $(HOOK_SRC:%.c=$(OBJ)/%.o)
AGENT_OBJ  := $(HOOK_OBJ) $(filter-out $(PB_OBJ),$(CORE_OBJ))
CORE_LIB   := $(BUILD)/libtraceagent-core.a
AGENT      := $(BUILD)/libtraceagent.so
SINK       := $(BUILD)/otlp-sink
# The demo's applications (testapp/): they contain no tracing code at all.
APP_BIN    := $(BUILD)/task-manager $(BUILD)/web-crawler

# The agent links nothing but libc: what a feature needs is dlopen()ed when
# it is first used (each linked library costs every process start under
# LD_PRELOAD; see README, Performance): zlib (libz.so.1) for gzip export,
# OpenSSL (libssl.so.3) for https endpoints, and with TRACEAGENT_FUNCTIONS
# libcapstone.so.4 and libgcc_s.so.1. It never loads libcurl.
AGENT_LIBS :=

UNIT_SRC   := $(wildcard tests/unit/*.c)
UNIT_BIN   := $(BUILD)/tests/unit
BENCH_SRC  := $(wildcard tests/bench/*.c)
BENCH_BIN  := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)
TOOL_SRC   := $(wildcard tests/tools/*.c)
TOOL_BIN   := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/%)
# Real programs the integration tests run under the agent (they link only
# their own libraries, never the agent).
PROG_BIN   := $(BUILD)/tests/mhd-server $(BUILD)/tests/kafka-mock $(BUILD)/tests/pq-client \
              $(BUILD)/tests/kafka-producer $(BUILD)/tests/kafka-consumer
PROG_BIN   += $(BUILD)/tests/logcorr-writer
PROG_BIN   += $(BUILD)/tests/exec-probe
PROG_BIN   += $(BUILD)/tests/host-probe
# Programs whose named functions test-functions.sh traces: built as any app
# is (gcc's defaults: -O2, PIE), one with endbr64 entries, one stripped.
FN_BIN     := $(BUILD)/tests/fn-app $(BUILD)/tests/fn-app-cet $(BUILD)/tests/fn-app-stripped \
              $(BUILD)/tests/libfntasks.so $(BUILD)/tests/fn-cxx $(BUILD)/tests/fn-cxx-static \
              $(BUILD)/tests/fn-unpatch
PROG_BIN   += $(FN_BIN)

.PHONY: all check unit bench demo fuzz clean install uninstall deps cross deb FORCE
all: $(AGENT) $(CORE_LIB) $(SINK) $(APP_BIN)

deps:
	@bash scripts/install-deps

$(GEN)/otlp.pb-c.c $(GEN)/otlp.pb-c.h: exporter/otlp.proto
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -Iexporter exporter/otlp.proto

$(OBJ)/gen/otlp.pb-c.o: $(GEN)/otlp.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(GEN_CFLAGS) -c $< -o $@

$(OBJ)/%.o: %.c $(GEN)/otlp.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The SONAME is the file's own name: nothing links against the agent, but a
# shared object in a library directory carries one (Debian policy, lintian).
$(AGENT): $(AGENT_OBJ) hooks/libtraceagent.map
	$(CC) -shared -pthread -Wl,-soname,libtraceagent.so -Wl,--version-script=hooks/libtraceagent.map -Wl,-z,now -Wl,--as-needed \
	    -Wl,--no-undefined -o $@ $(AGENT_OBJ) $(AGENT_LIBS)

$(SINK): testapp/otlp-sink.c $(OBJ)/gen/otlp.pb-c.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fvisibility=default -o $@ testapp/otlp-sink.c $(OBJ)/gen/otlp.pb-c.o \
	    -lmicrohttpd -lprotobuf-c -lz

# schema.sql compiled in as a C string, so task-manager applies it from any
# working directory: backslashes and quotes escaped, each line a literal.
$(GEN)/schema_sql.h: testapp/schema.sql
	@mkdir -p $(dir $@)
	{ echo '/* generated from testapp/schema.sql by the Makefile; do not edit */'; \
	  echo 'static const char schema_sql[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/\t"/' -e 's/$$/\\n"/' $<; \
	  echo ';'; } >$@.tmp && mv $@.tmp $@

# Each links only the libraries it calls.
$(BUILD)/task-manager: testapp/task-manager.c testapp/common.c testapp/common.h $(GEN)/schema_sql.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ testapp/task-manager.c testapp/common.c -lmicrohttpd -lpq -lrdkafka -ljansson -pthread

$(BUILD)/web-crawler: testapp/web-crawler.c testapp/common.c testapp/common.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ testapp/web-crawler.c testapp/common.c -lrdkafka -ljansson -lcurl -pthread

$(UNIT_BIN): $(UNIT_SRC) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-error=unused-parameter -o $@ $(UNIT_SRC) $(CORE_LIB) \
	    $(shell pkg-config --cflags --libs check) -lprotobuf-c -lm

$(BUILD)/tests/%: tests/tools/%.c $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(CORE_LIB) -lprotobuf-c -lm

$(BUILD)/tests/mhd-server: tests/mhd-server.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -lmicrohttpd

$(BUILD)/tests/pq-client: tests/pq-client.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -lpq

$(BUILD)/tests/kafka-producer: tests/kafka-producer.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -lrdkafka

$(BUILD)/tests/kafka-consumer: tests/kafka-consumer.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -lrdkafka -lpq

$(BUILD)/tests/logcorr-writer: tests/logcorr-writer.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $<

$(BUILD)/tests/kafka-mock: tests/kafka-mock.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -lrdkafka

$(BUILD)/tests/exec-probe: tests/exec-probe.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $<

$(BUILD)/tests/host-probe: tests/host-probe.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $<

$(BUILD)/tests/fn-app: tests/functions/fn-app.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -pthread -o $@ $<

$(BUILD)/tests/fn-app-cet: tests/functions/fn-app.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -pthread -fcf-protection=full -o $@ $<

$(BUILD)/tests/fn-app-stripped: $(BUILD)/tests/fn-app
	strip -o $@ $<

$(BUILD)/tests/libfntasks.so: tests/functions/fn-lib.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -shared -fPIC -o $@ $<

$(BUILD)/tests/fn-cxx: tests/functions/fn-cxx.cc
	@mkdir -p $(dir $@)
	$(CXX) -O2 -g -o $@ $<

# With its own copy of the unwinder, which the agent refuses to follow.
$(BUILD)/tests/fn-cxx-static: tests/functions/fn-cxx.cc
	@mkdir -p $(dir $@)
	$(CXX) -O2 -g -static-libstdc++ -static-libgcc -o $@ $<

$(BUILD)/tests/fn-unpatch: tests/functions/fn-unpatch.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -o $@ $<

$(BUILD)/bench/%: tests/bench/%.c $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(CORE_LIB) -lprotobuf-c -lm

# The Kafka producer and consumer benchmarks link librdkafka (and not the
# core): these explicit rules win over the pattern rule above.
KAFKA_BENCH_BIN := $(BUILD)/bench/kafka-produce-bench $(BUILD)/bench/kafka-consume-bench
$(KAFKA_BENCH_BIN): $(BUILD)/bench/kafka-%-bench: tests/bench/kafka-%-bench.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -lrdkafka

unit: $(UNIT_BIN) $(AGENT) $(SINK)
	TRACEAGENT_SINK=$(abspath $(SINK)) TRACEAGENT_SO=$(abspath $(AGENT)) CK_DEFAULT_TIMEOUT=$${CK_DEFAULT_TIMEOUT:-60} $(UNIT_BIN)

check: deps all $(UNIT_BIN) $(TOOL_BIN) $(PROG_BIN) cross deb
	@python3 scripts/check-structure $(OBJ)
	@bash tests/run-all

# The agent and fn-app built for another architecture, aarch64, which
# tests/integration/test-other-arch.sh runs under qemu-user. openssl's
# configuration header is the one header Debian keeps per architecture: the
# host's serves, both being LP64.
CROSS_CC := aarch64-linux-gnu-gcc
CROSS    := $(BUILD)/aarch64
cross:
	@$(MAKE) --no-print-directory BUILD=$(CROSS) CC=$(CROSS_CC) \
	    CFLAGS="-idirafter /usr/include/$$($(CC) -print-multiarch)" $(CROSS)/libtraceagent.so $(CROSS)/tests/fn-app

bench: deps all $(BENCH_BIN) $(KAFKA_BENCH_BIN) $(TOOL_BIN) $(PROG_BIN)
	@bash scripts/bench

demo: deps all $(TOOL_BIN)
	@bash scripts/demo

# libFuzzer harnesses (clang); FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 30
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(CORE_SRC) $(GEN)/otlp.pb-c.h
	@mkdir -p $(dir $@)
	clang -std=gnu11 -D_GNU_SOURCE -g -O1 -I. -I$(GEN) -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -o $@ $< $(filter agent/%,$(CORE_SRC)) -pthread

fuzz: deps $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do \
	    echo "== $$f ($(FUZZ_SECONDS) s)"; \
	    mkdir -p $(BUILD)/fuzz/corpus-$$(basename $$f); \
	    n=$$(basename $$f); dict=; seeds=; \
	    [ -f tests/fuzz/$$n.dict ] && dict=-dict=tests/fuzz/$$n.dict; \
	    [ -d tests/fuzz/seeds/$$n ] && seeds=tests/fuzz/seeds/$$n; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 $$dict $(BUILD)/fuzz/corpus-$$n $$seeds 2>&1 | tail -2 || exit 1; \
	done

# make install [PREFIX=/usr/local] [DESTDIR=/staging]: the agent and the
# traceagent launcher (which finds the agent in ../lib next to itself, or in
# LIBDIR as installed). make uninstall removes exactly those two files.
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
install: $(AGENT)
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(BINDIR)
	install -m 0644 $(AGENT) $(DESTDIR)$(LIBDIR)/libtraceagent.so
	sed 's|@LIBDIR@|$(LIBDIR)|' scripts/traceagent >$(DESTDIR)$(BINDIR)/traceagent.tmp
	chmod 0755 $(DESTDIR)$(BINDIR)/traceagent.tmp
	mv -f $(DESTDIR)$(BINDIR)/traceagent.tmp $(DESTDIR)$(BINDIR)/traceagent

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libtraceagent.so $(DESTDIR)$(BINDIR)/traceagent

# make deb: build/libtraceagent_<version>_<arch>.deb, with dpkg's own tools
# and no network. The files are staged by `make install` (PREFIX=/usr, the
# agent in the multiarch directory, where ld.so also finds it by name), in
# $(DEB_TREE)/debian/libtraceagent so that dpkg-shlibdeps (libc6's minimum
# version) and dpkg-gencontrol (the control file from packaging/control,
# Installed-Size) work as in a Debian source tree. The version is the agent's
# own AGENT_VERSION (agent/resource.h), the one it reports as
# telemetry.sdk.version; the changelog is generated from it, a native one.
# The agent is stripped as dh_strip does (Debian ships no symbol tables; the
# dynamic symbols stay).
DEB_VERSION := $(shell sed -n 's/^.define AGENT_VERSION "\(.*\)"$$/\1/p' agent/resource.h)
DEB_ARCH    := $(shell dpkg --print-architecture 2>/dev/null)
MULTIARCH   := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
DEB         := $(BUILD)/libtraceagent_$(DEB_VERSION)_$(DEB_ARCH).deb
DEB_TREE    := $(BUILD)/deb
DEB_ROOT    := $(DEB_TREE)/debian/libtraceagent
DEB_DOC     := $(DEB_ROOT)/usr/share/doc/libtraceagent
# docs/ as it is when the package is built (README.md links its pages and
# shows its picture as docs/).
DEB_DOCS    := $(wildcard docs/*.md docs/*.svg)
# The list of docs as a file that changes when a doc is added or removed (a
# removed prerequisite alone would not make the package again).
DEB_LIST    := $(BUILD)/deb-docs.list
deb: $(DEB)
$(DEB_LIST): FORCE
	@mkdir -p $(dir $@)
	@echo '$(DEB_DOCS)' | cmp -s - $@ || echo '$(DEB_DOCS)' >$@
FORCE:
$(DEB): $(AGENT) scripts/traceagent README.md LICENSE $(DEB_DOCS) $(DEB_LIST) $(wildcard packaging/*) agent/resource.h Makefile
	@test -n "$(DEB_VERSION)" && test -n "$(DEB_ARCH)" && test -n "$(MULTIARCH)" || \
	    { echo "make deb: needs AGENT_VERSION in agent/resource.h, dpkg and dpkg-architecture (dpkg-dev)" >&2; exit 1; }
	rm -rf $(DEB_TREE)
	@$(MAKE) --no-print-directory BUILD=$(BUILD) install DESTDIR=$(abspath $(DEB_ROOT)) PREFIX=/usr LIBDIR=/usr/lib/$(MULTIARCH)
	strip --strip-unneeded --remove-section=.comment --remove-section=.note $(DEB_ROOT)/usr/lib/$(MULTIARCH)/libtraceagent.so
	install -d $(DEB_DOC)/docs $(DEB_ROOT)/usr/share/man/man1
	install -m 0644 README.md packaging/copyright $(DEB_DOC)/
	$(if $(DEB_DOCS),install -m 0644 $(DEB_DOCS) $(DEB_DOC)/docs/,rmdir $(DEB_DOC)/docs)
	gzip -9n <packaging/traceagent.1 >$(DEB_ROOT)/usr/share/man/man1/traceagent.1.gz
	{ echo "libtraceagent ($(DEB_VERSION)) unstable; urgency=medium"; echo; \
	  echo "  * Built from the libtraceagent source tree$$(git log -1 --format=', commit %h' 2>/dev/null)."; echo; \
	  echo " -- $$(sed -n 's/^Maintainer: //p' packaging/control)  $$(git log -1 --format=%cD 2>/dev/null || date -R)"; \
	} >$(DEB_TREE)/debian/changelog
	gzip -9n <$(DEB_TREE)/debian/changelog >$(DEB_DOC)/changelog.gz
	cp packaging/control $(DEB_TREE)/debian/control
	install -d $(DEB_ROOT)/DEBIAN
	install -m 0644 packaging/triggers $(DEB_ROOT)/DEBIAN/triggers
	cd $(DEB_TREE) && dpkg-shlibdeps -Tdebian/substvars debian/libtraceagent/usr/lib/$(MULTIARCH)/libtraceagent.so
	cd $(DEB_TREE) && dpkg-gencontrol -plibtraceagent -Pdebian/libtraceagent -Tdebian/substvars
	find $(DEB_ROOT) -type d -exec chmod 0755 {} + && find $(DEB_ROOT) -type f -exec chmod 0644 {} +
	chmod 0755 $(DEB_ROOT)/usr/bin/traceagent
	cd $(DEB_ROOT) && find usr -type f -exec md5sum {} + | LC_ALL=C sort -k 2 >DEBIAN/md5sums
	dpkg-deb --root-owner-group --build $(DEB_ROOT) $@.tmp >/dev/null && mv -f $@.tmp $@
	@echo "make deb: $@"

clean:
	rm -rf $(BUILD)

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
