// Errors thrown by the pure C++ parts. `hint` travels to the user as errhint() through the boundary.
#pragma once

#include <stdexcept>
#include <string>

namespace pw::core {

// Bad user input (definitions, JSON): reported with SQLSTATE invalid_parameter_value.
struct InputError : std::runtime_error {
    std::string hint;
    explicit InputError(const std::string &msg, std::string h = {}) : std::runtime_error(msg), hint(std::move(h)) {}
};

}  // namespace pw::core
