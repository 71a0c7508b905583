// The C++/Postgres boundary, both directions, and nothing else. The rules (CONTRIBUTING.md repeats them):
//  1. Postgres calls C++: a C++ exception never unwinds through Postgres C frames. Pure C++ code is called
//     through cpp_call(), which catches everything into a plain buffer; the error is raised with ereport() (by
//     raise_if_failed) only after every C++ object of the call is destroyed.
//  2. C++ calls Postgres: a Postgres ERROR (longjmp) never crosses a C++ frame that owns an object with a
//     destructor. Inside a cpp_call lambda (or any frame owning such objects) every Postgres call that can
//     ereport -- palloc and MemoryContextAlloc* included -- goes through pg_guard(), which catches the ERROR
//     under PG_TRY and rethrows it as a C++ PgError once the PG_TRY frame is gone; cpp_call turns it back into
//     the same SQLSTATE and message. pg_guard is for calls that leave no state behind when they fail
//     (allocation, conversions): never around SPI, catalog access or anything that needs a subtransaction.
//  Code outside src/core is otherwise Postgres-style: palloc'd data, no RAII object alive across a call that
//  can ereport.
#pragma once

#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <type_traits>

#include "core/error.hpp"
#include "core/json.hpp"
#include "pg/pg.hpp"

namespace pw::pg {

struct CppError {
    bool failed = false;
    int sqlstate = 0;
    char message[1024] = {0};
    char hint[512] = {0};
};

void fill_error(CppError &err, int sqlstate, const char *message, const char *hint) noexcept;

// A Postgres ERROR caught by pg_guard, as a C++ exception.
struct PgError : std::exception {
    int sqlstate = ERRCODE_INTERNAL_ERROR;
    char message[1024] = {0};
    char hint[512] = {0};
    const char *what() const noexcept override { return message; }
};

// Runs fn(arg) under PG_TRY. false (and *err filled) when it raised an ERROR, which is then flushed.
bool pg_try(void (*fn)(void *), void *arg, PgError *err) noexcept;

// Calls f (Postgres-style code: no object with a destructor in its own frame) from C++; an ERROR becomes a
// PgError thrown here. Returns f's result.
template <typename F>
auto pg_guard(F &&f) {
    using R = std::invoke_result_t<F &>;
    PgError err;
    if constexpr (std::is_void_v<R>) {
        if (!pg_try([](void *a) { (*static_cast<std::remove_reference_t<F> *>(a))(); }, &f, &err)) throw err;
    } else {
        R result{};
        auto call = [&] { result = f(); };
        if (!pg_try([](void *a) { (*static_cast<decltype(call) *>(a))(); }, &call, &err)) throw err;
        return result;
    }
}

// palloc'd copy of s in CurrentMemoryContext, from C++ (through pg_guard: PgError when out of memory).
char *pstrdup_guarded(const std::string &s);
// palloc0'd block of `bytes` in CurrentMemoryContext, from C++ (through pg_guard).
void *palloc0_guarded(size_t bytes);
// Copy of s in ctx (huge allocations allowed), from C++ where nothing may throw: NULL when it failed.
char *copy_or_null(MemoryContext ctx, const std::string &s) noexcept;

// Runs f (pure C++, may throw). Never throws; never calls ereport. core::InputError carries its hint.
template <typename F>
inline CppError cpp_call(F &&f, int sqlstate = ERRCODE_INTERNAL_ERROR) noexcept {
    CppError err;
    try {
        f();
    } catch (const core::InputError &e) {
        fill_error(err, ERRCODE_INVALID_PARAMETER_VALUE, e.what(), e.hint.c_str());
    } catch (const json::ParseError &e) {
        fill_error(err, ERRCODE_INVALID_TEXT_REPRESENTATION, e.what(), nullptr);
    } catch (const PgError &e) {
        fill_error(err, e.sqlstate, e.message, e.hint);
    } catch (const std::bad_alloc &) {
        fill_error(err, ERRCODE_OUT_OF_MEMORY, "out of memory", nullptr);
    } catch (const std::exception &e) {
        fill_error(err, sqlstate, e.what(), nullptr);
    } catch (...) {
        fill_error(err, ERRCODE_INTERNAL_ERROR, "unknown C++ exception", nullptr);
    }
    return err;
}

// ereport(ERROR) for a failed cpp_call result; no-op otherwise. Call it from Postgres-style code only.
void raise_if_failed(const CppError &err, const char *context = nullptr);

}  // namespace pw::pg
