// The two writes every run makes, without a statement where the table allows it (pg/direct_rows.hpp): its step rows
// (inserted) and its outcome (updated at the row version its claim locked). writes.cpp buffers the rows and falls back
// to its statements for whatever these leave.
#pragma once

#include "core/status.hpp"
#include "pg/pg.hpp"

namespace pw::store {

// A step row writes.cpp buffered.
struct StepRow {
    int64 run_id;
    int pos, attempt;
    char *name;
    core::StepStatus status;
    Jsonb *output;
    char *error;
    TimestampTz started, finished;
    int kind;  // kInsert, kUpsert, kLate
    int task;  // a map task's index, -1 for a step
};

// How a buffered step row is written: inserted; upserted over the attempt's row (HTTP steps, waits); upserted only
// over the row of the same issuance (buffer_late_step).
constexpr int kInsert = 0, kUpsert = 1, kLate = 2;

// run_steps' columns a StepRow fills, in this order (task: 0.2's; absent under 0.1, where no step has tasks).
constexpr const char *kStepColumns[10] = {"run_id", "position", "attempt", "name", "status",
                                          "output", "error", "started_at", "finished_at", "task"};
constexpr int kTaskColumn = 9;
// ... and the types of the values it fills them with.
extern const Oid kStepTypes[10];

// Whether column a takes a value of `type` as it is: of that type, without a modifier (else a statement would
// convert it, round it, or check a domain).
inline bool takes_as_is(Form_pg_attribute a, Oid type) { return a->atttypid == type && a->atttypmod < 0; }

// r's values in a row of natts columns (the others NULL), att[c] being the attribute number (0-based) of
// kStepColumns[c] -- task's may be -1: ERROR if r is a map task's.
void step_row_values(const StepRow *r, const int *att, int natts, Datum *values, bool *nulls);

// A run's outcome writes.cpp buffered.
struct RunRow {
    int64 id;
    char *pipeline;
    int claims;
    TimestampTz claimed_at;  // started_at if the row has none (0: the run did not begin)
    core::RunStatus status;
    Jsonb *result;
    char *error;
    TimestampTz at;
    TimestampTz wake_at;  // not_before: a retry's back-off, a waiting run's wake-up (0: none)
    char *waiting_for;
    ItemPointerData tid;  // the row version its claim locked, if unchanged since (else invalid: found by id)
};

// A claim writes.cpp buffered, to record on the run's row (status running, this backend) before the commit.
struct ClaimRow {
    int64 id;
    int claims;
    TimestampTz claimed_at;
    ItemPointerData tid;  // the row version the claim locked (invalid: found by id)
    bool recorded;        // written by record_claims_at_claims
};

// Inserts the step rows of kind kInsert in `steps` (a List of StepRow) into run_steps. false: nothing written, the
// statement must (run_steps has triggers, forced row-level security, or a column this code does not fill).
bool insert_step_rows(List *steps);

// Writes the outcome of each run in `runs` (a List of RunRow) that carries the row version its claim locked, at that
// version, if this transaction still sees it and the run is still this claim's (the condition of the statement in
// writes.cpp). Each run written is appended to out_ids / out_parents / out_pnull (parent_run_id); returns how many,
// or -1 if the statement must write them all (nothing written). The 0.2 schema only.
int update_outcomes_at_claims(List *runs, int64 *out_ids, int64 *out_parents, bool *out_pnull);

// Records each claim in `claims` (a List of ClaimRow) that carries its row version, at that version, if this
// transaction still sees it and the run is still pending unclaimed or this backend's (the statement's condition);
// marks them recorded. Returns how many, or -1 if the statement must record them all (nothing written). 0.2 only.
int record_claims_at_claims(List *claims);

}  // namespace pw::store
