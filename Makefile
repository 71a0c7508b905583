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

# Tests: test/run-tests.sh (the server must run as an unprivileged user; see README) runs every suite, each
# against a throwaway server of its own. `make installcheck` runs the pg_regress suite (sql/, expected/) and
# the isolation specs (test/isolation/) against a running server instead (PGHOST, PGPORT, PGUSER select it),
# with the extension installed and this in its postgresql.conf (restart after changing it; test/regress.conf):
#   shared_preload_libraries = 'pipeline_worker'   # the library preloaded...
#   pipeline_worker.workers = 0                    # ...with no background worker: sessions execute the runs
# The user must be a superuser (the tests create roles, databases and the extension). The suites drop and
# re-create the databases contrib_regression and isolation_regression, and sql/ creates roles regress_* that
# it leaves behind: before each run, installcheck drops that database and those roles (REGRESS_PREP below;
# `make installcheck REGRESS_PREP=` skips that). Outputs: results/, regression.diffs, output_iso/ (make clean).
# `make check` (a temporary instance) is not supported by PGXS; test/run-tests.sh regress isolation does that.
REGRESS = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --inputdir=.
ISOLATION = $(sort $(basename $(notdir $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation
# (PGXS adds --dbname=contrib_regression to REGRESS_OPTS and --dbname=isolation_regression to ISOLATION_OPTS.)
REGRESS_ROLES = $(sort $(shell sed -n 's/^CREATE ROLE \(regress_[A-Za-z0-9_]*\).*/\1/p' sql/*.sql))
REGRESS_PREP = installcheck-drop-roles

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# the roles an earlier installcheck left behind (cluster-wide), with its database that still refers to them
.PHONY: installcheck-drop-roles
installcheck-drop-roles:
	'$(bindir)/psql' -X -q -v ON_ERROR_STOP=1 -d postgres -c 'SET client_min_messages = warning' \
		-c 'DROP DATABASE IF EXISTS $(CONTRIB_TESTDB)' $(foreach r,$(REGRESS_ROLES),-c 'DROP ROLE IF EXISTS $(r)')
