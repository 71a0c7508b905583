// Roles and privileges, each rule written once: who administers, who may define and make HTTP calls, how a role
// is named in messages, and what signature a step function must have.
#pragma once

#include "pg/pg.hpp"

namespace pw::pg {

// Superuser or member of pipeline_worker_admin.
bool is_admin(Oid role);
// Superuser or member of pipeline_worker_http (HTTP steps: to define them, and for their pipeline's owner when
// they run).
bool may_call_http(Oid role);
// The role's name, or "(dropped role)".
const char *role_name(Oid role);

// What a step function must be: a plain function (jsonb) RETURNS jsonb, not a set.
enum class StepSignature { Ok, NotAFunction, WrongResult, WrongArguments };
StepSignature step_signature(Oid fn);
StepSignature step_signature(const FormData_pg_proc *proc);  // from a pg_proc tuple in hand

}  // namespace pw::pg
