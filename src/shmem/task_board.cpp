#include "shmem/task_board.hpp"

#include "shmem/shared.hpp"

extern "C" {
#include "storage/ipc.h"
#include "storage/spin.h"
}

namespace pw::board {

namespace {

constexpr int kMaxChunk = 32;

struct Helper {
    int pid;  // 0: a free place
    TimestampTz started;
};

struct Entry {
    uint64 generation;  // odd while in use
    Oid dboid;
    int64 run_id;
    int pos, next, hi, claims, max_helpers, final_failure;
    int units;
    int16 unit_pos[kUnits], unit_attempt[kUnits];
    bool open;
    bool extendable;  // (steps) the owner is done taking and waits: a worker may join to take up steps ready now
    int owner_pid;
    TimestampTz owner_started;
    Latch *owner_latch;
    Helper helpers[kHelpers];
};

struct Board {
    slock_t mutex;
    pg_atomic_uint32 open;  // entries open (a hint for idle workers)
    uint64 generations;
    Entry e[kEntries];
};

Board *g_board = nullptr;

int publish_steps_or_tasks(int64 run_id, int pos, int lo, int hi, const int *positions, const int *attempts,
                           int claims, int max_helpers, uint64 *generation);

bool in_use(const Entry &e, uint64 generation) { return e.generation == generation && (generation & 1) != 0; }

int helpers_of(const Entry &e) {
    int n = 0;
    for (const Helper &h : e.helpers) n += h.pid != 0;
    return n;
}

// What a ticket copies of entry e (slot `slot`) for helper place `helper` (-1: the owner). Under the mutex.
void fill_ticket(const Entry &e, int slot, int helper, Ticket *t) {
    t->slot = slot;
    t->generation = e.generation;
    t->helper = helper;
    t->run_id = e.run_id;
    t->pos = e.pos;
    t->owner_pid = e.owner_pid;
    t->owner_started = e.owner_started;
    t->claims = e.claims;
    t->units = e.units;
    for (int u = 0; u < e.units; u++) {
        t->unit_pos[u] = e.unit_pos[u];
        t->unit_attempt[u] = e.unit_attempt[u];
    }
}

void close_locked(Entry &e) {
    if (!e.open) return;
    e.open = false;
    pg_atomic_fetch_sub_u32(&g_board->open, 1);
}

// A process leaving (FATAL, pg_terminate_backend, a retired worker) gives back what it holds on the board: the
// entries it owns are retired (their helpers' chunks roll back by their guard), its helper places are freed.
void at_exit(int, Datum) {
    if (g_board == nullptr) return;
    Latch *wake[kEntries];
    int nwake = 0;
    SpinLockAcquire(&g_board->mutex);
    for (Entry &e : g_board->e) {
        if ((e.generation & 1) == 0) continue;
        if (e.owner_pid == MyProcPid) {
            close_locked(e);
            e.generation++;
            continue;
        }
        for (Helper &h : e.helpers)
            if (h.pid == MyProcPid) {
                h.pid = 0;
                if (nwake < kEntries) wake[nwake++] = e.owner_latch;
            }
    }
    SpinLockRelease(&g_board->mutex);
    for (int i = 0; i < nwake; i++) SetLatch(wake[i]);
}

void register_exit() {
    static bool registered = false;
    if (registered) return;
    before_shmem_exit(at_exit, 0);
    registered = true;
}

}  // namespace

void shmem_request() { RequestAddinShmemSpace(MAXALIGN(sizeof(Board))); }

void shmem_startup() {
    bool found;
    g_board = static_cast<Board *>(ShmemInitStruct("pipeline_worker task board", sizeof(Board), &found));
    if (!found) {
        memset(g_board, 0, sizeof(Board));
        SpinLockInit(&g_board->mutex);
        pg_atomic_init_u32(&g_board->open, 0);
    }
}

int publish(int64 run_id, int pos, int lo, int hi, int claims, int max_helpers, uint64 *generation) {
    return publish_steps_or_tasks(run_id, pos, lo, hi, nullptr, nullptr, claims, max_helpers, generation);
}

int publish_steps(int64 run_id, const int *positions, const int *attempts, int k, int claims, int max_helpers,
                  uint64 *generation) {
    if (k > kUnits) return -1;
    return publish_steps_or_tasks(run_id, -1, 0, k, positions, attempts, claims, max_helpers, generation);
}

namespace {

int publish_steps_or_tasks(int64 run_id, int pos, int lo, int hi, const int *positions, const int *attempts,
                           int claims, int max_helpers, uint64 *generation) {
    if (g_board == nullptr || hi - lo < 2 || max_helpers < 1) return -1;
    register_exit();
    int slot = -1;
    SpinLockAcquire(&g_board->mutex);
    for (int i = 0; i < kEntries && slot < 0; i++) {
        if ((g_board->e[i].generation & 1) != 0) continue;
        slot = i;
        Entry &e = g_board->e[i];
        g_board->generations += 2;
        e.generation = g_board->generations + 1;  // (odd: in use)
        e.dboid = MyDatabaseId;
        e.run_id = run_id;
        e.pos = pos;
        e.next = lo;
        e.hi = hi;
        e.claims = claims;
        e.max_helpers = max_helpers > kHelpers ? kHelpers : max_helpers;
        e.final_failure = -1;
        e.units = positions != nullptr ? hi : 0;
        for (int u = 0; u < e.units; u++) {
            e.unit_pos[u] = static_cast<int16>(positions[u]);
            e.unit_attempt[u] = static_cast<int16>(attempts[u]);
        }
        e.open = true;
        e.extendable = false;
        e.owner_pid = MyProcPid;
        e.owner_started = MyStartTimestamp;
        e.owner_latch = MyLatch;
        for (Helper &h : e.helpers) h.pid = 0;
        *generation = e.generation;
        pg_atomic_fetch_add_u32(&g_board->open, 1);
    }
    SpinLockRelease(&g_board->mutex);
    return slot;
}

}  // namespace

bool take(int slot, uint64 generation, int *from, int *to) {
    bool got = false;
    SpinLockAcquire(&g_board->mutex);
    Entry &e = g_board->e[slot];
    if (in_use(e, generation) && e.open && e.next < e.hi) {
        // small chunks while tasks are few (slow tasks spread over every helper), larger ones for long maps
        int left = e.hi - e.next;
        int chunk = left / (2 * (1 + e.max_helpers));
        chunk = chunk < 1 ? 1 : (chunk > kMaxChunk ? kMaxChunk : chunk);
        *from = e.next;
        *to = e.next + chunk;
        e.next = *to;
        got = true;
        if (e.next >= e.hi) close_locked(e);
    }
    SpinLockRelease(&g_board->mutex);
    return got;
}

int add_unit(const Ticket &t, int pos, int attempt) {
    if (g_board == nullptr || t.slot < 0 || t.pos >= 0) return -1;
    int u = -1;
    SpinLockAcquire(&g_board->mutex);
    Entry &e = g_board->e[t.slot];
    bool mine = t.helper >= 0 ? e.helpers[t.helper].pid == MyProcPid : e.owner_pid == MyProcPid;
    bool fits = in_use(e, t.generation) && e.pos < 0 && e.final_failure < 0 && e.units < kUnits && mine;
    for (int k = 0; fits && k < e.units; k++) fits = e.unit_pos[k] != pos;
    if (fits) {
        u = e.units++;
        e.unit_pos[u] = static_cast<int16>(pos);
        e.unit_attempt[u] = static_cast<int16>(attempt);
    }
    SpinLockRelease(&g_board->mutex);
    return u;
}

bool open_for_extension(int slot, uint64 generation) {
    bool opened = false;
    SpinLockAcquire(&g_board->mutex);
    Entry &e = g_board->e[slot];
    // (units left untaken: the entry was closed early -- a cancel --, and stays closed)
    if (in_use(e, generation) && e.pos < 0 && e.final_failure < 0 && e.next >= e.hi && helpers_of(e) > 0) {
        e.extendable = opened = true;
        if (!e.open) {
            e.open = true;
            pg_atomic_fetch_add_u32(&g_board->open, 1);
        }
    }
    SpinLockRelease(&g_board->mutex);
    return opened;
}

bool owner_ticket(int slot, uint64 generation, Ticket *t) {
    SpinLockAcquire(&g_board->mutex);
    bool ok = in_use(g_board->e[slot], generation) && g_board->e[slot].owner_pid == MyProcPid;
    if (ok) fill_ticket(g_board->e[slot], slot, -1, t);
    SpinLockRelease(&g_board->mutex);
    return ok;
}

bool has_unit(int slot, uint64 generation, int pos) {
    bool has = false;
    SpinLockAcquire(&g_board->mutex);
    Entry &e = g_board->e[slot];
    for (int u = 0; in_use(e, generation) && u < e.units && !has; u++) has = e.unit_pos[u] == pos;
    SpinLockRelease(&g_board->mutex);
    return has;
}

int seal(int slot, uint64 generation, int *positions, int *attempts) {
    int n = 0;
    SpinLockAcquire(&g_board->mutex);
    Entry &e = g_board->e[slot];
    if (in_use(e, generation)) {
        if (helpers_of(e) > 0) {
            n = -1;  // (one joined since the caller saw none)
        } else {
            close_locked(e);
            e.extendable = false;
            n = e.units;
            for (int u = 0; u < n; u++) {
                positions[u] = e.unit_pos[u];
                attempts[u] = e.unit_attempt[u];
            }
        }
    }
    SpinLockRelease(&g_board->mutex);
    return n;
}

void close(int slot, uint64 generation) {
    SpinLockAcquire(&g_board->mutex);
    if (in_use(g_board->e[slot], generation)) close_locked(g_board->e[slot]);
    SpinLockRelease(&g_board->mutex);
}

bool helpers_done(int slot, uint64 generation) {
    Helper seen[kHelpers];
    SpinLockAcquire(&g_board->mutex);
    Entry &e = g_board->e[slot];
    bool mine = in_use(e, generation);
    if (mine) memcpy(seen, e.helpers, sizeof(seen));
    SpinLockRelease(&g_board->mutex);
    if (!mine) return true;
    // (liveness is read outside the spinlock: it takes the process array's lock)
    bool done = true;
    for (int k = 0; k < kHelpers; k++) {
        if (seen[k].pid == 0) continue;
        if (shared::claimer_alive(seen[k].pid, seen[k].started)) {
            done = false;
            continue;
        }
        SpinLockAcquire(&g_board->mutex);  // gone without leaving: its place is free
        if (in_use(e, generation) && e.helpers[k].pid == seen[k].pid) e.helpers[k].pid = 0;
        SpinLockRelease(&g_board->mutex);
    }
    return done;
}

void retire(int slot, uint64 generation) {
    SpinLockAcquire(&g_board->mutex);
    Entry &e = g_board->e[slot];
    if (in_use(e, generation)) {
        close_locked(e);
        e.generation++;  // (even: free)
    }
    SpinLockRelease(&g_board->mutex);
}

void note_final_failure(int slot, uint64 generation, int task) {
    SpinLockAcquire(&g_board->mutex);
    Entry &e = g_board->e[slot];
    if (in_use(e, generation)) {
        if (e.final_failure < 0 || task < e.final_failure) e.final_failure = task;
        close_locked(e);
    }
    SpinLockRelease(&g_board->mutex);
}

int final_failure(int slot, uint64 generation) {
    SpinLockAcquire(&g_board->mutex);
    int task = in_use(g_board->e[slot], generation) ? g_board->e[slot].final_failure : -1;
    SpinLockRelease(&g_board->mutex);
    return task;
}

bool any_open() { return g_board != nullptr && pg_atomic_read_u32(&g_board->open) > 0; }

bool join(Ticket *t) {
    if (!any_open()) return false;
    register_exit();
    bool joined = false;
    SpinLockAcquire(&g_board->mutex);
    for (int i = 0; i < kEntries && !joined; i++) {
        Entry &e = g_board->e[i];
        if ((e.generation & 1) == 0 || !e.open || e.dboid != MyDatabaseId || (e.next >= e.hi && !e.extendable) ||
            e.owner_pid == MyProcPid || helpers_of(e) >= (e.extendable ? kHelpers : e.max_helpers))
            continue;
        for (int k = 0; k < kHelpers && !joined; k++) {
            if (e.helpers[k].pid != 0) continue;
            e.helpers[k].pid = MyProcPid;
            e.helpers[k].started = MyStartTimestamp;
            fill_ticket(e, i, k, t);
            joined = true;
            // Joined to take up a ready step (nothing left to take): one worker per opening -- it opens the entry
            // again if it finds more than it takes. (Left open, idle workers joined again and again to find nothing,
            // and the owner's seal, refused while one is there, could wait on them for as long.)
            if (e.extendable && e.next >= e.hi) {
                e.extendable = false;
                close_locked(e);
            }
        }
    }
    SpinLockRelease(&g_board->mutex);
    return joined;
}

void leave(Ticket *t) {
    if (t->slot < 0) return;
    Latch *owner = nullptr;
    SpinLockAcquire(&g_board->mutex);
    Entry &e = g_board->e[t->slot];
    if (in_use(e, t->generation) && e.helpers[t->helper].pid == MyProcPid) {
        e.helpers[t->helper].pid = 0;
        owner = e.owner_latch;
    }
    SpinLockRelease(&g_board->mutex);
    if (owner != nullptr) SetLatch(owner);
    t->slot = -1;
}

}  // namespace pw::board
