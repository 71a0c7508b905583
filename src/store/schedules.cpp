#include "store/schedules.hpp"

#include "core/cron.hpp"
#include "core/schedule_options.hpp"
#include "pg/boundary.hpp"
#include "pg/kept_plans.hpp"
#include "pg/spi.hpp"
#include "pg/subxact.hpp"
#include "shmem/commit_notes.hpp"
#include "shmem/metrics.hpp"
#include "shmem/shared.hpp"

extern "C" {
#include "pgtime.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
}

namespace pw::store {

using pg::col;

namespace {

constexpr int64 kUnixEpochOffset = (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
constexpr int kMaxSlotsPerPass = 1000;  // per schedule and timer pass; the rest in the next pass (due at once)
constexpr int64 kMaxMissedPerPass = 200000;  // missed slots counted per schedule and timer pass (step_over_missed)

SPIPlanPtr plan_due, plan_target, plan_grants, plan_insert, plan_existing, plan_update, plan_deactivate, plan_next;

int64 unix_seconds(TimestampTz t) {
    int64 s = t / USECS_PER_SEC;
    if (t < 0 && t % USECS_PER_SEC != 0) s--;  // floor
    return s + kUnixEpochOffset;
}

TimestampTz timestamp_of(int64 secs) { return (secs - kUnixEpochOffset) * USECS_PER_SEC; }

// pg_tzset also takes POSIX zone specs ("UTC+3", "+03:00"), whose offsets count hours west of Greenwich: "+03:00"
// would fire six hours away from what its writer meant. A schedule takes the tz database's names only (those of
// pg_timezone_names). A spec always has a digit (its offset): a name without one needs no look, and one with a digit
// (Etc/GMT+3, EST5EDT) is looked for among the database's names.
bool in_tz_database(pg_tz *tz) {
    const char *name = pg_get_timezone_name(tz);
    if (strpbrk(name, "0123456789") == nullptr) return true;
    bool found = false;
    pg_tzenum *names = pg_tzenumerate_start();
    for (pg_tz *z; !found && (z = pg_tzenumerate_next(names)) != nullptr;)
        found = pg_strcasecmp(pg_get_timezone_name(z), name) == 0;
    pg_tzenumerate_end(names);
    return found;
}

pg_tz *zone_or_error(const char *timezone) {
    pg_tz *tz = pg_tzset(timezone);
    if (tz == nullptr || !in_tz_database(tz))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("unknown time zone \"%s\"", timezone),
                        errhint("Use an IANA time zone name such as \"Europe/Paris\" (see pg_timezone_names).")));
    return tz;
}

// The zone's UTC offset at a moment, as the cron code asks for it. (Inside cpp_call: an std::function.)
core::cron::OffsetFn utc_offset(pg_tz *tz) {
    return [tz](int64_t t) {
        pg_time_t pt = static_cast<pg_time_t>(t);
        struct pg_tm *tm = pg_localtime(&pt, tz);  // (pure computation: never ereports)
        return tm != nullptr ? static_cast<int>(tm->tm_gmtoff) : 0;
    };
}

// The slots after `after` up to and including `until`, at most max of them, into out[] (palloc'd by the caller:
// no C++ object outlives the cpp_call); *next: the first slot after those (kNoSlot: none). Returns the count.
int slots_between(const char *cron, pg_tz *tz, int64 after, int64 until, int64 *out, int max, int64 *next,
                  pg::CppError *err) {
    int n = 0;
    *next = core::cron::kNoSlot;
    *err = pg::cpp_call([&] {
        core::cron::Spec spec = core::cron::parse(cron);
        core::cron::OffsetFn offset = utc_offset(tz);
        int64 s = core::cron::next_slot(spec, after, offset);
        while (s != core::cron::kNoSlot && s <= until && n < max) {
            out[n++] = s;
            s = core::cron::next_slot(spec, s, offset);
        }
        *next = s;
    });
    return n;
}

// Of the slots missed while the server was down (from `after` to `since`: the server's start, or the end of a time
// pipeline_worker.enabled was off that began before them; up to `until`), only the latest `keep` get a
// run ("catch_up"), however many passes of kMaxSlotsPerPass they span: the ones before those are stepped over here
// (until 2026-12-05 catch_up applied per pass: 2,500 missed slots and "latest" gave 3 runs). Counts at most
// kMaxMissedPerPass slots; *resume (kNoSlot unless the count stopped there) is where the next pass goes on, and this
// one fires nothing. Returns the slot to start after: `after` itself when at most `keep` slots were missed.
int64 step_over_missed(const char *cron, pg_tz *tz, int64 after, int64 until, TimestampTz since, int keep,
                       int64 *resume, pg::CppError *err) {
    *resume = core::cron::kNoSlot;
    int64 *ring = static_cast<int64 *>(palloc(sizeof(int64) * (keep + 1)));  // the latest keep + 1 missed
    int64 count = 0, stop = core::cron::kNoSlot;
    bool stopped = false;
    *err = pg::cpp_call([&] {
        core::cron::Spec spec = core::cron::parse(cron);
        core::cron::OffsetFn offset = utc_offset(tz);
        int64 s = core::cron::next_slot(spec, after, offset);
        while (s != core::cron::kNoSlot && s <= until && timestamp_of(s) < since) {
            if (count == kMaxMissedPerPass) {
                stopped = true;
                break;
            }
            ring[count % (keep + 1)] = s;
            count++;
            s = core::cron::next_slot(spec, s, offset);
        }
        stop = s;
    });
    int64 start = after;
    if (!err->failed && count > keep) {
        start = ring[(count - keep - 1) % (keep + 1)];  // the last slot before the kept ones
        if (stopped) *resume = keep > 0 ? ring[(count - keep) % (keep + 1)] : stop;
    }
    pfree(ring);
    return start;
}

}  // namespace

