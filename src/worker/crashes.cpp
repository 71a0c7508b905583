#include "worker/crashes.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
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
    int32 count;
    int32 position;
    int32 attempt;
    int32 task;  // as in CrashMarker
};

void ensure_dir() {
    if (mkdir(kDir, pg_dir_create_mode) != 0 && errno != EEXIST)
        ereport(WARNING, (errcode_for_file_access(), errmsg("pipeline_worker: could not create directory \"%s\": %m", kDir)));
}

void slot_path(char *buf, size_t len, int slot) { snprintf(buf, len, "%s/slot_%d", kDir, slot); }

void count_path(char *buf, size_t len, Oid db, int64 run) {
    snprintf(buf, len, "%s/crashes_%u_%" PRId64, kDir, db, static_cast<int64_t>(run));
}

// One more abnormal end of run m.run_id; returns the count.
int bump(const CrashMarker &m) {
    char path[MAXPGPATH];
    count_path(path, sizeof(path), m.database, m.run_id);
    int fd = open(path, O_RDWR | O_CREAT | PG_BINARY, pg_file_create_mode);
    if (fd < 0) {
        ereport(WARNING, (errcode_for_file_access(), errmsg("pipeline_worker: could not open \"%s\": %m", path)));
        return 0;
    }
    CountRecord rec{};
    if (pread(fd, &rec, sizeof(rec), 0) != static_cast<ssize_t>(sizeof(rec)) || rec.magic != kCountMagic) rec = CountRecord{};
    // (another place than the last crash of the run: counted from 1 again)
    if (rec.position != m.position || rec.attempt != m.attempt || rec.task != m.task) rec.count = 0;
    rec.magic = kCountMagic;
    rec.count++;
    rec.position = m.position;
    rec.attempt = m.attempt;
    rec.task = m.task;
    if (pwrite(fd, &rec, sizeof(rec), 0) != static_cast<ssize_t>(sizeof(rec)))
        ereport(WARNING, (errcode_for_file_access(), errmsg("pipeline_worker: could not write \"%s\": %m", path)));
    close(fd);
    return rec.count;
}

volatile CrashMarker *mapped = nullptr;  // NULL: no marker (set-up failed, or not a worker)

void clear_at_exit(int, Datum) {
    if (mapped != nullptr) mapped->run_id = 0;  // a clean exit (SIGTERM, FATAL): not a crash
}

// Like PostgreSQL's SignalHandlerForCrashExit, after clearing the marker (a plain store: async-signal-safe).
void quit_handler(SIGNAL_ARGS) {
    if (mapped != nullptr) mapped->run_id = 0;
    _exit(2);
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
        if (pread(fd, &m, sizeof(m), 0) == static_cast<ssize_t>(sizeof(m)) && m.magic == kMarkerMagic && m.run_id != 0) {
            int n = bump(m);
            ereport(LOG, (errmsg("pipeline_worker: worker %d ended abnormally in step %d (attempt %d) of run %lld; "
                                 "abnormal end %d of %d for this run",
                                 i, m.position, m.attempt, static_cast<long long>(m.run_id), n, kMaxCrashes),
                          n >= kMaxCrashes ? errhint("The run will be failed instead of being executed again.") : 0));
            m.run_id = 0;
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
    mapped->run_id = 0;
    mapped->magic = kMarkerMagic;
    mapped->database = MyDatabaseId;
    before_shmem_exit(clear_at_exit, 0);
    pqsignal(SIGQUIT, quit_handler);
}

void mark(int64 run_id, int position, int attempt, int task) {
    if (mapped == nullptr) return;
    mapped->position = position;
    mapped->attempt = attempt;
    mapped->task = task + 1;
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
            CountRecord rec{};
            bool ok = pread(fd, &rec, sizeof(rec), 0) == static_cast<ssize_t>(sizeof(rec)) && rec.magic == kCountMagic;
            close(fd);
            bool done;
            if (ok && rec.count >= kMaxCrashes && store::fail_crashed_run(run, rec.position, rec.attempt, rec.count)) {
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
