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

bool pg_try(void (*fn)(void *), void *arg, PgError *err) noexcept {
    MemoryContext ctx = CurrentMemoryContext;
    volatile bool ok = true;
    PG_TRY();
    {
        fn(arg);
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(ctx);
        ErrorData *ed = CopyErrorData();
        FlushErrorState();
        err->sqlstate = ed->sqlerrcode;
        strlcpy(err->message, ed->message ? ed->message : "unknown error", sizeof(err->message));
        strlcpy(err->hint, ed->hint ? ed->hint : "", sizeof(err->hint));
        FreeErrorData(ed);
        ok = false;
    }
    PG_END_TRY();
    return ok;
}

char *pstrdup_guarded(const std::string &s) {
    return pg_guard([&] {
        char *p = static_cast<char *>(palloc(s.size() + 1));
        memcpy(p, s.data(), s.size());
        p[s.size()] = '\0';
        return p;
    });
}

char *copy_or_null(MemoryContext ctx, const std::string &s) noexcept {
    struct Copy {
        MemoryContext ctx;
        const std::string *s;
        char *out;
    } c{ctx, &s, nullptr};
    PgError ignored;
    bool ok = pg_try(
        [](void *a) {
            Copy *c = static_cast<Copy *>(a);
            char *p = static_cast<char *>(MemoryContextAllocHuge(c->ctx, c->s->size() + 1));
            memcpy(p, c->s->data(), c->s->size());
            p[c->s->size()] = '\0';
            c->out = p;
        },
        &c, &ignored);
    return ok ? c.out : nullptr;
}

void *palloc0_guarded(size_t bytes) {
    return pg_guard([&] { return palloc0(bytes > 0 ? bytes : 1); });
}

}  // namespace pw::pg