TimestampTz next_schedule_slot(const char *cron, const char *timezone, TimestampTz after) {
    pg_tz *tz = zone_or_error(timezone);
    pg::CppError err;
    int64 next;
    (void)slots_between(cron, tz, unix_seconds(after), INT64_MIN, nullptr, 0, &next, &err);
    if (err.failed)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        strncmp(err.message, "invalid ", 8) == 0
                            ? errmsg("%s", err.message)
                            : errmsg("invalid cron schedule \"%s\": %s", cron, err.message),
                        errhint("Five fields (minute hour day-of-month month day-of-week) such as '*/5 * * * *', a "
                                "macro such as '@daily', or 'N seconds' with N from 1 to 59.")));
    return next == core::cron::kNoSlot ? 0 : timestamp_of(next);
}

namespace {

// A schedule that cannot fire any more (reason logged by the caller): inactive, no next slot.
void deactivate(const char *name) {
    Oid t[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(name)};
    pg::run_as_owner(&plan_deactivate,
                     "UPDATE pipeline_worker.schedules SET active = false, next_run_at = NULL WHERE name = $1", 1, t,
                     v, nullptr, false);
}

// A schedule's slots handled up to `next` (kNoSlot: none left; slots as unix seconds, last_slot 0: none this pass).
void note_handled(const char *name, int64 next, int64 last_slot, int64 last_run, int64 skipped) {
    Oid t[5] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID, INT8OID};
    Datum v[5] = {CStringGetTextDatum(name), TimestampTzGetDatum(next == core::cron::kNoSlot ? 0 : timestamp_of(next)),
                  TimestampTzGetDatum(last_slot ? timestamp_of(last_slot) : 0), Int64GetDatum(last_run),
                  Int64GetDatum(skipped)};
    char nulls[5] = {' ', next == core::cron::kNoSlot ? 'n' : ' ', last_slot ? ' ' : 'n', last_run ? ' ' : 'n', ' '};
    pg::run_as_owner(&plan_update,
                     "UPDATE pipeline_worker.schedules SET next_run_at = $2, last_slot = COALESCE($3, last_slot),"
                     " last_run_id = $4, skipped = skipped + $5 WHERE name = $1",
                     5, t, v, nulls, false);
}

