// The C++/Postgres boundary. Two rules, enforced here:
//  1. A C++ exception never unwinds through Postgres C frames: pure C++ code is called through cpp_call(),
//     which catches everything into a plain buffer; the error is raised with ereport() only after every C++
//     object of the call is destroyed.
//  2. A Postgres ERROR (longjmp) never crosses a C++ frame that owns an object with a destructor: code outside
//     src/core is written in Postgres style (palloc'd data, no RAII across calls that can ereport), and the
//     one place that copies C++ results into Postgres memory uses no-throw allocation (pstrdup_nothrow).
#pragma once

#include <cstring>
#include <exception>
#include <new>
#include <string>

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

// palloc copy of s in CurrentMemoryContext that never ereports; nullptr when out of memory.
char *pstrdup_nothrow(const std::string &s) noexcept;

}  // namespace pw::pg
