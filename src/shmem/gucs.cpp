// Definitions of the pipeline_worker.* settings.
#include "shmem/gucs.hpp"

#include "core/allowlist.hpp"
#include "core/definition.hpp"
#include "pg/boundary.hpp"

namespace pw::guc {

int workers = 4;
char *database = nullptr;
char *databases = nullptr;
int max_workers_per_database = -1;
int claim_batch = 64;
int commit_interval_ms = 20;
int recovery_interval_ms = 1000;
int vacuum_interval_ms = 0;
char *http_allowed_hosts = nullptr;
int http_max_response_bytes = 1024 * 1024;
int http_max_in_flight = 1000;
int max_map_tasks = 10000;
int max_child_depth = 32;
bool enabled = true;
char *retention = nullptr;
long long retention_us = 7 * USECS_PER_DAY;

namespace {

bool check_allowed_hosts(char **newval, void **, GucSource) {
    pg::CppError err = pg::cpp_call([&] { (void)core::Allowlist::parse(*newval != nullptr ? *newval : ""); });
    if (err.failed) {
        GUC_check_errdetail("%s", err.message);
        if (err.hint[0] != '\0') GUC_check_errhint("%s", err.hint);
        return false;
    }
    return true;
}

// "" (pipeline_worker.database alone), "*" (every database with the extension) or a comma list of names.
bool check_databases(char **newval, void **, GucSource) {
    if (*newval == nullptr || (*newval)[0] == '\0' || strcmp(*newval, "*") == 0) return true;
    char *copy = pstrdup(*newval);
    List *names = NIL;
    bool ok = SplitGUCList(copy, ',', &names);
    if (ok) {
        ListCell *lc;
        foreach (lc, names) {
            const char *name = static_cast<const char *>(lfirst(lc));
            if (name[0] == '\0' || strcmp(name, "*") == 0 || strlen(name) >= NAMEDATALEN) ok = false;
        }
    }
    // (blanks only: a list of no database, which served none -- not even pipeline_worker.database, as '' does;
    // acceptance walk-through, 2026-12-08)
    bool blank = ok && names == NIL;
    list_free(names);
    pfree(copy);
    if (blank) {
        GUC_check_errdetail("pipeline_worker.databases names no database.");
        GUC_check_errhint("Set it to '' (the default) to serve pipeline_worker.database, to * or to a list of names.");
        return false;
    }
    if (!ok) {
        GUC_check_errdetail("pipeline_worker.databases must be *, or a comma-separated list of database names.");
        return false;
    }
    return true;
}

bool check_max_per_database(int *newval, void **, GucSource) {
    if (*newval == 0) {
        GUC_check_errdetail("pipeline_worker.max_workers_per_database must be -1 (no cap) or at least 1.");
        return false;
    }
    return true;
}

// "-1": keep forever; else an interval. Parsed with Postgres' interval input, whose errors are caught here: a
// check hook must not raise.
bool parse_retention(const char *text, long long *usecs) {
    if (text == nullptr || strcmp(text, "-1") == 0) {
        *usecs = -1;
        return true;
    }
    if (core::bare_number(text)) return false;  // ('30' is 30 seconds to interval_in: the unit must be said)
    MemoryContext ctx = CurrentMemoryContext;
    bool ok = true;
    PG_TRY();
    {
        Interval *iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(text),
                                                             ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
        // (in 128 bits: past the int64 range of microseconds is "keep everything", not a wrapped value)
        __int128 total = static_cast<__int128>(iv->time) + static_cast<__int128>(iv->day) * USECS_PER_DAY +
                         static_cast<__int128>(iv->month) * DAYS_PER_MONTH * USECS_PER_DAY;
        *usecs = total > PG_INT64_MAX ? PG_INT64_MAX : total < PG_INT64_MIN ? PG_INT64_MIN : static_cast<long long>(total);
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(ctx);
        FlushErrorState();
        ok = false;
    }
    PG_END_TRY();
    return ok && *usecs > 0;
}

bool check_retention(char **newval, void **extra, GucSource) {
    long long us;
    if (!parse_retention(*newval, &us)) {
        GUC_check_errdetail("pipeline_worker.retention must be a positive interval with its unit, such as '7 days', "
                            "or -1 (keep finished runs forever); a bare number would be read as seconds.");
        return false;
    }
    return true;
}

void assign_retention(const char *newval, void *) {
    long long us;
    if (parse_retention(newval, &us)) retention_us = us;
}

}  // namespace

void define() {
    DefineCustomIntVariable("pipeline_worker.workers", "Number of background workers executing pipeline runs.",
                            "0 disables the workers. Needs max_worker_processes > workers + 1 (the launcher).",
                            &guc::workers, 4, 0, 1024, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    // Reloadable (the launcher moves the workers), and never a restart-only setting: those cannot be defined
    // when the library is loaded after start-up (CREATE EXTENSION without shared_preload_libraries).
    DefineCustomStringVariable("pipeline_worker.database", "Database whose runs the background workers execute.",
                               nullptr, &guc::database, "postgres", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("pipeline_worker.databases",
                               "Databases whose runs the background workers execute: a comma-separated list, or * for "
                               "every database with the extension installed.",
                               "Empty (the default): pipeline_worker.database alone. pipeline_worker.workers is the "
                               "total for the server; the workers go to the databases that have work.",
                               &guc::databases, "", PGC_SIGHUP, 0, check_databases, nullptr, nullptr);
    DefineCustomIntVariable("pipeline_worker.max_workers_per_database",
                            "Most background workers one database gets.",
                            "-1 (the default): no cap beyond pipeline_worker.workers.",
                            &guc::max_workers_per_database, -1, -1, 1024, PGC_SIGHUP, 0, check_max_per_database,
                            nullptr, nullptr);
    DefineCustomIntVariable("pipeline_worker.claim_batch", "Runs a worker claims at once.",
                            "Larger batches amortise claiming; claimed runs wait for their worker.",
                            &guc::claim_batch, 64, 1, 64, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pipeline_worker.commit_interval_ms",
                            "How long a worker may keep consecutive steps of a run in one transaction.",
                            "0 commits after every step.", &guc::commit_interval_ms, 20, 0, 60000, PGC_SIGHUP,
                            GUC_UNIT_MS, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pipeline_worker.recovery_interval_ms",
                            "How often an idle worker checks for runs whose claiming backend has exited.",
                            nullptr, &guc::recovery_interval_ms, 1000, 100, 3600000, PGC_SIGHUP, GUC_UNIT_MS,
                            nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pipeline_worker.vacuum_interval_ms",
                            "How often the lead worker may VACUUM the run tables (runs, run_steps) itself.",
                            "Each table when it has at least 10,000 dead rows and 2 % of its rows dead; 0 (the default) "
                            "leaves them to autovacuum alone (which visits a database once per autovacuum_naptime).",
                            &guc::vacuum_interval_ms, 0, 0, 3600000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr,
                            nullptr);
    DefineCustomStringVariable("pipeline_worker.http_allowed_hosts",
                               "Hosts HTTP steps may call: host names, *.domain wildcards, *, IP addresses, CIDR ranges.",
                               "Comma separated. Empty (the default) allows no host. Checked against the URL's host "
                               "name and the address actually connected to, on every redirect.",
                               &guc::http_allowed_hosts, "", PGC_SIGHUP, 0, check_allowed_hosts, nullptr, nullptr);
    DefineCustomIntVariable("pipeline_worker.http_max_response_bytes",
                            "Largest HTTP response body a step accepts; a larger one fails the attempt.", nullptr,
                            &guc::http_max_response_bytes, 1024 * 1024, 1024, MaxAllocSize / 2, PGC_SIGHUP,
                            GUC_UNIT_BYTE, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pipeline_worker.http_max_in_flight",
                            "HTTP requests one worker keeps in flight at most.",
                            "Bounded further by the server's open file limit (logged when it binds).",
                            &guc::http_max_in_flight, 1000, 1, 100000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pipeline_worker.max_map_tasks",
                            "Most elements a map step accepts; a longer array fails the step.", nullptr,
                            &guc::max_map_tasks, 10000, 0, 10000000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pipeline_worker.max_child_depth",
                            "Deepest nesting of child runs (\"pipeline\" steps); a deeper child fails its step.", nullptr,
                            &guc::max_child_depth, 32, 1, 10000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomBoolVariable("pipeline_worker.enabled", "Whether the workers claim runs and the timer fires.",
                             "off: the workers claim nothing, no delayed run is moved in and no schedule fires "
                             "(runs already executing finish), e.g. while a dump is restored; on: they resume.",
                             &guc::enabled, true, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("pipeline_worker.retention",
                               "How long finished runs are kept (a pipeline's \"retention\" option overrides it).",
                               "An interval such as '7 days'; -1 keeps them forever. Older succeeded, failed and "
                               "cancelled runs are deleted in the background, with their steps.",
                               &guc::retention, "7 days", PGC_SIGHUP, 0, check_retention, assign_retention, nullptr);
    MarkGUCPrefixReserved("pipeline_worker");
}

}  // namespace pw::guc