// A schedule's options as plain palloc'd data (no C++ object may live across SPI calls).
struct SlotOptions {
    char *timezone;
    core::CatchUp catch_up;
    int catch_up_max;
    core::Overlap overlap;
    int priority;
    char *concurrency_key;  // NULL: none
};

SlotOptions read_options(const char *json, pg::CppError *err) {
    SlotOptions out = {nullptr, core::CatchUp::None, 100, core::Overlap::Allow, 0, nullptr};
    *err = pg::cpp_call([&] {
        core::ScheduleOptions o = core::parse_schedule_options(json);
        out.timezone = pg::pstrdup_guarded(o.timezone);
        out.catch_up = o.catch_up;
        out.catch_up_max = o.catch_up_max;
        out.overlap = o.overlap;
        out.priority = o.priority;
        out.concurrency_key = o.concurrency_key.empty() ? nullptr : pg::pstrdup_guarded(o.concurrency_key);
    });
    return out;
}

struct DueSchedule {
    char *name;
    char *pipeline;
    char *cron;
    Datum input;
    Datum metadata;
    char *options;
    Oid owner;
    int64 pipeline_id;  // the pipeline it was scheduled on (a re-created pipeline of the same name is another one)
    TimestampTz next_run_at;
    int64 last_run_id;  // 0: none
    TimestampTz last_busy_until;  // when the last run finished (DT_NOEND: it has not; DT_NOBEGIN: no run)
};

// May the schedule's owner still submit to its pipeline? Fills the pipeline's id, owner and pause state; when not,
// *why says why.
bool owner_may_submit(const DueSchedule &s, int64 *pipeline_id, Oid *pipeline_owner, bool *paused, const char **why) {
    // A dropped owner's grant rows stay (a revoke by number removes them), and has_privs_of_role of an OID with
    // itself is true: its schedule kept firing runs that failed at once (until 2026-12-07; acceptance walk-through).
    if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(s.owner))) {
        *why = psprintf("its owner (role OID %u) no longer exists", s.owner);
        return false;
    }
    *why = psprintf("pipeline \"%s\" was dropped", s.pipeline);
    Oid types[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(s.pipeline)};
    pg::run_as_owner(&plan_target, "SELECT owner::oid, id, paused FROM pipeline_worker.pipelines WHERE name = $1", 1,
                     types, v, nullptr, false);
    if (SPI_processed == 0) return false;
    bool isnull;
    *pipeline_owner = DatumGetObjectId(col(0, 1, &isnull));
    *pipeline_id = DatumGetInt64(col(0, 2, &isnull));
    if (*pipeline_id != s.pipeline_id) return false;  // dropped; the name now belongs to another pipeline
    *paused = DatumGetBool(col(0, 3, &isnull));
    *why = psprintf("its owner may no longer submit runs to pipeline \"%s\"", s.pipeline);
    if (has_privs_of_role(s.owner, *pipeline_owner)) return true;
    // an admin, or a grantee
    Oid admin = get_role_oid("pipeline_worker_admin", true);
    if (superuser_arg(s.owner) || (OidIsValid(admin) && has_privs_of_role(s.owner, admin))) return true;
    pg::run_as_owner(&plan_grants, "SELECT grantee::oid FROM pipeline_worker.pipeline_grants WHERE pipeline = $1", 1,
                     types, v, nullptr, true);
    for (uint64 i = 0; i < SPI_processed; i++)
        if (has_privs_of_role(s.owner, DatumGetObjectId(col(i, 1, &isnull)))) return true;
    return false;
}

