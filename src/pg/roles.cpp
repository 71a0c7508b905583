#include "pg/roles.hpp"

namespace pw::pg {

bool is_admin(Oid role) {
    Oid admin = get_role_oid("pipeline_worker_admin", true);
    return superuser_arg(role) || (OidIsValid(admin) && has_privs_of_role(role, admin));
}

bool may_call_http(Oid role) {
    Oid http_role = get_role_oid("pipeline_worker_http", true);
    return superuser_arg(role) || (OidIsValid(http_role) && has_privs_of_role(role, http_role));
}

const char *role_name(Oid role) {
    char *n = GetUserNameFromId(role, true);
    return n ? n : "(dropped role)";
}

StepSignature step_signature(const FormData_pg_proc *proc) {
    if (proc->prokind != PROKIND_FUNCTION) return StepSignature::NotAFunction;
    if (proc->prorettype != JSONBOID || proc->proretset) return StepSignature::WrongResult;
    if (proc->pronargs != 1) return StepSignature::WrongArguments;
    return StepSignature::Ok;
}

StepSignature step_signature(Oid fn) {
    HeapTuple tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
    if (!HeapTupleIsValid(tup)) elog(ERROR, "cache lookup failed for function %u", fn);
    StepSignature sig = step_signature(reinterpret_cast<Form_pg_proc>(GETSTRUCT(tup)));
    ReleaseSysCache(tup);
    return sig;
}

}  // namespace pw::pg
