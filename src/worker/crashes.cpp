#include "worker/crashes.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstddef>
#include <cstring>

#include "pg/spi.hpp"
#include "store/run_rows.hpp"

namespace pw::worker::crashes {

namespace {

constexpr const char *kDir = "pipeline_worker";  // relative to the data directory (the server's cwd)
constexpr uint64 kMarkerMagic = UINT64CONST(0x50574d41524b3031);  // "PWMARK01"
constexpr uint64 kCountMagic = UINT64CONST(0x5057435241534831);   // "PWCRASH1"

struct CountRecord {
    uint64 magic;
    int32 count;  // abnormal ends in a row at this place, of any kind
    int32 position;
    int32 attempt;
    int32 task;    // as in CrashMarker
    int32 faults;  // of them, faults the worker caught (the rest: kills)
    int32 unused;
};
// The builds before 2026-12-07 wrote records without `faults` (24 bytes), counting every abnormal end as a crash:
// read so, their decisions stand.
constexpr ssize_t kOldCountSize = 24;
static_assert(sizeof(CountRecord) == 32, "crash count file layout");
static_assert(offsetof(CountRecord, faults) == kOldCountSize, "crash count file layout");
static_assert(sizeof(CrashMarker) == 40 && offsetof(CrashMarker, fault) == 32, "crash marker file layout");

bool read_count(int fd, CountRecord *rec) {
    *rec = CountRecord{};
    ssize_t n = pread(fd, rec, sizeof(*rec), 0);
    if (n == kOldCountSize && rec->magic == kCountMagic) rec->faults = rec->count;
    else if (n != static_cast<ssize_t>(sizeof(*rec)) || rec->magic != kCountMagic) return false;
    return true;
}

void ensure_dir() {
    if (mkdir(kDir, pg_dir_create_mode) != 0 && errno != EEXIST)
        ereport(WARNING, (errcode_for_file_access(), errmsg("pipeline_worker: could not create directory \"%s\": %m", kDir)));
}

void slot_path(char *buf, size_t len, int slot) { snprintf(buf, len, "%s/slot_%d", kDir, slot); }

void count_path(char *buf, size_t len, Oid db, int64 run) {
    snprintf(buf, len, "%s/crashes_%u_%" PRId64, kDir, db, static_cast<int64_t>(run));
}

// One more abnormal end of run m.run_id; returns the record.
CountRecord bump(const CrashMarker &m) {
    char path[MAXPGPATH];
    count_path(path, sizeof(path), m.database, m.run_id);
    int fd = open(path, O_RDWR | O_CREAT | PG_BINARY, pg_file_create_mode);
    if (fd < 0) {
        ereport(WARNING, (errcode_for_file_access(), errmsg("pipeline_worker: could not open \"%s\": %m", path)));
        return CountRecord{};
    }
    CountRecord rec;
    if (!read_count(fd, &rec)) rec = CountRecord{};
    // (another place than the last crash of the run: counted from 1 again)
    if (rec.position != m.position || rec.attempt != m.attempt || rec.task != m.task) rec.count = rec.faults = 0;
    rec.magic = kCountMagic;
    rec.count++;
    if (m.fault != 0) rec.faults++;
    rec.position = m.position;
    rec.attempt = m.attempt;
    rec.task = m.task;
    if (pwrite(fd, &rec, sizeof(rec), 0) != static_cast<ssize_t>(sizeof(rec)))
        ereport(WARNING, (errcode_for_file_access(), errmsg("pipeline_worker: could not write \"%s\": %m", path)));
    close(fd);
    return rec;
}

bool reached(const CountRecord &rec) { return rec.faults >= kMaxCrashes || rec.count >= kMaxKills; }

volatile CrashMarker *mapped = nullptr;  // NULL: no marker (set-up failed, or not a worker)
pid_t marker_owner = 0;                  // the worker that mapped it (a child forked by a step inherits the mapping)

void clear_at_exit(int, Datum) {
    if (mapped != nullptr) mapped->run_id = 0;  // a clean exit (SIGTERM, FATAL): not a crash
}

// Like PostgreSQL's SignalHandlerForCrashExit, after clearing the marker (a plain store: async-signal-safe).
void quit_handler(SIGNAL_ARGS) {
    if (mapped != nullptr) mapped->run_id = 0;
    _exit(2);
}

// A fault of the process's own (SIGSEGV, SIGBUS, SIGILL, SIGABRT): noted in the marker, then the signal's default
// action -- the handler was reset on entry (SA_RESETHAND), and the signal raised again is delivered at once or when
// the handler returns (a fault of an instruction happens again there). The process dies of it as it would have
// without the handler, and the postmaster restarts the server. Only the kernel's signals (si_code > 0: a real fault)
// and the process's own (abort(), raise()) are faults: one sent by another process (an operator's kill -SEGV for a
// core dump) counts as a kill. Plain stores, getpid() and raise(): async-signal-safe.
void fault_handler(int sig, siginfo_t *info, void *) {
    bool own = info != nullptr && (info->si_code > 0 || info->si_pid == getpid());
    if (own && mapped != nullptr && getpid() == marker_owner && mapped->run_id != 0) mapped->fault = sig;
    raise(sig);
}

// (On a stack of its own: a fault from a stack overflow leaves no room on the process's stack.)
alignas(16) char fault_stack[64 * 1024];

void catch_faults() {
    stack_t ss{};
    ss.ss_sp = fault_stack;
    ss.ss_size = sizeof(fault_stack);
    bool alt = sigaltstack(&ss, nullptr) == 0;
    struct sigaction sa {};
    sa.sa_sigaction = fault_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND | (alt ? SA_ONSTACK : 0);
    // Only where nothing else handles the signal: PostgreSQL's own handler of SIGFPE (an ERROR, not a crash) and any
    // a preloaded library installed stay as they are.
    static const int faults[] = {SIGSEGV, SIGBUS, SIGILL, SIGABRT};
    for (int sig : faults) {
        struct sigaction old {};
        if (sigaction(sig, nullptr, &old) == 0 && !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL)
            (void)sigaction(sig, &sa, nullptr);
    }
}

}  // namespace

void collect(shared::State *st) {
    ensure_dir();
    for (int i = 0; i < st->nslots; i++) {
        if (st->slots[i].pid != 0) continue;  // a live worker (the launcher alone restarted): its current step
        char path[MAXPGPATH];
        slot_path(path, sizeof(path), i);
        int fd = open(path, O_RDWR | PG_BINARY, 0);
        if (fd < 0) continue;
        CrashMarker m{};
        // (a marker of a build before 2026-12-07 ends before `fault`: a kill)
        ssize_t got = pread(fd, &m, sizeof(m), 0);
        if (got >= static_cast<ssize_t>(offsetof(CrashMarker, fault)) && m.magic == kMarkerMagic && m.run_id != 0) {
            if (got < static_cast<ssize_t>(sizeof(m))) m.fault = 0;
            CountRecord rec = bump(m);
            // (kills: SIGKILL, an operator's or the out-of-memory killer's, or any signal the worker did not catch)
            char how[32];
            if (m.fault != 0) snprintf(how, sizeof(how), "signal %d", m.fault);
            else snprintf(how, sizeof(how), "killed");
            ereport(LOG, (errmsg("pipeline_worker: worker %d ended abnormally (%s) in step %d (attempt %d) of run %lld; "
                                 "abnormal end %d of %d, fault %d of %d for this run",
                                 i, how, m.position, m.attempt, static_cast<long long>(m.run_id), rec.count, kMaxKills,
                                 rec.faults, kMaxCrashes),
                          reached(rec) ? errhint("The run will be failed instead of being executed again.")
                                       : errhint("Its step is executed again after the restart.")));
            m.run_id = 0;
            m.fault = 0;
            if (pwrite(fd, &m, sizeof(m), 0) != static_cast<ssize_t>(sizeof(m)))
                ereport(WARNING, (errcode_for_file_access(), errmsg("pipeline_worker: could not write \"%s\": %m", path)));
        }
        close(fd);
    }
}

void attach(int slot_no) {
    ensure_dir();
    char path[MAXPGPATH];
    slot_path(path, sizeof(path), slot_no);
    int fd = open(path, O_RDWR | O_CREAT | PG_BINARY, pg_file_create_mode);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 ||
        (sb.st_size < static_cast<off_t>(sizeof(CrashMarker)) && ftruncate(fd, sizeof(CrashMarker)) != 0)) {
        ereport(WARNING, (errcode_for_file_access(), errmsg("pipeline_worker: could not set up \"%s\": %m", path),
                          errdetail("Runs whose steps crash this worker will not be detected.")));
        if (fd >= 0) close(fd);
        return;
    }
    void *p = mmap(nullptr, sizeof(CrashMarker), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        ereport(WARNING, (errmsg("pipeline_worker: could not map \"%s\": %m", path)));
        return;
    }
    mapped = static_cast<volatile CrashMarker *>(p);
    marker_owner = getpid();
    mapped->run_id = 0;
    mapped->fault = 0;
    mapped->magic = kMarkerMagic;
    mapped->database = MyDatabaseId;
    before_shmem_exit(clear_at_exit, 0);
    pqsignal(SIGQUIT, quit_handler);
    catch_faults();
}

