#pragma once
// An error a person can cause or fix: one clear line for stderr plus the exit
// code the process ends with. Everything user-facing throws this.

#include <fmt/format.h>

#include <stdexcept>
#include <string>

#include "vmm/core/exit_codes.h"

namespace minikvm {

class VmmError : public std::runtime_error {
public:
    VmmError(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
    ExitCode code() const { return code_; }

private:
    ExitCode code_;
};

template <typename... Args>
[[noreturn]] void fail(ExitCode code, fmt::format_string<Args...> format, Args&&... args) {
    throw VmmError(code, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace minikvm
