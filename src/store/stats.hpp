// Counting the unfinished runs of this database by pipeline (pending, scheduled, running, waiting, the oldest
// pending), for metrics()' gauges: counted as the extension's owner (every pipeline, whatever the caller may see)
// and published in shared memory (shmem/metrics.hpp) with what counting cost.
#pragma once

#include "pg/pg.hpp"

// Finished runs are found through runs_stats_finished_idx (pipeline_id, status, finished_at) alone: one index entry
// less for every finished run than with an index on finished_at across pipelines (which cost ~6 % of a W1 drain
// and one more large index in every vacuum of runs). A statement that needs the finished runs of every pipeline
// starts with this CTE, ids: the pipelines that have finished runs (a loose scan of that index, one probe each,
// dropped pipelines included); it then reads each (pipeline, status) range up to its time bound, through
// each_finished_status(). Index lists name "f.runs_stats_finished_idx g.runs_stats_finished_idx".
#define PW_FINISHED_PIPELINES                                                                                   \
    " WITH RECURSIVE ids(id) AS ("                                                                               \
    "     (SELECT f.pipeline_id FROM pipeline_worker.runs f WHERE f.status IN ('succeeded', 'failed', 'cancelled')" \
    "       ORDER BY f.pipeline_id LIMIT 1)"                                                                         \
    "   UNION ALL"                                                                                                   \
    "     SELECT (SELECT g.pipeline_id FROM pipeline_worker.runs g"                                                  \
    "              WHERE g.status IN ('succeeded', 'failed', 'cancelled') AND g.pipeline_id > ids.id"               \
    "              ORDER BY g.pipeline_id LIMIT 1)"                                                                  \
    "       FROM ids WHERE ids.id IS NOT NULL),"

namespace pw::store {

// How far back pipeline_stats' minute roll-ups reach (the hour, and the minute at each end): finished_minutes is
// trimmed at this age (stats.cpp, as SQL), deletions and retries within it are taken off the roll-ups, and a run
// inserted already finished within it has its minute counted again (row_checks.cpp).
constexpr int64 kRollupWindowUs = 62 * USECS_PER_MINUTE;

// "SELECT * FROM (branch) f0 UNION ALL ..." with the branch once for each finished status, written where it says
// @status@ (palloc'd). A constant status per branch both proves runs_stats_finished_idx's predicate and bounds the
// scan, in one plan shape whatever the statistics (a join with the three statuses was planned two ways).
char *each_finished_status(const char *branch);

// Counts now and publishes. Inside a transaction with a snapshot; SPI not connected.
void refresh_gauges();
// Whether a caller should count now rather than use the published gauges: counting is cheap (the last count found
// at most 10,000 unfinished runs) or the published ones are older than max_age_ms.
bool gauges_stale(long max_age_ms);

// pipeline_stats' roll-ups (0.2 schema): counts the finished runs of the minutes no open transaction can still add
// one to (each minute once, within the last hour) into finished_minutes. Runs in its own transaction. Returns how
// many minutes it sealed.
int seal_finished_minutes();
// A run finished at `finished_at` (SQL) is deleted or reopened: its minute and later ones are counted again. SPI
// connected; the caller's transaction.
void unseal_from(Datum finished_at);
// Runs deleted by retention, as five arrays (pipeline_id bigint, finished_at timestamptz, status text, submitted_by
// oid, pipeline_owner oid): the roll-ups of sealed minutes are decreased by them (a minute none of whose roll-ups
// matches is counted again instead). SPI connected; the caller's transaction, after the DELETE.
void discount_deleted(Datum *columns);
// The roll-ups' lock (what unseal_from and discount_deleted take) if no other transaction holds it: false when one
// does. For the workers, which skip a round rather than wait for a session's transaction. SPI connected.
bool try_lock_sealed();

}  // namespace pw::store
