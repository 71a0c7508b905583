# pipeline_worker: PGXS build. `make && make install` with pg_config (PostgreSQL 15) on PATH.
EXTENSION = pipeline_worker
MODULE_big = pipeline_worker
DATA = $(wildcard pipeline_worker--*.sql)
PGFILEDESC = "pipeline_worker - durable multi-step pipelines run by background workers"

include sources.mk
OBJS = $(patsubst %.cpp,%.o,$(PW_CORE_SOURCES) $(PW_PG_SOURCES))

PG_CONFIG ?= pg_config
PG_INCLUDEDIR_SERVER := $(shell $(PG_CONFIG) --includedir-server)
# Postgres headers as system headers: our -Werror applies to our code, not to theirs.
PG_CPPFLAGS = -Isrc -isystem $(PG_INCLUDEDIR_SERVER)
PG_CXXFLAGS = -std=c++17 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -fno-omit-frame-pointer
SHLIB_LINK = -lcurl -lstdc++

# No LLVM bitcode for the C++ sources (Debian's server is built --with-llvm; JIT inlining is not needed).
override with_llvm = no
# Rebuild objects when headers change (shared-memory layouts live in headers).
override autodepend = yes

# Tests: test/run-tests.sh (the server must run as an unprivileged user; see README).
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
