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

StepSignature step_signature(Oid fn) {
    if (get_func_prokind(fn) != PROKIND_FUNCTION) return StepSignature::NotAFunction;
    if (get_func_rettype(fn) != JSONBOID || get_func_retset(fn)) return StepSignature::WrongResult;
    if (get_func_nargs(fn) != 1) return StepSignature::WrongArguments;
    return StepSignature::Ok;
}

}  // namespace pw::pg
