// The task board: a worker executing a function map step puts the step's untried tasks up here, and idle workers of
// the same database take chunks of them, so that a map's tasks run in parallel across workers (exec/shared_tasks.cpp
// says what each side does with them; docs/ARCHITECTURE-workflows.md "Map tasks across workers").
//
// Only task indexes, owners and helpers live here -- no data: a helper reads the run from its tables. The board is
// lost in a crash restart with everything else in shared memory, which is fine: it only ever holds work whose
// rows are not committed, and a resumed run finds the rest in its history.
#pragma once

#include "pg/pg.hpp"

namespace pw::board {

constexpr int kEntries = 64;  // maps shared at once (more: the owner runs its tasks alone)
constexpr int kHelpers = 16;  // helpers per map at once
constexpr int kUnits = 16;    // independent steps shared at once (a graph's ready function steps)

// What a helper holds: an entry (by slot and generation, so that a reused slot is never mistaken for it) and the
// run and step it serves, with the owner's claim (its pid, start and the run's claim count) for the guard.
struct Ticket {
    int slot = -1;
    uint64 generation = 0;
    int helper = -1;
    int64 run_id = 0;
    int pos = 0;  // 0-based; -1: the entry shares independent steps, not a map's tasks
    int units = 0;                // (steps) how many, and each one's position and attempt
    int unit_pos[kUnits] = {};
    int unit_attempt[kUnits] = {};
    int owner_pid = 0;
    TimestampTz owner_started = 0;
    int claims = 0;
};

void shmem_request();
void shmem_startup();

// Owner: puts tasks [lo, hi) of step pos up for at most max_helpers helpers. -1: no room (or no shared memory).
int publish(int64 run_id, int pos, int lo, int hi, int claims, int max_helpers, uint64 *generation);
// Owner: puts independent function steps up (k of them, at most kUnits: positions and attempts; their indexes are
// 0..k-1 in take()) for at most max_helpers helpers. -1: no room.
int publish_steps(int64 run_id, const int *positions, const int *attempts, int k, int claims, int max_helpers,
                  uint64 *generation);
// Helper (or owner) of a steps entry: puts function step pos (its attempt) up as one more unit of the entry, taken
// by the caller at once -- a step that became ready while the entry's units ran. The unit's index; -1 when the entry is no
// longer in use or full, one of its units failed for good, it holds that step already, or this process is not its
// helper. (board::take hands out only the units published: an added unit is always its adder's.)
int add_unit(const Ticket &t, int pos, int attempt);
// Helper or owner of a steps entry that found more steps ready than it takes (exec::extend_help): the entry opens
// again for one more worker to join -- beyond max_helpers -- and take up a step ready now (add_unit); that join
// closes it again. false: not worth it (no helper
// left, a unit failed for good, units left untaken because a cancel closed it) -- nothing changed.
bool open_for_extension(int slot, uint64 generation);
// Owner: a ticket for its own entry (helper -1), to take up steps made ready during the wave as a helper does
// (add_unit accepts the owner). false: the entry is not its own any more.
bool owner_ticket(int slot, uint64 generation, Ticket *t);
// Whether step pos is a unit of the steps entry already (published or added).
bool has_unit(int slot, uint64 generation, int pos);
// Owner, once helpers_done(): closes the entry for good -- nobody joins any more -- and returns every unit, those
// helpers added included (positions and attempts, at most kUnits), in their indexes' order (0 for a map's entry).
// -1: a worker joined meanwhile; wait for the helpers again.
int seal(int slot, uint64 generation, int *positions, int *attempts);
// Owner or helper: the next chunk of untaken tasks [*from, *to); false when none is left (or the entry is closed).
bool take(int slot, uint64 generation, int *from, int *to);
// No more chunks are handed out (a task failed for good, the run is cancelled, or the owner is done taking).
void close(int slot, uint64 generation);
// Whether every helper has left -- or is gone (its process exited: what it had not committed was rolled back).
bool helpers_done(int slot, uint64 generation);
// The owner is done with the entry: the slot is free again.
void retire(int slot, uint64 generation);
// A helper's task failed with no attempt left (its row says why): recorded for the owner; closes the entry.
void note_final_failure(int slot, uint64 generation, int task);
// The task whose final failure a helper noted (-1: none).
int final_failure(int slot, uint64 generation);

// Helper: joins an open entry of this database with tasks left and room for a helper. false: none.
bool join(Ticket *t);
// Helper: leaves its entry and wakes the owner.
void leave(Ticket *t);
// Whether any entry is open (cheap: read before looking for one).
bool any_open();

}  // namespace pw::board
