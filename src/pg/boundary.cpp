#include "pg/boundary.hpp"

namespace pw::pg {

void fill_error(CppError &err, int sqlstate, const char *message, const char *hint) noexcept {
    err.failed = true;
    err.sqlstate = sqlstate;
    strlcpy(err.message, message ? message : "", sizeof(err.message));
    strlcpy(err.hint, hint ? hint : "", sizeof(err.hint));
}

void raise_if_failed(const CppError &err, const char *context) {
    if (!err.failed) return;
    if (context != nullptr)
        ereport(ERROR, (errcode(err.sqlstate), errmsg("%s: %s", context, err.message),
                        err.hint[0] ? errhint("%s", err.hint) : 0));
    ereport(ERROR, (errcode(err.sqlstate), errmsg("%s", err.message), err.hint[0] ? errhint("%s", err.hint) : 0));
}

char *pstrdup_nothrow(const std::string &s) noexcept {
    if (s.size() >= MaxAllocSize) return nullptr;
    char *p = static_cast<char *>(MemoryContextAllocExtended(CurrentMemoryContext, s.size() + 1, MCXT_ALLOC_NO_OOM));
    if (p == nullptr) return nullptr;
    memcpy(p, s.data(), s.size());
    p[s.size()] = '\0';
    return p;
}

}  // namespace pw::pg
