#include "virtio/device_status.h"

#include <fmt/format.h>

namespace minikvm::device_status {

std::string names(uint8_t status) {
    if (status == 0) return "none";
    static constexpr struct {
        uint8_t bit;
        const char* name;
    } kNames[] = {{kAcknowledge, "ACKNOWLEDGE"}, {kDriver, "DRIVER"},         {kDriverOk, "DRIVER_OK"},
                  {kFeaturesOk, "FEATURES_OK"}, {kNeedsReset, "NEEDS_RESET"}, {kFailed, "FAILED"}};
    std::string text;
    uint8_t rest = status;
    for (const auto& [bit, name] : kNames) {
        if ((status & bit) == 0) continue;
        if (!text.empty()) text += '|';
        text += name;
        rest = static_cast<uint8_t>(rest & ~bit);
    }
    if (rest != 0) text += fmt::format("{}{:#x}", text.empty() ? "" : "|", rest);
    return text;
}

}  // namespace minikvm::device_status