void mark(int64 run_id, int position, int attempt, int task) {
    if (mapped == nullptr) return;
    mapped->position = position;
    mapped->attempt = attempt;
    mapped->task = task + 1;
    mapped->fault = 0;
    pg_compiler_barrier();
    mapped->run_id = run_id;  // last: a crash before this store names no run
}

void unmark() {
    if (mapped != nullptr) mapped->run_id = 0;
}

void settle() {
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "crashes_%u_", MyDatabaseId);
    size_t plen = strlen(prefix);
    // Count files to remove once the transaction committed: kept in the caller's context, not the transaction's
    // (which the commit frees).
    MemoryContext caller = CurrentMemoryContext;
    List *forget = NIL;
    SetCurrentStatementStartTimestamp();  // now() and pg_stat_activity: this transaction's start
    StartTransactionCommand();
    pg::lock_run_table_first();
    PushActiveSnapshot(GetTransactionSnapshot());
    DIR *dir = AllocateDir(kDir);  // freed by the abort if anything below fails
    if (dir != nullptr) {
        struct dirent *de;
        while ((de = ReadDir(dir, kDir)) != nullptr) {
            if (strncmp(de->d_name, prefix, plen) != 0) continue;
            char *end = nullptr;
            long long run = strtoll(de->d_name + plen, &end, 10);
            if (end == nullptr || *end != '\0' || run <= 0) continue;
            char path[MAXPGPATH];
            snprintf(path, sizeof(path), "%s/%s", kDir, de->d_name);
            int fd = open(path, O_RDONLY | PG_BINARY, 0);
            if (fd < 0) continue;  // another worker settled it
            CountRecord rec;
            bool ok = read_count(fd, &rec);
            close(fd);
            bool done;
            if (ok && reached(rec) && store::fail_crashed_run(run, rec.position, rec.attempt, rec.count, rec.faults)) {
                ereport(WARNING, (errmsg("pipeline_worker: run %lld failed: its worker ended abnormally %d times in step %d",
                                         run, rec.count, rec.position)));
                done = true;
            } else {
                // kept while the run may still run: a run locked or executed elsewhere right now is failed later
                done = !ok || !store::run_unfinished(run);
            }
            if (done) {
                MemoryContext old = MemoryContextSwitchTo(caller);
                forget = lappend(forget, pstrdup(path));
                MemoryContextSwitchTo(old);
            }
        }
        FreeDir(dir);
    }
    PopActiveSnapshot();
    CommitTransactionCommand();
    ListCell *lc;
    foreach (lc, forget) {
        const char *path = static_cast<const char *>(lfirst(lc));
        if (unlink(path) != 0 && errno != ENOENT)
            ereport(WARNING, (errcode_for_file_access(), errmsg("pipeline_worker: could not remove \"%s\": %m", path)));
    }
    list_free_deep(forget);
}

}  // namespace pw::worker::crashes
