#include "exec/wait_step.hpp"

#include "shmem/gucs.hpp"
#include "store/children.hpp"
#include "store/events.hpp"
#include "store/writes.hpp"

namespace pw::exec {

namespace {

// The step waits (on): its row says so from the first look (kept on later ones), the run waits until wake_at (0:
// until an event comes).
StepResult wait(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, TimestampTz started,
                TimestampTz wake_at, const char *event, Jsonb *note = nullptr) {
    (void)claimed;
    if (r->waiting_since[pos] == 0)
        store::buffer_step(r->id, pos, attempt, r->pipeline->steps[pos].name, core::StepStatus::Waiting, note,
                           nullptr, started, true);
    note_wait(r, wake_at, event);  // (the executor buffers the run's waiting state once the walk is over)
    StepResult res;
    res.waiting = true;
    return res;
}


// A "pipeline" step: its first look starts the child run (as the run's submitter); later looks read it.
StepResult child_step(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, TimestampTz started,
                      MemoryContext run_ctx) {
    const store::Step *step = &r->pipeline->steps[pos];
    StepResult res;
    TimestampTz recheck = GetCurrentTimestamp() + kChildRecheckUs;
    int64 child = r->waiting_since[pos] != 0 ? note_child(r->waiting_note[pos]) : 0;
    if (child == 0) {
        Jsonb *input = step_prev(r, pos);
        child = start_child(r, pos, input, &res.error);
        if (child == 0) return res;
        return wait(claimed, r, pos, attempt, started, recheck, nullptr, child_note(child));
    }
    store::lock_parent(r->id);
    if (!look_at_child(child, step, run_ctx, &res)) return wait(claimed, r, pos, attempt, started, recheck, nullptr);
    return res;
}

}  // namespace

Jsonb *child_note(int64 child_id) {
    return DatumGetJsonbP(DirectFunctionCall1(
        jsonb_in, CStringGetDatum(psprintf("{\"child_run_id\": %lld}", static_cast<long long>(child_id)))));
}

int64 note_child(Jsonb *note) {
    if (note == nullptr || !JB_ROOT_IS_OBJECT(note)) return 0;
    JsonbValue *v = getKeyJsonValueFromContainer(&note->root, "child_run_id", 12, nullptr);
    if (v == nullptr || v->type != jbvNumeric) return 0;
    return DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
}

int64 start_child(RunState *r, int pos, Jsonb *input, const char **error, int depth) {
    const store::Step *step = &r->pipeline->steps[pos];
    if (depth < 0) depth = store::run_depth(r->id);
    if (depth + 1 > guc::max_child_depth) {
        *error = psprintf("child runs nest deeper than pipeline_worker.max_child_depth (%d)", guc::max_child_depth);
        return 0;
    }
    const store::ChildPipeline *cp = store::child_pipeline(step->child, r->submitter, error);
    if (cp == nullptr) return 0;
    // A child step names a pipeline. One created after this pipeline by a role its owner is not (nor a member of)
    // is not the one its owner chose: the name was dropped and taken by someone else since (until 2026-12-05 the child
    // ran that role's steps as this run's submitter, its input and output theirs to read). The owner's own pipeline
    // created again (drop + create: how steps change) is still followed. (Membership without the superuser bypass: a
    // superuser's pipelines are protected too. The other role is not named: the submitter may not see its pipeline.)
    if (cp->id > r->pipeline->id && cp->owner != r->pipeline->owner &&
        !is_member_of_role_nosuper(r->pipeline->owner, cp->owner)) {
        *error = psprintf("pipeline \"%s\" was created again by another role after pipeline \"%s\" was defined; "
                          "define \"%s\" again to run it",
                          step->child, r->pipeline->name, r->pipeline->name);
        return 0;
    }
    if (input == nullptr) input = json_null();
    r->started_children = true;  // (claimable once this transaction commits)
    return store::create_child_run(step->child, cp, r->submitter, input, r->metadata, r->id, step->name);
}

bool look_at_child(int64 child, const store::Step *step, MemoryContext run_ctx, StepResult *res) {
    Jsonb *result = nullptr;
    char *error = nullptr;
    const char *status = store::read_child(child, &result, &error, run_ctx);
    if (status == nullptr) {
        res->error = psprintf("child run %lld no longer exists", static_cast<long long>(child));
        res->retryable = true;
    } else if (strcmp(status, "succeeded") == 0) {
        MemoryContext old = MemoryContextSwitchTo(run_ctx);
        res->output = result != nullptr ? result : json_null();
        MemoryContextSwitchTo(old);
    } else if (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0) {
        res->error = psprintf("child run %lld (pipeline \"%s\") %s: %s", static_cast<long long>(child), step->child,
                              status, error != nullptr ? error : status);
        res->retryable = true;
    } else {
        return false;
    }
    return true;
}

StepResult run_wait_step(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt,
                         TimestampTz started, MemoryContext run_ctx) {
    const store::Step *step = &r->pipeline->steps[pos];
    if (step->kind == core::StepKind::Pipeline) return child_step(claimed, r, pos, attempt, started, run_ctx);
    TimestampTz now = GetCurrentTimestamp();
    StepResult res;
    if (step->kind == core::StepKind::Sleep) {
        // (by the calendar, as timestamptz + interval: '1 year' is a year, '1 month' a month; until 2026-12-08 a
        // month was 30 days and a year 360)
        TimestampTz due = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval, TimestampTzGetDatum(started),
                                                                  IntervalPGetDatum(&step->sleep_iv)));
        if (now >= due) {
            Jsonb *prev = step_prev(r, pos);
            MemoryContext old = MemoryContextSwitchTo(run_ctx);
            res.output = prev != nullptr ? DatumGetJsonbPCopy(JsonbPGetDatum(prev)) : json_null();
            MemoryContextSwitchTo(old);
            return res;
        }
        return wait(claimed, r, pos, attempt, started, due, nullptr);
    }
    Jsonb *payload = store::take_event(r->id, step->event, pos, run_ctx);
    if (payload != nullptr) {
        res.output = payload;
        return res;
    }
    TimestampTz deadline = step->timeout_ms > 0 ? started + int64(step->timeout_ms) * 1000 : 0;
    if (deadline != 0 && now >= deadline) {
        res.error = psprintf("no event \"%s\" arrived within %d ms", step->event, step->timeout_ms);
        res.retryable = true;
        return res;
    }
    return wait(claimed, r, pos, attempt, started, deadline, step->event);
}

}  // namespace pw::exec
