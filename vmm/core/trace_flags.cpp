#include "vmm/core/trace_flags.h"

namespace minikvm {

namespace {

std::string_view trim(std::string_view text) {
    const auto first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) return {};
    return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

}  // namespace

std::optional<TraceFlags> parse_trace_list(std::string_view list) {
    TraceFlags flags;
    while (true) {
        const size_t comma = list.find(',');
        const std::string_view name = trim(list.substr(0, comma));
        if (name == "virtio") flags.virtio = true;
        else if (name == "pci") flags.pci = true;
        else if (name == "vfio") flags.vfio = true;
        else if (name == "all") flags.virtio = flags.pci = flags.vfio = true;
        else return std::nullopt;  // includes "" (an empty list or ",,")
        if (comma == std::string_view::npos) return flags;
        list.remove_prefix(comma + 1);
    }
}

}  // namespace minikvm
