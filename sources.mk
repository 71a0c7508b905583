# The one list of extension sources, shared by the PGXS Makefile and CMakeLists.txt.
PW_CORE_SOURCES = src/core/json.cpp src/core/definition.cpp src/core/allowlist.cpp src/http/client.cpp
PW_PG_SOURCES = src/module.cpp src/pg/boundary.cpp src/pg/kept_plans.cpp src/engine/engine.cpp src/worker/shared.cpp \
                src/worker/worker.cpp src/worker/crashes.cpp src/api/api.cpp src/engine/http.cpp