// The run of one slot, submitted as the schedule's owner; its idempotency key makes a second attempt at the same
// slot return the first run. Returns its id.
int64 create_slot_run(const DueSchedule &s, const SlotOptions &o, TimestampTz slot, int64 pipeline_id,
                      Oid pipeline_owner, bool paused) {
    Oid types[11] = {TEXTOID, JSONBOID, JSONBOID, OIDOID, INT8OID, OIDOID, INT4OID, TIMESTAMPTZOID, TEXTOID, BOOLOID,
                     TEXTOID};
    Datum v[11] = {CStringGetTextDatum(s.pipeline), s.input, s.metadata, ObjectIdGetDatum(s.owner),
                   Int64GetDatum(pipeline_id), ObjectIdGetDatum(pipeline_owner), Int32GetDatum(o.priority),
                   TimestampTzGetDatum(slot),
                   o.concurrency_key == nullptr ? (Datum)0 : CStringGetTextDatum(o.concurrency_key),
                   BoolGetDatum(paused), CStringGetTextDatum(s.name)};
    char nulls[11] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', o.concurrency_key == nullptr ? 'n' : ' ', ' ', ' '};
    pg::run_as_owner(&plan_insert,
                     "WITH k AS (SELECT pg_catalog.to_char($8 AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS slot)"
                     " INSERT INTO pipeline_worker.runs (pipeline, input, metadata, submitted_by, pipeline_id,"
                     "  pipeline_owner, priority, idempotency_key, concurrency_key, parked)"
                     " SELECT $1, $2, $3 || pg_catalog.jsonb_build_object('schedule', $11::text, 'scheduled_for', k.slot),"
                     "  $4::regrole, $5, $6::regrole, $7, 'schedule:' || $11 || ':' || k.slot, $9, CASE WHEN $10 THEN 3 END"
                     " FROM k"
                     " ON CONFLICT (pipeline_id, submitted_by, idempotency_key) WHERE idempotency_key IS NOT NULL"
                     " DO NOTHING RETURNING id",
                     11, types, v, nulls, false);
    bool isnull;
    if (SPI_processed == 1) return DatumGetInt64(col(0, 1, &isnull));
    Oid et[4] = {INT8OID, OIDOID, TEXTOID, TIMESTAMPTZOID};
    Datum ev[4] = {v[4], v[3], CStringGetTextDatum(s.name), v[7]};
    pg::run_as_owner(&plan_existing,
                     "SELECT id FROM pipeline_worker.runs WHERE pipeline_id = $1 AND submitted_by = $2::regrole"
                     " AND idempotency_key = 'schedule:' || $3 || ':'"
                     "   || pg_catalog.to_char($4 AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                     4, et, ev, nullptr, false);
    return SPI_processed == 1 ? DatumGetInt64(col(0, 1, &isnull)) : 0;
}

// The active schedules due now (at most 100, locked; skipping those locked elsewhere), read into palloc memory.
DueSchedule *lock_due(int *n) {
    // The time as a parameter (clock_timestamp() is volatile: a filter reading every schedule, not a bound)
    Oid now_type[1] = {TIMESTAMPTZOID};
    Datum due_by[1] = {TimestampTzGetDatum(GetCurrentTimestamp())};
    SPIPlanPtr p = pg::prepare(&plan_due,
                               "/* pw_indexes: schedules_due_idx runs_pkey */ SELECT s.name, s.pipeline, s.cron,"
                               " s.input, s.metadata, s.options::text, s.owner::oid, s.next_run_at, s.last_run_id,"
                               " COALESCE((SELECT CASE WHEN r.status IN ('pending', 'running', 'waiting')"
                               "   THEN 'infinity'::timestamptz ELSE COALESCE(r.finished_at, '-infinity') END"
                               "   FROM pipeline_worker.runs r WHERE r.id = s.last_run_id), '-infinity'), s.pipeline_id"
                               " FROM pipeline_worker.schedules s WHERE s.active AND s.next_run_at <= $1"
                               " ORDER BY s.next_run_at LIMIT 100 FOR UPDATE OF s SKIP LOCKED",
                               1, now_type);
    pg::exec_as_owner(p, due_by, nullptr, false, 0);
    *n = static_cast<int>(SPI_processed);
    DueSchedule *due = static_cast<DueSchedule *>(palloc0(sizeof(DueSchedule) * (*n > 0 ? *n : 1)));
    for (int i = 0; i < *n; i++) {
        bool isnull;
        DueSchedule &s = due[i];
        s.name = TextDatumGetCString(col(i, 1, &isnull));
        s.pipeline = TextDatumGetCString(col(i, 2, &isnull));
        s.cron = TextDatumGetCString(col(i, 3, &isnull));
        s.input = PointerGetDatum(DatumGetJsonbPCopy(col(i, 4, &isnull)));
        s.metadata = PointerGetDatum(DatumGetJsonbPCopy(col(i, 5, &isnull)));
        s.options = TextDatumGetCString(col(i, 6, &isnull));
        s.owner = DatumGetObjectId(col(i, 7, &isnull));
        s.next_run_at = DatumGetTimestampTz(col(i, 8, &isnull));
        Datum last = col(i, 9, &isnull);
        s.last_run_id = isnull ? 0 : DatumGetInt64(last);
        s.last_busy_until = DatumGetTimestampTz(col(i, 10, &isnull));
        s.pipeline_id = DatumGetInt64(col(i, 11, &isnull));
    }
    return due;
}

// One due schedule: a run for each slot since it was last handled (of those missed while the server was down, per
// "catch_up"; none while the last one is unfinished, per "overlap"), then its next slot noted. Deactivated, and
// logged, when its options or time zone are invalid or its owner may no longer submit to the pipeline. Returns the
// runs created.
int64 fire_schedule(const DueSchedule &s, int64 now_s) {
    pg::CppError err;
    SlotOptions o = read_options(s.options, &err);
    pg_tz *tz = err.failed ? nullptr : pg_tzset(o.timezone);
    int64 *slots = static_cast<int64 *>(palloc(sizeof(int64) * kMaxSlotsPerPass));
    int64 next = core::cron::kNoSlot, resume = core::cron::kNoSlot;
    int nslots = 0;
    int keep_missed = o.catch_up == core::CatchUp::None ? 0 : o.catch_up == core::CatchUp::Latest ? 1 : o.catch_up_max;
    int64 after = unix_seconds(s.next_run_at) - 1;  // next_run_at is the first unhandled slot: start just before it
    // Down: before the server's start, or during the last time pipeline_worker.enabled was off (until 2026-12-07
    // those slots all fired when it was turned on again, "catch_up": "none" or not; acceptance walk-through). A slot
    // due while it was on and not handled yet (every worker inside a step, say) is late, not missed.
    TimestampTz off_from = 0, off_until = 0;
    bool off = shared::timer_off_period(&off_from, &off_until);
    auto missed = [&](TimestampTz t) { return t < PgStartTime || (off && t >= off_from && t < off_until); };
    // the missed slots from next_run_at on, up to since (none: since = 0)
    TimestampTz since = s.next_run_at < PgStartTime ? PgStartTime : 0;
    if (off && off_from <= std::max(s.next_run_at, since) && s.next_run_at < off_until) since = off_until;
    if (tz != nullptr && s.next_run_at < since)
        after = step_over_missed(s.cron, tz, after, now_s, since, keep_missed, &resume, &err);
    if (tz != nullptr && !err.failed && resume != core::cron::kNoSlot) {
        note_handled(s.name, resume, 0, s.last_run_id, 0);  // more missed slots to count: go on in the next pass
        return 0;
    }
    if (tz != nullptr && !err.failed)
        nslots = slots_between(s.cron, tz, after, now_s, slots, kMaxSlotsPerPass, &next, &err);
    if (err.failed || tz == nullptr) {
        ereport(LOG, (errmsg("pipeline_worker: schedule \"%s\" deactivated: %s", s.name,
                             tz == nullptr && !err.failed ? "unknown time zone" : err.message)));
        deactivate(s.name);
        return 0;
    }
    // Which slots get a run: those since the timer runs; of the ones missed while it was down, per "catch_up".
    int64 *fire = static_cast<int64 *>(palloc(sizeof(int64) * (nslots > 0 ? nslots : 1)));
    int nfire = 0, nmissed = 0;
    for (int k = 0; k < nslots; k++) nmissed += missed(timestamp_of(slots[k]));
    for (int k = 0, m = 0; k < nslots; k++)
        if (!missed(timestamp_of(slots[k])) || m++ >= nmissed - keep_missed) fire[nfire++] = slots[k];
    int64 last_slot = nslots > 0 ? slots[nslots - 1] : 0;
    int64 pipeline_id = 0, skipped = 0, last_run = s.last_run_id, created = 0;
    Oid pipeline_owner = InvalidOid;
    bool paused = false;
    // "overlap": "skip" asks whether the last run was unfinished at the slot, not when the timer looks: a round late
    // (every worker inside a step) found the run just finished, and fired the slots it had been busy over (until
    // 2026-12-07, with one worker and a 3 s step: a run for the slot after each run's start).
    TimestampTz busy_until = s.last_busy_until;
    for (int k = 0; k < nfire; k++) {
        const char *why;
        if (!owner_may_submit(s, &pipeline_id, &pipeline_owner, &paused, &why)) {
            ereport(LOG, (errmsg("pipeline_worker: schedule \"%s\" deactivated: %s", s.name, why),
                          errhint("Grant it again and call pipeline_worker.schedule() to reactivate it.")));
            deactivate(s.name);
            return created;
        }
        if (o.overlap == core::Overlap::Skip && busy_until > timestamp_of(fire[k])) {
            skipped++;
            continue;
        }
        int64 id = create_slot_run(s, o, timestamp_of(fire[k]), pipeline_id, pipeline_owner, paused);
        if (id != 0) {
            last_run = id;
            busy_until = DT_NOEND;
            created++;
            metrics::runs_created(s.pipeline);
        }
    }
    note_handled(s.name, next, last_slot, last_run, skipped);
    return created;
}

// fire_schedule in a subtransaction. A schedule whose firing fails for good (a user's trigger on the run tables
// refusing its runs, say) is deactivated and logged, as for invalid options. Until 2026-12-04 its error rolled back
// the timer's whole round, once a second: no delayed run became due and no parked run came back in the database
// (test/scripts/schedules.sh). Errors that may pass (cancel, shutdown, serialization, locks, resources) still end
// the round, which is tried again in a second.
struct Firing {
    const DueSchedule *schedule;
    int64 now_s;
    int64 made;
};

void fire(void *arg) {
    Firing *f = static_cast<Firing *>(arg);
    f->made = fire_schedule(*f->schedule, f->now_s);
}

int64 fire_guarded(const DueSchedule &s, int64 now_s) {
    Firing f{&s, now_s, 0};
    ErrorData *failure = pg::try_subtransaction(fire, &f);
    if (failure != nullptr) {
        // (rolled back also before a rethrow: the round's abort ends the top level only)
        int category = ERRCODE_TO_CATEGORY(failure->sqlerrcode);
        if (category == ERRCODE_TRANSACTION_ROLLBACK || category == ERRCODE_OPERATOR_INTERVENTION ||
            category == ERRCODE_INSUFFICIENT_RESOURCES || failure->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
            ReThrowError(failure);
        ereport(LOG, (errmsg("pipeline_worker: schedule \"%s\" deactivated: %s", s.name, failure->message),
                      errhint("Fix the cause and call pipeline_worker.schedule() to reactivate it.")));
        FreeErrorData(failure);
        deactivate(s.name);
    }
    return f.made;
}

}  // namespace

int64 fire_due_schedules() {
    pg::spi_connect();
    int n;
    DueSchedule *due = lock_due(&n);
    int64 created = 0, now_s = unix_seconds(GetCurrentTimestamp());
    for (int i = 0; i < n; i++) created += fire_guarded(due[i], now_s);
    SPI_finish();
    if (created > 0) notes::runs_created(static_cast<int>(created > 1000 ? 1000 : created));
    return created;
}

TimestampTz next_schedule_due() {
    SPIPlanPtr p = pg::prepare(&plan_next,
                               "/* pw_indexes: schedules_due_idx */ SELECT next_run_at FROM pipeline_worker.schedules"
                               " WHERE active AND next_run_at IS NOT NULL ORDER BY next_run_at LIMIT 1",
                               0, nullptr);
    pg::exec_as_owner(p, nullptr, nullptr, true, 1);
    bool isnull = true;
    Datum d = SPI_processed > 0 ? col(0, 1, &isnull) : 0;
    return isnull ? 0 : DatumGetTimestampTz(d);
}

}  // namespace pw::store
