# The one list of extension sources, shared by the PGXS Makefile and CMakeLists.txt. Basenames must be unique:
# PGXS names dependency files by basename. Layers, from the bottom (see docs/ARCHITECTURE.md):
#   core (pure C++) <- http (pure C++ client) ; pg (Postgres helpers) <- shmem <- store <- exec <- worker, api
PW_CORE_SOURCES = src/core/json.cpp src/core/definition.cpp src/core/graph.cpp src/core/allowlist.cpp src/core/cron.cpp src/core/schedule_options.cpp src/core/placement.cpp src/http/outcome.cpp src/http/client.cpp
PW_PG_SOURCES = src/module.cpp \
                src/pg/boundary.cpp src/pg/kept_plans.cpp src/pg/spi.cpp src/pg/roles.cpp src/pg/subxact.cpp src/pg/direct_rows.cpp src/pg/kept_writes.cpp \
                src/shmem/shared.cpp src/shmem/claim_hint.cpp src/shmem/gucs.cpp src/shmem/cancels.cpp src/shmem/commit_notes.cpp src/shmem/lanes.cpp src/shmem/lane_table.cpp src/shmem/lane_order.cpp src/shmem/lane_passed.cpp src/shmem/metrics.cpp src/shmem/task_board.cpp \
                src/store/pipelines.cpp src/store/claims.cpp src/store/direct_writes.cpp src/store/direct_claim.cpp src/store/writes.cpp src/store/run_rows.cpp src/store/queue.cpp src/store/put_back.cpp src/store/schedules.cpp src/store/retention.cpp src/store/stats.cpp src/store/events.cpp src/store/children.cpp src/store/cancel_requests.cpp src/store/task_rows.cpp \
                src/exec/context.cpp src/exec/sql_steps.cpp src/exec/function_step.cpp src/exec/step_hygiene.cpp src/exec/http_step.cpp src/exec/http_queue.cpp src/exec/wait_step.cpp \
                src/exec/records.cpp src/exec/retry_holds.cpp src/exec/shared_tasks.cpp src/exec/map_step.cpp src/exec/executor.cpp src/exec/session.cpp \
                src/worker/interrupts.cpp src/worker/crashes.cpp src/worker/claiming.cpp src/worker/serve.cpp src/worker/run_times.cpp src/worker/batch_recovery.cpp src/worker/parent_wakes.cpp src/worker/upkeep.cpp src/worker/timer.cpp src/worker/helping.cpp src/worker/read_only.cpp src/worker/worker_main.cpp \
                src/worker/launcher.cpp src/worker/db_guard.cpp src/worker/ddl_locks.cpp \
                src/api/access.cpp src/api/api_pipelines.cpp src/api/api_runs.cpp src/api/api_submit.cpp src/api/api_flow.cpp src/api/api_schedules.cpp src/api/api_retention.cpp src/api/api_metrics.cpp src/api/api_events.cpp src/api/row_checks.cpp
